package native

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/statusops/apitoken-operator/internal/backend"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-3":                            0,
		"junk":                          0,
		"999999999":                     24 * time.Hour,
		"Wed, 01 Jan 2025 00:01:00 GMT": time.Minute,
		"Tue, 31 Dec 2024 23:00:00 GMT": 0,
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			NewWithT(t).Expect(parseRetryAfter(in, now)).To(Equal(want))
		})
	}
}

// FuzzDecodeTokenResponse checks that any reply body decodes to a token with
// an id, a known status and a created_at, or to an error whose raw text (before
// any sanitizing, which would hide a leak) holds no token value in any
// encoding: the decoder must not quote input at all.
func FuzzDecodeTokenResponse(f *testing.F) {
	f.Add([]byte(`{"id":"tok_1","name":"n","permission":"read_only","status":"active","created_at":"2025-01-01T00:00:00Z","last4":"abcd","external_id":null,"labels":{}}`))
	f.Add([]byte(`{"id":"tok_1","status":"inactive","expires_at":"2025-01-01T00:00:00Z","deactivated_at":null,"token":"sgt_x"}`))
	f.Add([]byte(`{"name":"no id","status":"active"}`))
	f.Add([]byte(`{"id":5}`))
	f.Add([]byte(`{"id":"tok_1","status":"active","created_at":"sgt_notatimeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{"id":"tok_1","status":"active","created_at":"2025-01-01T00:00:00Zsgt_trailingAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{"id":"sgt_valueAsIdAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!","status":"active","created_at":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"tok_1","status":"sgt_valueAsStatusAAAAAAAAAAAAAAAAAAAAAAAA","created_at":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"tok_1","status":"active","labels":{"sgt_valueAsKeyAAAAAAAAAAAAAAAAAAAAAAAAAA":1}}`))
	f.Add([]byte(`{"id":"tok_1","status":"active","created_at":"1999-01-01T00:00:00Z","token":"my-custom-secret-value"}`))
	f.Add([]byte(`{"id":"tok 1","status":"active","token":"bXktY3VzdG9tLXNlY3JldA"}`))
	f.Add([]byte(`{"id":"tok_1","status":"active","labels":{"a":1}}`))
	f.Add([]byte(`{"id":"tok_1","name":3132333435363738,"token":"12345678"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"id":"tok_1",`))
	f.Add([]byte(`<html>502</html>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := decodeTokenData(json.RawMessage(data))
		if err != nil {
			if enc := leakIn(err.Error(), data); enc != "" {
				t.Fatalf("error holds a token value (%s): %q", enc, err.Error())
			}
			return
		}
		if !validID(w.ID) || (w.Status != backend.StatusActive && w.Status != backend.StatusInactive) || w.CreatedAt.IsZero() {
			t.Fatalf("accepted invalid token: %+v", w)
		}
		tok := w.toToken()
		if tok.ID != w.ID {
			t.Fatalf("id lost")
		}
	})
}

// valuesIn returns what counts as a token value in a reply body: the "token"
// field, when the body decodes that far, and every run in the value format.
// Shorter custom values are skipped: they would match ordinary words.
func valuesIn(data []byte) []string {
	out := regexp.MustCompile(`sgt_[0-9A-Za-z]*`).FindAllString(string(data), -1)
	var probe struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(data, &probe) == nil && len(probe.Token) >= 8 {
		out = append(out, probe.Token)
	}
	return out
}

// leakIn names the encoding in which msg holds a value from data (or the
// bare value prefix), "" when it holds none.
func leakIn(msg string, data []byte) string {
	if strings.Contains(msg, "sgt_") {
		return "value prefix"
	}
	for _, v := range valuesIn(data) {
		b := []byte(v)
		encodings := []struct{ name, enc string }{
			{"plain", v},
			{"std base64", base64.StdEncoding.EncodeToString(b)},
			{"url base64", base64.URLEncoding.EncodeToString(b)},
			{"raw std base64", base64.RawStdEncoding.EncodeToString(b)},
			{"raw url base64", base64.RawURLEncoding.EncodeToString(b)},
			{"hex", hex.EncodeToString(b)},
			{"HEX", strings.ToUpper(hex.EncodeToString(b))},
			{"Go-quoted", strings.Trim(strconv.QuoteToASCII(v), `"`)},
		}
		for _, e := range encodings {
			if strings.Contains(msg, e.enc) {
				return e.name
			}
		}
	}
	return ""
}

// TestLeakCheckCatchesLeaks proves the fuzz check can fail: each message
// quotes the value in one encoding, and a clean message passes.
func TestLeakCheckCatchesLeaks(t *testing.T) {
	const v = "my-custom-secret-value"
	b := []byte(v)
	data := []byte(`{"id":"tok 1","token":"` + v + `"}`)
	cases := map[string]string{
		"plain":          "bad " + v,
		"std base64":     "bad " + base64.StdEncoding.EncodeToString(b),
		"url base64":     "bad " + base64.URLEncoding.EncodeToString([]byte(v+"??>")),
		"raw std base64": "bad " + base64.RawStdEncoding.EncodeToString(b),
		"raw url base64": "bad " + base64.RawURLEncoding.EncodeToString([]byte(v+"??>")),
		"hex":            "bad " + hex.EncodeToString(b),
		"HEX":            "bad " + strings.ToUpper(hex.EncodeToString(b)),
		"value prefix":   "bad sgt_",
		"":               "token object id is not 1 to 128 characters of [A-Za-z0-9_-]",
	}
	for want, msg := range cases {
		t.Run(want, func(t *testing.T) {
			d := data
			if strings.Contains(want, "url") {
				d = []byte(`{"token":"` + v + `??>"}`)
			}
			NewWithT(t).Expect(leakIn(msg, d)).To(Equal(want))
		})
	}
}

// TestRoundTripEscapesSegmentsOnce sends path segments that need escaping
// (the public methods refuse such ids, so this goes below them) and checks
// the wire: each byte escaped once, the base path's own escapes kept.
func TestRoundTripEscapesSegmentsOnce(t *testing.T) {
	g := NewWithT(t)
	var uri, path string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri, path = r.RequestURI, r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"data":{}}`))
	}))
	defer hs.Close()
	c, err := New(Options{BaseURL: hs.URL + "/base%2Fdir/api%20v3", Token: "sgt_x"})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.roundTrip(context.Background(), "get", http.MethodGet, []string{"api_tokens", "tok 1/x%y"}, nil, nil, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(uri).To(Equal("/base%2Fdir/api%20v3/api_tokens/tok%201%2Fx%25y"))
	g.Expect(path).To(Equal("/base/dir/api v3/api_tokens/tok 1/x%y"))
}

// TestDecodeTokenTimes checks the range every reply timestamp must fall in,
// at both edges and for each field.
func TestDecodeTokenTimes(t *testing.T) {
	const base = `{"id":"tok_1","status":"active","created_at":"2025-01-01T00:00:00Z"`
	cases := map[string]struct {
		extra   string // appended fields (a later created_at wins)
		wantErr string // "" = accepted
	}{
		"in range":                     {extra: `,"expires_at":"2030-01-01T00:00:00Z","last_used_at":null`},
		"lowest":                       {extra: `,"created_at":"2000-01-01T00:00:00Z"`},
		"highest":                      {extra: `,"expires_at":"8999-12-31T23:59:59.999999999Z"`},
		"created_at missing":           {extra: `,"created_at":"0001-01-01T00:00:00Z"`, wantErr: "no created_at"},
		"created_at before 2000":       {extra: `,"created_at":"1999-12-31T23:59:59Z"`, wantErr: `"created_at"`},
		"created_at before 2000 by tz": {extra: `,"created_at":"2000-01-01T00:30:00+01:00"`, wantErr: `"created_at"`},
		"created_at 1970":              {extra: `,"created_at":"1970-01-01T00:00:00Z"`, wantErr: `"created_at"`},
		"expires_at at 9000":           {extra: `,"expires_at":"9000-01-01T00:00:00Z"`, wantErr: `"expires_at"`},
		"expires_at after 9000":        {extra: `,"expires_at":"9999-12-31T23:59:59Z"`, wantErr: `"expires_at"`},
		"last_used_at before 2000":     {extra: `,"last_used_at":"0001-01-01T00:00:00Z"`, wantErr: `"last_used_at"`},
		"deactivated_at after 9000":    {extra: `,"deactivated_at":"9000-01-01T00:00:00Z"`, wantErr: `"deactivated_at"`},
		"deactivated_at before 2000":   {extra: `,"deactivated_at":"1999-01-01T00:00:00Z"`, wantErr: `"deactivated_at"`},
		"last_write_at before 2000":    {extra: `,"last_write_at":"1999-01-01T00:00:00Z"`, wantErr: `"last_write_at"`},
		"last_denied_at at 9000":       {extra: `,"last_denied_at":"9000-01-01T00:00:00Z"`, wantErr: `"last_denied_at"`},
		"updated_at before 2000":       {extra: `,"updated_at":"0001-01-01T00:00:00Z"`, wantErr: `"updated_at"`},
		"extension fields in range":    {extra: `,"last_write_at":"2026-01-01T00:00:00Z","last_denied_at":null,"updated_at":"2026-01-01T00:00:00Z"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := decodeTokenData(json.RawMessage(base + tc.extra + "}"))
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
		})
	}
	g := NewWithT(t)
	_, err := decodeTokenData(json.RawMessage(`{"id":"tok_1","status":"active"}`))
	g.Expect(err).To(MatchError(ContainSubstring("no created_at")))
}
