package statusserver

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestDecodeCreateRequest(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		status   int    // 0 = accepted
		contains string // in the message or errors
	}{
		{name: "minimal", body: `{"name":"a","permission":"read_only"}`},
		{name: "full", body: `{"name":"a","permission":"full_access","expires_at":"2030-01-01T00:00:00Z","description":"d","external_id":"e","labels":{"k":"v"}}`},
		{name: "null optionals", body: `{"name":"a","permission":"read_only","expires_at":null,"external_id":null,"labels":null}`},
		{name: "empty body", body: ``, status: 400, contains: "empty"},
		{name: "not an object", body: `[1]`, status: 400, contains: "JSON object"},
		{name: "unknown field", body: `{"name":"a","permission":"read_only","admin":true}`, status: 400, contains: `unknown field "admin"`},
		{name: "role cannot be requested", body: `{"name":"a","permission":"full_access","role":"admin"}`, status: 400, contains: `unknown field "role"`},
		{name: "wrong type name", body: `{"name":5,"permission":"read_only"}`, status: 400, contains: `field "name" must be a string, got number`},
		{name: "wrong type labels", body: `{"name":"a","permission":"read_only","labels":{"k":1}}`, status: 400, contains: `labels`},
		{name: "wrong type expires_at", body: `{"name":"a","permission":"read_only","expires_at":1}`, status: 400, contains: `expires_at`},
		{name: "trailing data", body: `{"name":"a","permission":"read_only"} {}`, status: 400, contains: "single JSON object"},
		{name: "syntax", body: `{"name":"a",`, status: 400, contains: "malformed"},
		{name: "empty name", body: `{"name":" ","permission":"read_only"}`, status: 422, contains: "name must not be empty"},
		{name: "bad permission", body: `{"name":"a","permission":"admin"}`, status: 422, contains: "permission"},
		{name: "bad expires_at", body: `{"name":"a","permission":"read_only","expires_at":"tomorrow"}`, status: 422, contains: "RFC 3339"},
		{name: "expires_at in the year 9000", body: `{"name":"a","permission":"read_only","expires_at":"9000-01-01T00:00:00Z"}`, status: 422, contains: "before 9000-01-01"},
		{name: "expires_at just before 9000", body: `{"name":"a","permission":"read_only","expires_at":"8999-12-31T23:59:59Z"}`},
		{name: "label key with =", body: `{"name":"a","permission":"read_only","labels":{"a=b":"c"}}`, status: 422, contains: "label keys"},
		{name: "control chars in name", body: `{"name":"a\u0000b","permission":"read_only"}`, status: 422, contains: "control"},
		{name: "description of 255 ASCII bytes", body: `{"name":"a","permission":"read_only","description":"` + strings.Repeat("d", 255) + `"}`},
		{name: "description of 255 UTF-8 bytes", body: `{"name":"a","permission":"read_only","description":"` + strings.Repeat("é", 127) + `x"}`},
		{name: "description with a tab", body: `{"name":"a","permission":"read_only","description":"a\tb"}`},
		{name: "description of 256 bytes", body: `{"name":"a","permission":"read_only","description":"` + strings.Repeat("d", 256) + `"}`, status: 422, contains: "description must be at most 255 bytes"},
		{name: "description of 128 runes in 256 bytes", body: `{"name":"a","permission":"read_only","description":"` + strings.Repeat("é", 128) + `"}`, status: 422, contains: "description must be at most 255 bytes"},
		{name: "description with a newline", body: `{"name":"a","permission":"read_only","description":"a\nb"}`, status: 422, contains: "description must be one line"},
		{name: "description with DEL", body: `{"name":"a","permission":"read_only","description":"a\u007fb"}`, status: 422, contains: "description must be one line"},
		{name: "description with NUL", body: `{"name":"a","permission":"read_only","description":"a\u0000b"}`, status: 422, contains: "description must be one line"},
		{name: "name too long", body: `{"name":"` + strings.Repeat("x", 201) + `","permission":"read_only"}`, status: 422, contains: "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			req, err := decodeCreateRequest(strings.NewReader(tc.body))
			if tc.status == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(req.Name).NotTo(BeEmpty())
				return
			}
			g.Expect(err).To(HaveOccurred())
			ae, ok := err.(*apiError)
			g.Expect(ok).To(BeTrue())
			g.Expect(ae.Status).To(Equal(tc.status))
			g.Expect(ae.Message + " " + strings.Join(ae.Errors, "; ")).To(ContainSubstring(tc.contains))
		})
	}
}

func TestDecodeCreateRequestBodyLimit(t *testing.T) {
	g := NewWithT(t)
	body := `{"name":"a","permission":"read_only","description":"` + strings.Repeat("x", 2048) + `"}`
	r := http.MaxBytesReader(nil, nopCloser{strings.NewReader(body)}, 1024)
	_, err := decodeCreateRequest(r)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.(*apiError).Status).To(Equal(http.StatusRequestEntityTooLarge))
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func TestCanonicalIgnoresFormatting(t *testing.T) {
	g := NewWithT(t)
	a, err := decodeCreateRequest(strings.NewReader(`{"name":"a","permission":"read_only","labels":{"x":"1","y":"2"},"expires_at":"2030-01-01T01:00:00+01:00"}`))
	g.Expect(err).NotTo(HaveOccurred())
	b, err := decodeCreateRequest(strings.NewReader(`{ "labels":{"y":"2","x":"1"}, "permission":"read_only", "expires_at":"2030-01-01T00:00:00Z", "name":"a" }`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(a.canonical(), b.canonical())).To(BeTrue())
	c, err := decodeCreateRequest(strings.NewReader(`{"name":"b","permission":"read_only"}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(a.canonical(), c.canonical())).To(BeFalse())
}

// FuzzDecodeCreateRequest checks that no body panics the decoder, that every
// refusal is a 400, 413 or 422, and that every accepted request is valid.
func FuzzDecodeCreateRequest(f *testing.F) {
	seeds := []string{
		`{"name":"a","permission":"read_only"}`,
		`{"name":"monitoring/grafana","permission":"full_access","expires_at":"2030-01-01T00:00:00Z","description":"d","external_id":"e","labels":{"k":"v"}}`,
		`{"name":"a","permission":"read_only","expires_at":null,"labels":null}`,
		`{"name":5}`,
		`{"name":"a","permission":"read_only","unknown":1}`,
		`{"name":"a","permission":"read_only"}{}`,
		`{"labels":{"a=b":"c"}}`,
		`[]`, `null`, `""`, `{`, ``,
		`{"name":"\ud800","permission":"read_only"}`,
		`{"name":"a","permission":"read_only","expires_at":"2030-13-01T00:00:00Z"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCreateRequest(http.MaxBytesReader(nil, nopCloser{strings.NewReader(string(body))}, DefaultMaxBodyBytes))
		if err != nil {
			ae, ok := err.(*apiError)
			if !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			switch ae.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			default:
				t.Fatalf("unexpected status %d", ae.Status)
			}
			return
		}
		if strings.TrimSpace(req.Name) == "" || (req.Permission != permReadOnly && req.Permission != permFullAccess) {
			t.Fatalf("accepted invalid request %+v", req)
		}
		if (req.ExpiresAt == nil) != (req.expiresAt == nil) {
			t.Fatalf("expires_at not parsed")
		}
		for k := range req.Labels {
			if k == "" || strings.Contains(k, "=") {
				t.Fatalf("accepted label key %q", k)
			}
		}
		if len(req.canonical()) == 0 {
			t.Fatalf("empty canonical form")
		}
	})
}
