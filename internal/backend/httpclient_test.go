package backend

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNewHTTPClient: a redirect is answered, not followed (it would carry the credential to
// another host), and a CA bundle without a certificate is refused.
func TestNewHTTPClient(t *testing.T) {
	followed := false
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed = true }))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusFound))
	defer srv.Close()
	hc, err := NewHTTPClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed {
		t.Errorf("status %d, followed %v: a redirect must not be followed", resp.StatusCode, followed)
	}
	if _, err := NewHTTPClient([]byte("not a certificate")); err == nil {
		t.Error("a CA bundle without a certificate is accepted")
	}
}
