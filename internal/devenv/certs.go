package devenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the set of files the API server and its clients need. They are generated once per
// directory and reused, so a restarted environment keeps its kubeconfig valid and
// service-account tokens verifiable.
type pki struct {
	dir string
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

func (p pki) CACert() string            { return p.path("ca.crt") }
func (p pki) ServingCert() string       { return p.path("apiserver.crt") }
func (p pki) ServingKey() string        { return p.path("apiserver.key") }
func (p pki) AdminCert() string         { return p.path("admin.crt") }
func (p pki) AdminKey() string          { return p.path("admin.key") }
func (p pki) ServiceAccountKey() string { return p.path("sa.key") }
func (p pki) ServiceAccountPub() string { return p.path("sa.pub") }

func (p pki) files() []string {
	return []string{p.CACert(), p.ServingCert(), p.ServingKey(), p.AdminCert(), p.AdminKey(), p.ServiceAccountKey(), p.ServiceAccountPub()}
}

// ensurePKI reuses the files in dir when all of them exist, and otherwise generates a new
// CA, an API server serving certificate for 127.0.0.1 and localhost, an admin client
// certificate (group system:masters) and a service-account signing key.
func ensurePKI(dir string) (pki, error) {
	p := pki{dir: dir}
	complete := true
	for _, f := range p.files() {
		if _, err := os.Stat(f); err != nil {
			complete = false
			break
		}
	}
	if complete {
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, err
	}
	if err := p.generate(); err != nil {
		return p, fmt.Errorf("generating certificates in %s: %w", dir, err)
	}
	return p, nil
}

// validity is long because this is a local development CA that nobody else trusts.
const validity = 10 * 365 * 24 * time.Hour

func (p pki) generate() error {
	now := time.Now().Add(-time.Hour) // tolerate small clock differences
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "apitoken-operator dev CA"},
		NotBefore:             now,
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	serving := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
	}
	admin := &x509.Certificate{
		SerialNumber: serial(),
		// system:masters is bound to cluster-admin by the API server's bootstrap RBAC policy.
		Subject:     pkix.Name{CommonName: "dev-admin", Organization: []string{"system:masters"}},
		NotBefore:   now,
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, leaf := range []struct {
		tmpl              *x509.Certificate
		certPath, keyPath string
	}{{serving, p.ServingCert(), p.ServingKey()}, {admin, p.AdminCert(), p.AdminKey()}} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.CreateCertificate(rand.Reader, leaf.tmpl, ca, key.Public(), caKey)
		if err != nil {
			return err
		}
		if err := writePEM(leaf.certPath, "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writeKey(leaf.keyPath, key); err != nil {
			return err
		}
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeKey(p.ServiceAccountKey(), saKey); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	if err := writePEM(p.ServiceAccountPub(), "PUBLIC KEY", pubDER); err != nil {
		return err
	}
	// The CA goes last: its presence with all the others marks the set as complete.
	if err := writeKey(p.path("ca.key"), caKey); err != nil {
		return err
	}
	return writePEM(p.CACert(), "CERTIFICATE", caDER)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if data == nil {
		return errors.New("encoding PEM")
	}
	return os.WriteFile(path, data, 0o600)
}
