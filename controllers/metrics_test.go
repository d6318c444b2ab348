package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	"github.com/statusops/apitoken-operator/internal/testenv"
)

// serviceAccountToken creates a ServiceAccount in default and returns a token for it.
func serviceAccountToken(t *testing.T, env *testenv.Env, name string) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}})).To(Succeed())
	cs, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// bindShippedMetricsReader creates config/rbac/metrics_reader_role.yaml, the role scrapers
// are told to bind, and binds it to the ServiceAccount default/sa.
func bindShippedMetricsReader(t *testing.T, env *testenv.Env, sa string) {
	t.Helper()
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "metrics_reader_role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var role rbacv1.ClusterRole
	g.Expect(yaml.Unmarshal(data, &role)).To(Succeed())
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, &role)).To(Succeed())
	g.Expect(env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "scrape-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: "default"}},
	})).To(Succeed())
}

// get fetches url with the bearer token (none when empty) and returns the status code.
func get(hc *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// TestMetricsRequireAuthorization (finding 3): with the default options the metrics, which
// name tokens and namespaces, are served over HTTPS to authorized clients only: no token or
// an invalid one is 401, a token without the metrics-reader role 403, a ServiceAccount bound
// to the shipped metrics-reader role 200. InsecureMetrics (make dev, the bench) serves plain
// HTTP.
func TestMetricsRequireAuthorization(t *testing.T) {
	env := testenv.Start(t)
	bindShippedMetricsReader(t, env, "scraper")
	scraper := serviceAccountToken(t, env, "scraper")
	stranger := serviceAccountToken(t, env, "stranger")
	// The metrics server's certificate is self-signed: this test checks who may read, not
	// the certificate.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed by design
	}}

	t.Run("default", func(t *testing.T) {
		g := NewWithT(t)
		addr := testenv.FreeAddr(t)
		startTestManager(t, env, Options{MetricsAddr: addr})
		url := "https://" + addr + "/metrics"
		g.Eventually(func() error { _, _, err := get(hc, url, ""); return err }).WithTimeout(30 * time.Second).Should(Succeed())

		for _, c := range []struct {
			name, token string
			want        int
		}{
			{"no token", "", http.StatusUnauthorized},
			// A token the TokenReview does not authenticate is 401 (controller-runtime's
			// filter, which metricsAuthFilter replaced, answered it 500).
			{"an invalid token", "not-a-token", http.StatusUnauthorized},
			{"a ServiceAccount without metrics-reader", stranger, http.StatusForbidden},
			{"a ServiceAccount bound to metrics-reader", scraper, http.StatusOK},
		} {
			code, body, err := get(hc, url, c.token)
			g.Expect(err).NotTo(HaveOccurred(), c.name)
			g.Expect(code).To(Equal(c.want), "%s: %.200s", c.name, body)
			if code == http.StatusOK {
				g.Expect(body).To(ContainSubstring("controller_runtime_"), "the metrics themselves")
			} else {
				g.Expect(body).NotTo(ContainSubstring("controller_runtime_"), c.name)
			}
		}
		code, body, err := get(hc, "http://"+addr+"/metrics", "")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusBadRequest), "plain HTTP is not served: %s", body)
		g.Expect(body).NotTo(ContainSubstring("controller_runtime_"))
	})

	t.Run("insecure", func(t *testing.T) {
		g := NewWithT(t)
		addr := testenv.FreeAddr(t)
		startTestManager(t, env, Options{MetricsAddr: addr, InsecureMetrics: true})
		g.Eventually(func(g Gomega) {
			code, body, err := get(hc, "http://"+addr+"/metrics", "")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(body).To(ContainSubstring("controller_runtime_"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	t.Run("the given certificate", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("metrics.example", []net.IP{{127, 0, 0, 1}}, nil)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(os.WriteFile(filepath.Join(dir, "serving.crt"), certPEM, 0o600)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, "serving.key"), keyPEM, 0o600)).To(Succeed())
		addr := testenv.FreeAddr(t)
		startTestManager(t, env, Options{MetricsAddr: addr, MetricsCertDir: dir, MetricsCertName: "serving.crt", MetricsKeyName: "serving.key"})
		pool := x509.NewCertPool()
		g.Expect(pool.AppendCertsFromPEM(certPEM)).To(BeTrue())
		// Verified against the given certificate only: a self-signed fallback would fail.
		strict := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		g.Eventually(func() (int, error) {
			code, _, err := get(strict, "https://"+addr+"/metrics", scraper)
			return code, err
		}).
			WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))
	})

	t.Run("a missing certificate is an error", func(t *testing.T) {
		g := NewWithT(t)
		_, err := NewManager(env.Config, Options{MetricsAddr: "127.0.0.1:0", MetricsCertDir: t.TempDir(), SkipNameValidation: true})
		g.Expect(err).To(MatchError(ContainSubstring("metrics certificate")))
	})
}
