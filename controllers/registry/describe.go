package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// DescribeBackendError says what went wrong with a call to a backend, for a status message.
// A ClusterStatusBackend is written by a cluster admin, so its errors keep their detail. A
// StatusBackend's URL is chosen by a tenant and is called from the operator's network
// position: its errors are reduced to a category ("connection refused", "timed out", ...),
// never an address, a server message or an echoed body, so status is no port scanner.
func DescribeBackendError(key backendkey.Key, err error) string {
	if key.Kind != tokensv1alpha1.BackendKindStatusBackend {
		return err.Error()
	}
	return backendErrorCategory(err)
}

// backendErrorCategory names the kind of failure without any text from the far side.
func backendErrorCategory(err error) string {
	var (
		be        *backend.Error
		dnsErr    *net.DNSError
		tlsVerify *tls.CertificateVerificationError
		tlsRecord tls.RecordHeaderError
		tlsAlert  tls.AlertError
		netErr    net.Error
	)
	switch {
	case IsBackendBusy(err):
		return "busy (too many requests in flight from the operator)"
	case errors.As(err, &be) && be.StatusCode != 0:
		return httpCategory(be.StatusCode)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.As(err, &dnsErr):
		return "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &tlsVerify), errors.As(err, &tlsRecord), errors.As(err, &tlsAlert),
		strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"),
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "TLS handshake failed"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	case errors.As(err, &be) && be.Kind == backend.KindProtocol:
		return "not a status backend"
	}
	return "request failed"
}

func httpCategory(code int) string {
	switch {
	case code == http.StatusTooManyRequests:
		return "rate limited (HTTP 429)"
	case code >= 500:
		return fmt.Sprintf("server error (HTTP %d)", code)
	}
	return fmt.Sprintf("not a status backend (HTTP %d)", code)
}
