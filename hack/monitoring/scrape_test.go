package monitoring

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/metrics"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

var dashboardFile = repoPath("config", "prometheus", "grafana-dashboard.json")

// namedMetrics maps every metric a rule or a dashboard panel selects to where it is used.
func namedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for _, g := range loadRuleGroups(t, rulesFile).Groups {
		for _, r := range g.Rules {
			for _, n := range metricNames(t, r.Expr) {
				used[n] = append(used[n], "alert "+r.Alert)
			}
		}
	}
	for where, expr := range dashboardExprs(t, dashboardFile) {
		for _, n := range metricNames(t, expr) {
			used[n] = append(used[n], "panel "+where)
		}
	}
	return used
}

// TestEveryNamedMetricIsScraped starts the manager as the tests of the operator do (envtest,
// the reference backend over HTTP, its metrics registered as cmd/manager registers them), with
// one working and one misconfigured backend and an APIToken that expires and is used, then
// scrapes /metrics until every metric a rule or a panel names is there. A rule on a metric the
// manager does not serve would never fire; this catches a renamed or invented metric.
func TestEveryNamedMetricIsScraped(t *testing.T) {
	used := namedMetrics(t)
	if len(used) == 0 {
		t.Fatal("no metric names found in the rules and the dashboard")
	}
	g := NewWithT(t)
	ctx := context.Background()
	env := testenv.Start(t)
	c := env.Client
	ns := "monitoring-scrape"
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

	srv := servertest.Start(t)
	g.Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin"}, StringData: map[string]string{"token": srv.AdminToken}})).To(Succeed())
	g.Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong"}, StringData: map[string]string{"token": "not-a-token"}})).To(Succeed())
	for name, secret := range map[string]string{"good": "admin", "bad": "wrong"} {
		b := &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: name}}
		b.Spec.URL = srv.URL
		b.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: secret, Namespace: ns, Key: "token"}
		g.Expect(c.Create(ctx, b)).To(Succeed())
	}

	addr := testenv.FreeAddr(t)
	mgr, err := controllers.NewManager(env.Config, controllers.Options{
		// Plain HTTP: the test scrapes without a token (the default serves HTTPS to authorized
		// scrapers only).
		InsecureMetrics: true,
		MetricsAddr:     addr, HealthAddr: "0", SyncInterval: time.Second,
		SkipNameValidation: true, WatchNamespaces: []string{ns},
		LeaderElection: true, LeaderElectionNamespace: ns,
		BackendObserver: metrics.NewBackendObserver(),
		Setup: func(mgr manager.Manager) error {
			return metrics.RegisterTokenCollector(context.Background(), mgr.GetCache())
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	testenv.RunManager(t, c, mgr, ns)

	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grafana"}}
	tok.Spec.Permission = "ReadOnly"
	tok.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: "ClusterStatusBackend", Name: "good"}
	expires := metav1.NewTime(time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second))
	tok.Spec.ExpiresAt = &expires
	tok.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Minute}}
	g.Expect(c.Create(ctx, tok)).To(Succeed())
	var value string
	g.Eventually(func(g Gomega) {
		var s corev1.Secret
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "grafana"}, &s)).To(Succeed())
		value = string(s.Data["token"])
		g.Expect(value).NotTo(BeEmpty())
	}).WithTimeout(30 * time.Second).Should(Succeed())
	// Use the token as a workload would, so that last-used reaches the status and the metric.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/boards", nil)
	req.Header.Set("Authorization", "Bearer "+value)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	// And try a write with it, which a ReadOnly token is refused: the review's WritesDenied
	// finding is what gives apitoken_least_privilege_finding a series (it has one only while
	// a finding holds).
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/boards", strings.NewReader(`{"name":"from-the-test"}`))
	req.Header.Set("Authorization", "Bearer "+value)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))

	var missing []string
	g.Eventually(func(g Gomega) {
		scraped := scrape(g, "http://"+addr+"/metrics")
		missing = missing[:0]
		for name, where := range used {
			if !scraped[name] {
				sort.Strings(where)
				missing = append(missing, name+" (used by "+strings.Join(where, ", ")+")")
			}
		}
		sort.Strings(missing)
		g.Expect(missing).To(BeEmpty())
	}).WithTimeout(60*time.Second).WithPolling(time.Second).Should(Succeed(), "metrics named by config/prometheus but not served by the manager")
}

// scrape returns the names of the samples in a text exposition (histograms as their
// _bucket, _sum and _count series, as PromQL names them).
func scrape(g Gomega, url string) map[string]bool {
	resp, err := http.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	names := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	g.Expect(sc.Err()).NotTo(HaveOccurred())
	return names
}
