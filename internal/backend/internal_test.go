package backend

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestSanitize(t *testing.T) {
	const own = SecretValue("my-own-custom-credential-1234")
	cases := []struct {
		name, in, want string
	}{
		{"plain", "token is read-only", "token is read-only"},
		{"own token", "bad my-own-custom-credential-1234 here", "bad [redacted] here"},
		{"value format", "value sgt_abcdefghijABCDEFGHIJ0123456789abcdefghij x", "value [redacted] x"},
		{"truncated value", "value sgt_abc", "value [redacted]"},
		{"authorization header", "Authorization: Bearer xyz.abc", "Authorization: [redacted]"},
		{"bearer", "got bearer zzz", "got bearer [redacted]"},
		{"json token", `{"token": "abc"}`, `{"token": "[redacted]"}`},
		{"token=", "token=abc x", "token=[redacted] x"},
		{"control chars", "a\r\nb\x00c", "a b c"},
		{"long", strings.Repeat("a", 500), strings.Repeat("a", maxMessageLen) + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(Sanitize(tc.in, own)).To(Equal(tc.want))
		})
	}
}
