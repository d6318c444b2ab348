package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// secretValue is a token value kept in a Secret next to the APITokens; it must never show up
// in a metric.
const secretValue = "sk_live_9f8e7d6c5b4a3f2e1d0c"

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := tokensv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func fixtures() []client.Object {
	expires := metav1.NewTime(time.Unix(1893456000, 0)) // 2030-01-01T00:00:00Z
	used := metav1.NewTime(time.Unix(1767225600, 0))    // 2026-01-01T00:00:00Z
	return []client.Object{
		&tokensv1alpha1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Name: "grafana", Namespace: "monitoring"},
			Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, ExpiresAt: &expires},
			Status: tokensv1alpha1.APITokenStatus{
				Phase: tokensv1alpha1.PhaseActive, TokenID: "tok_1", TokenHint: "3d0c",
				Permission: tokensv1alpha1.PermissionReadOnly, ExpiresAt: &expires, LastUsedAt: &used,
			},
		},
		&tokensv1alpha1.APIToken{ // not reconciled yet: Pending, requested permission
			ObjectMeta: metav1.ObjectMeta{Name: "incident-bot", Namespace: "ops"},
			Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionFullAccess},
		},
		&tokensv1alpha1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Name: "conflict", Namespace: "ops"},
			Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status:     tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseFailed},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "grafana", Namespace: "monitoring"},
			Data:       map[string][]byte{tokensv1alpha1.SecretKeyToken: []byte(secretValue), tokensv1alpha1.SecretKeyTokenID: []byte("tok_1")},
		},
	}
}

// fedStore is a token store fed, as the manager's informer feeds it, by a fake informer that
// delivered objs; the informer has synced.
func fedStore(t *testing.T, objs []client.Object) (*tokenStore, *controllertest.FakeInformer) {
	t.Helper()
	inf := controllertest.NewFakeInformer()
	s := newTokenStore()
	reg, err := inf.AddEventHandler(s.handler())
	if err != nil {
		t.Fatal(err)
	}
	s.synced = reg.HasSynced
	for _, o := range objs {
		inf.Add(o)
	}
	inf.Synced()
	return s, inf
}

func TestTokenCollector(t *testing.T) {
	g := NewWithT(t)
	store, inf := fedStore(t, fixtures())
	reg := prometheus.NewPedanticRegistry()
	g.Expect(reg.Register(newTokenCollector(func() *tokenStore { return store }))).To(Succeed())
	// What a scrape serves: the registry's counts and the series the handler writes.
	scrape := scraped(t, handlerOf(reg, store))

	want := `
# HELP apitoken_token_collector_success 1 when the APITokens are known for this scrape (the manager's cache has synced), 0 when not (the token metrics are then missing).
# TYPE apitoken_token_collector_success gauge
apitoken_token_collector_success 1
# HELP apitoken_token_expiration_timestamp_seconds Expiry of the token in each APIToken's Secret, as the backend reports it, in seconds since the Unix epoch; absent when the token never expires or none is issued.
# TYPE apitoken_token_expiration_timestamp_seconds gauge
apitoken_token_expiration_timestamp_seconds{name="grafana",namespace="monitoring"} 1.893456e+09
# HELP apitoken_token_info Always 1; labels identify the backend token of each APIToken (token_id is the backend's id, never the value).
# TYPE apitoken_token_info gauge
apitoken_token_info{name="conflict",namespace="ops",permission="ReadOnly",phase="Failed",token_id=""} 1
apitoken_token_info{name="grafana",namespace="monitoring",permission="ReadOnly",phase="Active",token_id="tok_1"} 1
apitoken_token_info{name="incident-bot",namespace="ops",permission="FullAccess",phase="Pending",token_id=""} 1
# HELP apitoken_token_last_used_timestamp_seconds When each APIToken's token last authenticated on the backend, in seconds since the Unix epoch; absent when never used. Refreshed once per sync interval.
# TYPE apitoken_token_last_used_timestamp_seconds gauge
apitoken_token_last_used_timestamp_seconds{name="grafana",namespace="monitoring"} 1.7672256e+09
# HELP apitoken_tokens APITokens by phase (Pending, Active, Inactive, Failed; Pending before the first reconcile) and permission (of the issued token, else the requested one).
# TYPE apitoken_tokens gauge
apitoken_tokens{permission="FullAccess",phase="Active"} 0
apitoken_tokens{permission="FullAccess",phase="Failed"} 0
apitoken_tokens{permission="FullAccess",phase="Inactive"} 0
apitoken_tokens{permission="FullAccess",phase="Pending"} 1
apitoken_tokens{permission="ReadOnly",phase="Active"} 1
apitoken_tokens{permission="ReadOnly",phase="Failed"} 1
apitoken_tokens{permission="ReadOnly",phase="Inactive"} 0
apitoken_tokens{permission="ReadOnly",phase="Pending"} 0
`
	g.Expect(testutil.GatherAndCompare(scrape, strings.NewReader(want))).To(Succeed())

	problems, err := testutil.GatherAndLint(scrape)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(problems).To(BeEmpty())

	// No label value of any metric carries the token value.
	families, err := scrape.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(families).NotTo(BeEmpty())
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				g.Expect(l.GetValue()).NotTo(ContainSubstring(secretValue), "%s label %s", f.GetName(), l.GetName())
			}
		}
	}

	// The informer's updates and deletes reach the next scrape: incident-bot is issued,
	// grafana's expiry goes, conflict is deleted (as a tombstone, as after a missed watch).
	objs := fixtures()
	bot := objs[1].(*tokensv1alpha1.APIToken).DeepCopy()
	bot.Status = tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseActive, TokenID: "tok_2", Permission: tokensv1alpha1.PermissionFullAccess}
	inf.Update(objs[1].(*tokensv1alpha1.APIToken), bot)
	grafana := objs[0].(*tokensv1alpha1.APIToken).DeepCopy()
	grafana.Status.ExpiresAt = nil
	inf.Update(objs[0].(*tokensv1alpha1.APIToken), grafana)
	store.handler().OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ops/conflict", Obj: objs[2]})
	g.Expect(testutil.GatherAndCompare(scrape, strings.NewReader(`
# HELP apitoken_token_info Always 1; labels identify the backend token of each APIToken (token_id is the backend's id, never the value).
# TYPE apitoken_token_info gauge
apitoken_token_info{name="grafana",namespace="monitoring",permission="ReadOnly",phase="Active",token_id="tok_1"} 1
apitoken_token_info{name="incident-bot",namespace="ops",permission="FullAccess",phase="Active",token_id="tok_2"} 1
`), TokenInfo)).To(Succeed())
	g.Expect(testutil.GatherAndCount(scrape, TokenExpirationTimestamp)).To(Equal(0))
	g.Expect(testutil.ToFloat64(onlyTokens(reg, "ReadOnly", "Failed"))).To(BeZero())
}

// onlyTokens is a collector of the one apitoken_tokens series with the given labels.
func onlyTokens(reg *prometheus.Registry, permission, phase string) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		families, _ := reg.Gather()
		for _, f := range families {
			if f.GetName() != Tokens {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["permission"] == permission && labels["phase"] == phase {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(Tokens, "", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
				}
			}
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func TestTokenCollectorBeforeSync(t *testing.T) {
	g := NewWithT(t)
	inf := controllertest.NewFakeInformer()
	store := newTokenStore()
	hreg, err := inf.AddEventHandler(store.handler())
	g.Expect(err).NotTo(HaveOccurred())
	store.synced = hreg.HasSynced
	for _, o := range fixtures() {
		inf.Add(o)
	}
	reg := prometheus.NewPedanticRegistry()
	g.Expect(reg.Register(newTokenCollector(func() *tokenStore { return store }))).To(Succeed())

	// The scrape itself succeeds and says the token metrics are missing, rather than
	// counting a partial initial list.
	g.Expect(testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP apitoken_token_collector_success 1 when the APITokens are known for this scrape (the manager's cache has synced), 0 when not (the token metrics are then missing).
# TYPE apitoken_token_collector_success gauge
apitoken_token_collector_success 0
`))).To(Succeed())
	scrape := scraped(t, handlerOf(reg, store))
	g.Expect(testutil.GatherAndCount(scrape, Tokens, TokenInfo)).To(Equal(0))
	inf.Synced()
	g.Expect(testutil.GatherAndCount(scrape, TokenInfo)).To(Equal(3))
}

func TestBackendMetrics(t *testing.T) {
	g := NewWithT(t)
	m := newBackendMetrics()
	reg := prometheus.NewPedanticRegistry()
	g.Expect(m.register(reg)).To(Succeed())

	m.observe("create", 201, 30*time.Millisecond, nil)
	m.observe("create", 201, 70*time.Millisecond, nil)
	m.observe("list", 503, time.Second, errors.New("service unavailable"))
	m.observe("ping", 0, 2*time.Second, errors.New("connection refused"))

	g.Expect(testutil.ToFloat64(m.errors.WithLabelValues("list", "503"))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(m.errors.WithLabelValues("ping", "0"))).To(Equal(1.0))
	g.Expect(testutil.CollectAndCount(m.errors)).To(Equal(2), "successful requests are not errors")
	g.Expect(testutil.CollectAndCount(m.duration)).To(Equal(3), "one series per operation and code")

	families, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	var createCount uint64
	var createSum float64
	for _, f := range families {
		if f.GetName() != BackendRequestDuration {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["operation"] == "create" && labels["code"] == "201" {
				createCount = metric.GetHistogram().GetSampleCount()
				createSum = metric.GetHistogram().GetSampleSum()
			}
		}
	}
	g.Expect(createCount).To(Equal(uint64(2)))
	g.Expect(createSum).To(BeNumerically("~", 0.1, 1e-9))

	problems, err := testutil.GatherAndLint(reg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(problems).To(BeEmpty())
}

// TestRegisteredOnControllerRuntimeRegistry checks the exported constructors put the metrics
// where the manager's metrics endpoint serves them, and survive being called again.
func TestRegisteredOnControllerRuntimeRegistry(t *testing.T) {
	g := NewWithT(t)
	observe := NewBackendObserver()
	observe("deactivate", 404, 10*time.Millisecond, errors.New("not found"))
	NewBackendObserver()("deactivate", 404, 10*time.Millisecond, errors.New("not found"))

	ctx := context.Background()
	empty := &informertest.FakeInformers{Scheme: newScheme(t)}
	g.Expect(RegisterTokenCollector(ctx, empty)).To(Succeed())
	full := &informertest.FakeInformers{Scheme: newScheme(t)}
	g.Expect(RegisterTokenCollector(ctx, full)).To(Succeed(), "a second manager in the process replaces the source")
	inf, err := full.FakeInformerFor(ctx, &tokensv1alpha1.APIToken{})
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range fixtures() {
		inf.Add(o)
	}

	// Served as the manager's /metrics serves them: the registry's families, then the
	// per-token series of the newest store.
	served := Handler(crmetrics.Registry)
	families, err := scraped(t, served).Gather()
	g.Expect(err).NotTo(HaveOccurred())
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case BackendRequestErrors:
				values[f.GetName()] += m.GetCounter().GetValue()
			case TokenInfo:
				values[f.GetName()] += m.GetGauge().GetValue()
			case BackendRequestDuration:
				values[f.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	g.Expect(values).To(Equal(map[string]float64{
		BackendRequestErrors:   2,
		BackendRequestDuration: 2,
		TokenInfo:              3, // from the second reader
	}))
	g.Expect(RegisterTokenCollector(ctx, nil)).NotTo(Succeed())

	// Scraped over HTTP as Prometheus does, in the text format.
	srv := httptest.NewServer(served)
	defer srv.Close()
	res, err := http.Get(srv.URL)
	g.Expect(err).NotTo(HaveOccurred())
	defer res.Body.Close()
	g.Expect(res.StatusCode).To(Equal(http.StatusOK))
	body, err := io.ReadAll(res.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(body)).To(And(
		ContainSubstring(`apitoken_tokens{permission="ReadOnly",phase="Active"} 1`),
		ContainSubstring(`apitoken_token_expiration_timestamp_seconds{name="grafana",namespace="monitoring"} 1.893456e+09`),
		ContainSubstring(`apitoken_token_last_used_timestamp_seconds{name="grafana",namespace="monitoring"} 1.7672256e+09`),
		ContainSubstring(`apitoken_token_info{name="grafana",namespace="monitoring",permission="ReadOnly",phase="Active",token_id="tok_1"} 1`),
		ContainSubstring(`apitoken_backend_request_errors_total{code="404",operation="deactivate"} 2`),
		ContainSubstring(`apitoken_backend_request_duration_seconds_count{code="404",operation="deactivate"} 2`),
	))
	g.Expect(string(body)).NotTo(ContainSubstring(secretValue))
}
