package registry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// TestDescribeBackendError: a StatusBackend's errors (its URL is a tenant's) reach status only
// as a category, never an address, a server message or a body; a ClusterStatusBackend's keep
// their detail.
func TestDescribeBackendError(t *testing.T) {
	namespaced := backendkey.Key{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "tenant", Name: "probe"}
	cluster := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "shared"}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String() + "/api/v3"
	_ = closed.Close()
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"success":false,"message":"internal host db-7.corp.example:5432 said no"}`))
	}))
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>SSH-2.0-OpenSSH_9.6</html>"))
	}))
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(func() { close(stop); hang.Close(); echo.Close(); html.Close(); tlsSrv.Close() })

	cases := []struct {
		name, url, category string
		timeout             time.Duration
	}{
		{"refused", refusedURL, "connection refused", 0},
		{"hanging", hang.URL + "/api/v3", "timed out", 300 * time.Millisecond},
		{"plain HTTP port spoken to with TLS", strings.Replace(html.URL, "http://", "https://", 1) + "/api/v3", "TLS handshake failed", 0},
		{"unknown CA", tlsSrv.URL + "/api/v3", "TLS handshake failed", 0},
		{"echoing server error", echo.URL + "/api/v3", "server error (HTTP 500)", 0},
		{"not a status backend", html.URL + "/api/v3", "not a status backend (HTTP 200)", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cl, err := native.New(native.Options{BaseURL: tc.url, Token: "sgt_probe0000", Timeout: tc.timeout})
			g.Expect(err).NotTo(HaveOccurred())
			_, callErr := cl.Self(context.Background())
			g.Expect(callErr).To(HaveOccurred())
			got := DescribeBackendError(namespaced, callErr)
			g.Expect(got).To(Equal(tc.category), "from %v", callErr)
			g.Expect(DescribeBackendError(cluster, callErr)).To(Equal(callErr.Error()), "cluster backends keep the detail")
		})
	}
	t.Run("DNS", func(t *testing.T) {
		err := &backend.Error{Op: "self", Kind: backend.KindTransient, Message: "lookup probe.internal: no such host"}
		wrapped := errors.Join(err, &net.DNSError{Err: "no such host", Name: "probe.internal"})
		NewWithT(t).Expect(DescribeBackendError(namespaced, wrapped)).To(Equal("DNS lookup failed"))
	})
	t.Run("busy", func(t *testing.T) {
		NewWithT(t).Expect(DescribeBackendError(namespaced, newBusyError("create"))).To(HavePrefix("busy"))
	})
}
