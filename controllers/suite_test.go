package controllers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
	"github.com/statusops/apitoken-operator/internal/testenv"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

// One API server for the package, started by the first test that needs it (so the pure
// tests, e.g. TestDecide, run on a machine without control-plane binaries); every test
// gets its own namespace, backend and manager.
var (
	env      *testenv.Env
	envOnce  sync.Once
	envError error
)

// ensureEnv starts the shared API server once.
func ensureEnv(t *testing.T) {
	t.Helper()
	envOnce.Do(func() { env, envError = testenv.StartEnv() })
	if envError != nil {
		t.Fatalf("starting envtest: %v", envError)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	// The Zabbix tests share one server (zabbixtest.Shared); without this its watcher stops it
	// a second after the binary exits.
	if err := zabbixtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping Zabbix:", err)
	}
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// harness is one test's world: a namespace, a reference backend over real HTTP (or, from
// newZabbixHarness, a real Zabbix), a ClusterStatusBackend pointing at it, and a running
// manager whose logs are captured.
type harness struct {
	t       *testing.T
	ctx     context.Context
	c       client.Client
	ns      string
	backend *servertest.Instance
	admin   *native.Client
	// zabbix is the Zabbix server of a newZabbixHarness (backend and admin are nil then).
	zabbix *zabbixtest.Server
	// backendName is the ClusterStatusBackend created for this test.
	backendName string
	logs        *syncBuffer
	writes      *writeCounter
	stopMgr     func()
	opts        controllers.Options
	// values are every token value seen in a Secret, for the leak canary.
	values map[string]bool
}

var nsCounter atomic.Int64

func newHarness(t *testing.T, mutate ...func(*controllers.Options)) *harness {
	t.Helper()
	h := newNamespace(t)
	h.backend = servertest.Start(t)
	h.admin = h.backend.Client(t)
	h.createAdminSecret(h.ns, "admin", h.backend.AdminToken)
	h.createClusterBackend(h.backendName, h.backend.URL, nil)
	h.run(mutate...)
	return h
}

// newNamespace is a harness with its namespace only: no backend and no manager yet.
func newNamespace(t *testing.T) *harness {
	t.Helper()
	ensureEnv(t)
	h := &harness{t: t, ctx: context.Background(), c: env.Client, logs: &syncBuffer{}, values: map[string]bool{}}
	h.ns = fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(h.ns) > 50 {
		h.ns = h.ns[:50]
	}
	h.ns = strings.TrimRight(strings.ReplaceAll(h.ns, "_", "-"), "-")
	NewWithT(t).Expect(h.c.Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}})).To(Succeed())
	h.backendName = "b-" + h.ns
	return h
}

// run starts the manager on the test's namespace and waits until the test's backend,
// created before, is Ready.
func (h *harness) run(mutate ...func(*controllers.Options)) {
	h.t.Helper()
	h.opts = controllers.Options{
		MetricsAddr:        "0",
		HealthAddr:         "0",
		SyncInterval:       time.Second,
		SkipNameValidation: true,
		// Tokens and backends of other tests' namespaces are not ours to touch.
		WatchNamespaces: []string{h.ns},
	}
	for _, m := range mutate {
		m(&h.opts)
	}
	h.startManager()
	h.t.Cleanup(h.finish)
	NewWithT(h.t).Eventually(func(g Gomega) {
		var b tokensv1alpha1.ClusterStatusBackend
		g.Expect(h.c.Get(h.ctx, types.NamespacedName{Name: h.backendName}, &b)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(b.Status.Conditions, tokensv1alpha1.ConditionReady)).To(BeTrue())
	}).WithTimeout(15 * time.Second).Should(Succeed())
}

// in is the harness for a subtest t of its test: the same world, with failures reported
// (and FailNow called) on t.
func (h *harness) in(t *testing.T) *harness {
	sub := *h
	sub.t = t
	return &sub
}

// startManager starts a manager with the most verbose logging, captured for the leak canary.
func (h *harness) startManager() {
	h.t.Helper()
	logger := zap.New(zap.WriteTo(h.logs), zap.Level(zapcore.Level(-10)), zap.UseDevMode(false))
	opts := h.opts
	opts.Logger = &logger
	cfg := rest.CopyConfig(env.Config)
	if h.writes == nil {
		h.writes = &writeCounter{}
	}
	cfg.Wrap(h.writes.wrap)
	mgr, err := controllers.NewManager(cfg, opts)
	if err != nil {
		h.t.Fatalf("creating manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			h.t.Errorf("manager: %v", err)
		}
	}()
	h.stopMgr = func() { cancel(); <-done }
}

func (h *harness) restartManager() {
	h.stopMgr()
	h.startManager()
}

// finish stops the manager and runs the leak canary: no token value seen in any Secret of
// the test may appear in the captured logs, events or APIToken statuses.
func (h *harness) finish() {
	if os.Getenv("DUMP_LOGS") != "" {
		_ = os.WriteFile("/tmp/"+h.ns+".log", []byte(h.logs.String()), 0o644)
	}
	h.collectSecretValues()
	h.stopMgr()
	var evs eventsv1.EventList
	_ = h.c.List(h.ctx, &evs, client.InNamespace(h.ns))
	var toks tokensv1alpha1.APITokenList
	_ = h.c.List(h.ctx, &toks, client.InNamespace(h.ns))
	evJSON, _ := yaml.Marshal(evs)
	stJSON, _ := yaml.Marshal(toks)
	haystacks := map[string]string{"logs": h.logs.String(), "events": string(evJSON), "statuses": string(stJSON)}
	for v := range h.values {
		for where, text := range haystacks {
			if strings.Contains(text, v) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(v))) {
				h.t.Errorf("leak canary: a token value (ending %q) appears in the captured %s", v[len(v)-4:], where)
			}
		}
	}
	if h.logs.Len() == 0 {
		h.t.Errorf("leak canary: no logs were captured, so the scan proves nothing")
	}
}

// collectSecretValues records every token value in the namespace's Secrets.
func (h *harness) collectSecretValues() {
	var secrets corev1.SecretList
	if err := h.c.List(h.ctx, &secrets, client.InNamespace(h.ns)); err != nil {
		return
	}
	for _, s := range secrets.Items {
		if v := string(s.Data[tokensv1alpha1.SecretKeyToken]); len(v) > 8 {
			h.values[v] = true
		}
	}
}

func (h *harness) createAdminSecret(ns, name, value string) {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"token": value}}
	NewWithT(h.t).Expect(h.c.Create(h.ctx, s)).To(Succeed())
}

func (h *harness) createClusterBackend(name, url string, mutate func(*tokensv1alpha1.ClusterStatusBackend)) {
	h.t.Helper()
	b := &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: name}}
	b.Spec.URL = url
	b.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "admin", Namespace: h.ns, Key: "token"}
	if mutate != nil {
		mutate(b)
	}
	NewWithT(h.t).Expect(h.c.Create(h.ctx, b)).To(Succeed())
	h.t.Cleanup(func() { _ = h.c.Delete(context.Background(), b) })
}

// newToken builds an APIToken on this test's backend.
func (h *harness) newToken(name string, perm tokensv1alpha1.Permission, mutate ...func(*tokensv1alpha1.APIToken)) *tokensv1alpha1.APIToken {
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}}
	tok.Spec.Permission = perm
	tok.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: h.backendName}
	for _, m := range mutate {
		m(tok)
	}
	return tok
}

func (h *harness) create(tok *tokensv1alpha1.APIToken) *tokensv1alpha1.APIToken {
	h.t.Helper()
	NewWithT(h.t).Expect(h.c.Create(h.ctx, tok)).To(Succeed())
	return tok
}

func (h *harness) get(name string) *tokensv1alpha1.APIToken {
	tok := &tokensv1alpha1.APIToken{}
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, tok); err != nil {
		return nil
	}
	return tok
}

// waitFor waits until the APIToken's Ready condition has the reason (and phase).
func (h *harness) waitFor(name string, phase tokensv1alpha1.APITokenPhase, reason string) *tokensv1alpha1.APIToken {
	h.t.Helper()
	var tok *tokensv1alpha1.APIToken
	NewWithT(h.t).Eventually(func(g Gomega) {
		tok = h.get(name)
		g.Expect(tok).NotTo(BeNil())
		g.Expect(tok.Status.Phase).To(Equal(phase))
		c := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason))
		g.Expect(tok.Status.ObservedGeneration).To(Equal(tok.Generation))
	}).WithTimeout(20 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return tok
}

func (h *harness) readyCondition(tok *tokensv1alpha1.APIToken) *metav1.Condition {
	return meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
}

func (h *harness) secret(name string) *corev1.Secret {
	s := &corev1.Secret{}
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, s); err != nil {
		return nil
	}
	if v := string(s.Data[tokensv1alpha1.SecretKeyToken]); len(v) > 8 {
		h.values[v] = true
	}
	return s
}

// backendToken reads a token through the protocol with the admin credential.
func (h *harness) backendToken(id string) *native.Token {
	h.t.Helper()
	tok, err := h.admin.GetToken(h.ctx, id)
	NewWithT(h.t).Expect(err).NotTo(HaveOccurred())
	return tok
}

// activeBackendTokens lists the active backend tokens of an APIToken.
func (h *harness) activeBackendTokens(uid types.UID) []native.Token {
	h.t.Helper()
	list, err := h.admin.ListTokens(h.ctx, native.ListOptions{ExternalID: string(uid), Status: backend.StatusActive})
	NewWithT(h.t).Expect(err).NotTo(HaveOccurred())
	return list
}

// expectEvent waits for an Event with the reason on the APIToken, and returns its note.
func (h *harness) expectEvent(name, reason string) string {
	h.t.Helper()
	var note string
	NewWithT(h.t).Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(h.c.List(h.ctx, &evs, client.InNamespace(h.ns))).To(Succeed())
		found := false
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Regarding.Kind == "APIToken" && e.Reason == reason {
				found, note = true, e.Note
			}
		}
		g.Expect(found).To(BeTrue(), "no %s event for %s", reason, name)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return note
}

// countEvents is how often an Event with the reason was emitted for the APIToken: each
// Event counts once, or as its series' count when the recorder folded repeats into it.
func (h *harness) countEvents(name, reason string) int {
	h.t.Helper()
	var evs eventsv1.EventList
	NewWithT(h.t).Expect(h.c.List(h.ctx, &evs, client.InNamespace(h.ns))).To(Succeed())
	n := 0
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "APIToken" && e.Reason == reason {
			if e.Series != nil {
				n += int(e.Series.Count) // the occurrences folded into it, the first included
			} else {
				n++
			}
		}
	}
	return n
}

// expectEventCount checks that exactly want Events with the reason were emitted for the
// APIToken. client-go writes Events from goroutines of its own (a repeat becomes a series
// update a moment later), so the count has to reach want and then stay there for a while:
// no reconcile-side condition says that the recorder has flushed.
func (h *harness) expectEventCount(name, reason string, want int) {
	h.t.Helper()
	g := NewWithT(h.t)
	g.Eventually(func() int { return h.countEvents(name, reason) }).WithTimeout(10*time.Second).Should(Equal(want), "%s events for %s", reason, name)
	g.Consistently(func() int { return h.countEvents(name, reason) }).WithTimeout(2*time.Second).Should(Equal(want), "%s events for %s", reason, name)
}

// useToken calls the backend as a workload would, with the token from the Secret.
func (h *harness) useToken(value []byte, method, path string) int {
	h.t.Helper()
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"name":"from-workload"}`)
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, h.backend.URL+path, body)
	NewWithT(h.t).Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+string(value))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	NewWithT(h.t).Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	return resp.StatusCode
}

// queueState is the APIToken controller's progress as controller-runtime's own metrics
// report it: reconciles finished, items ready in its queue, workers busy. The registry is
// process-wide and the tests of this package run one at a time, so differences between two
// readings belong to the running test (a stopped manager's leftovers stay frozen in them).
type queueState struct {
	reconciles, depth, active float64
}

func readQueueState(t *testing.T) queueState {
	t.Helper()
	return readQueueStateOf(t, "apitoken")
}

// readQueueStateOf is readQueueState for the controller of that name.
func readQueueStateOf(t *testing.T, controller string) queueState {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering controller-runtime metrics: %v", err)
	}
	var q queueState
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case f.GetName() == "controller_runtime_reconcile_total" && labels["controller"] == controller:
				q.reconciles += m.GetCounter().GetValue()
			case f.GetName() == "workqueue_depth" && labels["name"] == controller:
				q.depth += m.GetGauge().GetValue()
			case f.GetName() == "controller_runtime_active_workers" && labels["controller"] == controller:
				q.active += m.GetGauge().GetValue()
			}
		}
	}
	return q
}

// waitReconciled waits, instead of sleeping, until the APIToken controller has finished at
// least n reconciles since base and has nothing queued and nothing running: after a
// (re)start that is every APIToken handled at least once, so "nothing was written" is a
// statement about passes that ran, not about a sleep that was long enough.
func (h *harness) waitReconciled(base queueState, n int) {
	h.t.Helper()
	h.waitReconciledOf("apitoken", base, n)
}

// waitReconciledOf is waitReconciled for the controller of that name.
func (h *harness) waitReconciledOf(controller string, base queueState, n int) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func(g Gomega) {
		q := readQueueStateOf(h.t, controller)
		g.Expect(q.reconciles-base.reconciles).To(BeNumerically(">=", n), "reconciles since the start")
		g.Expect(q.depth-base.depth).To(BeZero(), "items in the APIToken queue")
		g.Expect(q.active-base.active).To(BeZero(), "reconciles running")
	}).WithTimeout(60 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
}

// writeCounter counts the manager's write requests to the API server, by verb and path.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
	// fail, when set, is asked about every counted write: true answers it with a 500 from the
	// API server's side, without sending it.
	fail func(method, path string) bool
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			if !strings.Contains(req.URL.Path, "/events") && !strings.Contains(req.URL.Path, "/leases") {
				w.mu.Lock()
				if w.counts == nil {
					w.counts = map[string]int{}
				}
				w.counts[req.Method+" "+req.URL.Path]++
				fail := w.fail != nil && w.fail(req.Method, req.URL.Path)
				w.mu.Unlock()
				if fail {
					return internalError(req), nil
				}
			}
		}
		return rt.RoundTrip(req)
	})
}

// internalError is the API server's answer to a write it failed to make.
func internalError(req *http.Request) *http.Response {
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected failure","reason":"InternalError","code":500}`
	return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}
}

// failWrites makes fail the seam of the manager's writes (under the counter's lock).
func (w *writeCounter) failWrites(fail func(method, path string) bool) {
	w.mu.Lock()
	w.fail = fail
	w.mu.Unlock()
}

// switchBackend points APIToken name at the backend named backendName and waits until its
// status names that backend.
func (h *harness) switchBackend(name, backendName string) {
	h.t.Helper()
	g := NewWithT(h.t)
	g.Eventually(func() error {
		cur := h.get(name)
		cur.Spec.BackendRef.Name = backendName
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	g.Eventually(func() string {
		if b := h.get(name).Status.Backend; b != nil {
			return b.Name
		}
		return ""
	}).WithTimeout(15 * time.Second).Should(Equal(backendName))
}

// failSecretThenStatus fails the manager's first write of a Secret in the harness's namespace
// (the credentials Secret aside) and then the next status patch of APIToken name: a pass whose
// Secret write and status write both fail. failed reports whether both happened.
func (h *harness) failSecretThenStatus(name string) (failed func() bool) {
	secrets := "/namespaces/" + h.ns + "/secrets"
	status := "/namespaces/" + h.ns + "/apitokens/" + name + "/status"
	secretFailed, statusFailed := false, false
	h.writes.failWrites(func(method, path string) bool {
		switch {
		case !secretFailed && strings.Contains(path, secrets) && !strings.HasSuffix(path, "/admin"):
			secretFailed = true
			return true
		case secretFailed && !statusFailed && method == http.MethodPatch && strings.HasSuffix(path, status):
			statusFailed = true
			return true
		}
		return false
	})
	return func() bool {
		h.writes.mu.Lock()
		defer h.writes.mu.Unlock()
		return secretFailed && statusFailed
	}
}

// total is the number of counted writes whose path contains substr.
func (w *writeCounter) total(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for k, v := range w.counts {
		if strings.Contains(k, substr) {
			n += v
		}
	}
	return n
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	w.counts = nil
	w.mu.Unlock()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

var (
	_ = logr.Discard
	_ runtime.Object
)
