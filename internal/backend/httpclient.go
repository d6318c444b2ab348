package backend

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
)

// NewHTTPClient is the HTTP client every driver calls its backend with: TLS 1.2 at least,
// trusting caBundle (PEM) when it is set and the system roots otherwise; 64 idle connections
// per host, because the operator calls one backend from many reconciles at once and the
// default of 2 would close and reopen connections under load; and no redirects, which would
// carry the credential elsewhere. It has no timeout of its own: drivers bound each call with
// their context.
func NewHTTPClient(caBundle []byte) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 64
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
