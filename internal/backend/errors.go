package backend

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrorKind classifies a backend failure so callers decide without parsing text.
type ErrorKind string

const (
	// KindNotFound is a 404: the token or resource does not exist.
	KindNotFound ErrorKind = "NotFound"
	// KindUnauthorized is a 401: the credential is missing, unknown, deactivated or expired.
	KindUnauthorized ErrorKind = "Unauthorized"
	// KindForbidden is a 403: the credential may not do this (e.g. it is read-only).
	KindForbidden ErrorKind = "Forbidden"
	// KindConflict is a 409: a request with the same Idempotency-Key is in flight.
	// It is also transient: retrying later gets the replayed reply.
	KindConflict ErrorKind = "Conflict"
	// KindClaimed is a 409 to a claim: another external_id holds the token.
	// Unlike KindConflict it is final, so it is not transient.
	KindClaimed ErrorKind = "Claimed"
	// KindInvalid is a 4xx the server will keep refusing (400, 413, 422, ...).
	KindInvalid ErrorKind = "Invalid"
	// KindTransient covers connection errors, timeouts, 408, 429 and 5xx.
	KindTransient ErrorKind = "Transient"
	// KindProtocol is a reply that does not follow the protocol (bad JSON,
	// oversized, missing fields, HTML pages).
	KindProtocol ErrorKind = "Protocol"
	// KindMisconfigured is a backend that answers but is set up wrongly for the operator (for
	// Zabbix: a user or role that is missing or grants too much); the message says what to fix.
	KindMisconfigured ErrorKind = "Misconfigured"
	// KindSpent is a create for an owner (UID, cluster, serial) that an earlier create already
	// used, whose token was deactivated since: the backend replayed or found that token, and no
	// live value can come of it. Nothing was made; the caller advances the serial and asks
	// again. It happens when a pass deactivated its new token (its Secret could not be written)
	// and the status write that recorded the advanced serial failed too.
	KindSpent ErrorKind = "Spent"
)

// Error is every error a driver returns. Message is sanitized: it never holds a token value or
// a credential, even if the backend echoed them.
type Error struct {
	Kind ErrorKind
	// Op is the operation: create, get, list, deactivate, claim, ping, self.
	Op string
	// StatusCode is the HTTP status of the reply, 0 when no response arrived.
	StatusCode int
	Message    string
	// RetryAfter is the server's Retry-After, 0 if none.
	RetryAfter time.Duration

	// Cause is the underlying transport error, kept for errors.Is (for example
	// context.Canceled); its text is never shown unsanitized.
	Cause error
}

// Error formats like "backend create: 403 Forbidden: token is read-only".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("backend ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.StatusCode != 0 {
		b.WriteString(strconv.Itoa(e.StatusCode))
		if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteString(" ")
			b.WriteString(t)
		}
	} else {
		b.WriteString(strings.ToLower(string(e.Kind)))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the transport error, if any, so errors.Is(err, context.Canceled) works.
func (e *Error) Unwrap() error { return e.Cause }

func kindOf(err error) (ErrorKind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return "", false
}

// IsNotFound reports a 404 from the backend.
func IsNotFound(err error) bool { k, _ := kindOf(err); return k == KindNotFound }

// IsUnauthorized reports a 401: the client's credential is not valid (any more).
func IsUnauthorized(err error) bool { k, _ := kindOf(err); return k == KindUnauthorized }

// IsForbidden reports a 403: the credential lacks the permission.
func IsForbidden(err error) bool { k, _ := kindOf(err); return k == KindForbidden }

// adminRoleMessage is what the protocol's 403 says when the credential lacks the admin role.
const adminRoleMessage = "admin role"

// IsAdminRequired reports a 403 because the credential is not an admin: token
// management needs the admin role, so the operator can tell the user to use
// the backend's admin credential rather than any full_access token.
func IsAdminRequired(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindForbidden && strings.Contains(e.Message, adminRoleMessage)
}

// IsClaimed reports a claim refused because the token carries another external_id.
func IsClaimed(err error) bool { k, _ := kindOf(err); return k == KindClaimed }

// IsConflict reports a 409: the same idempotency key is still in flight.
func IsConflict(err error) bool { k, _ := kindOf(err); return k == KindConflict }

// IsTransient reports a failure worth retrying with backoff: connection errors,
// timeouts, 408, 409, 429 and 5xx.
func IsTransient(err error) bool {
	k, _ := kindOf(err)
	return k == KindTransient || k == KindConflict
}

// IsSpent reports a create whose owner's serial is used up (KindSpent).
func IsSpent(err error) bool { k, _ := kindOf(err); return k == KindSpent }

// IsMisconfigured reports a backend set up wrongly for the operator.
func IsMisconfigured(err error) bool { k, _ := kindOf(err); return k == KindMisconfigured }

// RetryAfter returns the delay the server asked for, 0 if none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// maxMessageLen bounds messages taken from servers or transport errors.
const maxMessageLen = 200

var (
	// tokenValuePattern matches the server-generated value format (sgt_ + base62),
	// also when truncated, so an echoed value never reaches an error string.
	tokenValuePattern = regexp.MustCompile(`sgt_[0-9A-Za-z]*`)
	// credentialPatterns match an echoed credential of any format: a bearer
	// value, an Authorization header, or a "token": "..." / token=... pair.
	credentialPatterns = []*regexp.Regexp{
		regexp.MustCompile(`(?i)(authorization["']?\s*[:=]\s*["']?)(?:bearer\s+)?[^\s"',;]+`),
		regexp.MustCompile(`(?i)(bearer\s+)[^\s"',;]+`),
		regexp.MustCompile(`(?i)(token["']?\s*[:=]\s*["']?)[^\s"',;]+`),
	}
)

// Sanitize removes the client's own credential and anything that looks like a
// token value, drops control characters and truncates, so the text is safe to
// log and to put into a status condition.
func Sanitize(msg string, secret SecretValue) string {
	if s := string(secret); len(s) >= 4 {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	msg = tokenValuePattern.ReplaceAllString(msg, redacted)
	for _, p := range credentialPatterns {
		msg = p.ReplaceAllString(msg, "${1}"+redacted)
	}
	msg = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	msg = strings.Join(strings.Fields(msg), " ")
	if utf8.RuneCountInString(msg) > maxMessageLen {
		r := []rune(msg)
		msg = string(r[:maxMessageLen]) + "…"
	}
	return msg
}

// NewError is an Error of kind for op; code is the HTTP status (0 for none).
func NewError(op string, kind ErrorKind, code int, format string, args ...any) *Error {
	return &Error{Op: op, Kind: kind, StatusCode: code, Message: fmt.Sprintf(format, args...)}
}
