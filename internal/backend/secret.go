package backend

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what a SecretValue prints as, in every format.
const redacted = "[redacted]"

// SecretValue is a token value. String, GoString, Format, MarshalJSON,
// MarshalText and LogValue all redact it, so printing or logging a struct that
// holds one never leaks it. Callers use string(v) or v.Reveal() only to write
// the value into a Secret.
type SecretValue string

// Reveal returns the actual value. Use it only where the value must leave the
// process (the Secret data, the Authorization header).
func (v SecretValue) Reveal() string { return string(v) }

// String redacts the value.
func (v SecretValue) String() string { return redacted }

// GoString redacts the value for %#v.
func (v SecretValue) GoString() string { return redacted }

// Format redacts the value for every verb, including %q, %x and %v.
func (v SecretValue) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON redacts the value, so an object dumped as JSON does not leak it.
func (v SecretValue) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts the value for text encoders (YAML, slog text handler keys).
func (v SecretValue) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue redacts the value in slog output.
func (v SecretValue) LogValue() slog.Value { return slog.StringValue(redacted) }
