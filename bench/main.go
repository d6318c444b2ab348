// Command bench measures the operator against the physical floor of its API server: it
// starts the hermetic control plane (bin/controlplane), the reference backend (in this
// process, so its own counters give the backend writes) and the manager as a separate
// process built from ./cmd/manager, and writes bench/results.json. See docs/performance.md.
//
//	go run ./bench -n 1000 -backend-latency 0ms
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// Results is bench/results.json.
type Results struct {
	Tokens                     int            `json:"tokens"`
	ReadySeconds               float64        `json:"ready_seconds"`
	TokensPerSecond            float64        `json:"tokens_per_second"`
	FloorSeconds               float64        `json:"floor_seconds"`
	RatioToFloor               float64        `json:"ratio_to_floor"`
	APIWritesPerToken          float64        `json:"api_writes_per_token"`
	APIWritesPerTokenEvents    float64        `json:"api_writes_per_token_including_events"`
	BackendWritesPerToken      float64        `json:"backend_writes_per_token"`
	RestartSeconds             float64        `json:"restart_seconds"`
	RestartBackendWrites       int64          `json:"restart_backend_writes"`
	ExpiryTokens               int            `json:"expiry_tokens"`
	ExpiryLagP50Seconds        float64        `json:"expiry_lag_p50_seconds"`
	ExpiryLagP99Seconds        float64        `json:"expiry_lag_p99_seconds"`
	RSSMiBPeak                 float64        `json:"rss_mib_peak"`
	HeapMiB                    float64        `json:"heap_mib"`
	UnrelatedSecretsRSSGrowth  float64        `json:"unrelated_secrets_rss_growth_mib"`
	UnrelatedSecretsHeapGrowth float64        `json:"unrelated_secrets_heap_growth_mib"`
	BackendLatencyMS           float64        `json:"backend_latency_ms"`
	Concurrency                int            `json:"concurrency"`
	ManagerArgs                []string       `json:"manager_args"`
	ManagerEnv                 []string       `json:"manager_env,omitempty"`
	ManagerBuiltFrom           string         `json:"manager_built_from"`
	APIWritesByKind            map[string]int `json:"api_writes_by_kind"`
	CPUs                       int            `json:"cpus"`
	Date                       string         `json:"date"`
}

func main() {
	var (
		n           = flag.Int("n", 1000, "APITokens to create")
		latency     = flag.Duration("backend-latency", 0, "added latency of every backend request")
		concurrency = flag.Int("concurrency", 16, "manager --max-concurrent-reconciles, and the floor client's workers")
		qps         = flag.Int("kube-api-qps", 0, "manager --kube-api-qps (0: the manager's default)")
		burst       = flag.Int("kube-api-burst", 0, "manager --kube-api-burst (0: the manager's default)")
		expiryN     = flag.Int("expiry-tokens", 200, "tokens expiring within one minute, for the expiry lag (0 skips)")
		unrelated   = flag.Int("unrelated-secrets", 300, "unrelated 1 MiB Secrets for the memory check (0 skips)")
		managerArgs = flag.String("manager-args", "", "comma-separated extra manager flags, e.g. --pprof-bind-address=127.0.0.1:6060")
		managerEnv  = flag.String("manager-env", "", "comma-separated KEY=VALUE added to the manager's environment, e.g. GOMEMLIMIT=80MiB")
		out         = flag.String("out", filepath.Join(testenv.RepoRoot(), "bench", "results.json"), "results file")
	)
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(*n, *latency, *concurrency, *qps, *burst, *expiryN, *unrelated, *managerArgs, *managerEnv, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(n int, latency time.Duration, conc, qps, burst, expiryN, unrelated int, managerArgs, managerEnv, out string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	res := &Results{Tokens: n, BackendLatencyMS: float64(latency.Milliseconds()), Concurrency: conc, CPUs: runtime.NumCPU(), Date: time.Now().UTC().Format(time.RFC3339)}

	bin, pkg, err := harness.BuildManager(dir)
	if err != nil {
		return err
	}
	res.ManagerBuiltFrom = pkg
	cp, err := harness.StartControlPlane(dir)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	kube := cp.Client
	logf("control plane up; manager built from %s", pkg)

	for _, ns := range []string{"bench", "bench-floor", "bench-expiry"} {
		if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}

	// 1. The floor: the same writes by a plain client, no controller.
	floor, err := runFloor(ctx, cp.Config, n, conc)
	if err != nil {
		return err
	}
	res.FloorSeconds = floor.Seconds()
	logf("floor: %d objects x (create, finalizer patch, Secret create, status patch) in %.2fs", n, res.FloorSeconds)

	// 2. The backend and the manager.
	be, err := harness.StartBackend(dir, latency)
	if err != nil {
		return err
	}
	defer func() { _ = be.Stop() }()
	if err := kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "backend-admin", Namespace: "bench"},
		StringData: map[string]string{"token": be.AdminToken}}); err != nil {
		return err
	}
	if err := kube.Create(ctx, &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: tokensv1alpha1.ClusterStatusBackendSpec{StatusBackendSpec: tokensv1alpha1.StatusBackendSpec{URL: be.URL,
			CredentialsSecretRef: tokensv1alpha1.CredentialsSecretReference{Name: "backend-admin", Namespace: "bench", Key: "token"}}}}); err != nil {
		return err
	}
	// --metrics-secure=false: the bench scrapes the manager's metrics plainly, on loopback.
	args := []string{"--watch-namespaces=bench,bench-expiry", "--log-level=info", "--metrics-secure=false", "--max-concurrent-reconciles=" + strconv.Itoa(conc)}
	if qps > 0 {
		args = append(args, "--kube-api-qps="+strconv.Itoa(qps))
	}
	if burst > 0 {
		args = append(args, "--kube-api-burst="+strconv.Itoa(burst))
	}
	if managerArgs != "" {
		args = append(args, strings.Split(managerArgs, ",")...)
	}
	res.ManagerArgs = args
	mgr, err := harness.NewManager("manager", bin, cp.Kubeconfig, filepath.Join(dir, "manager.log"), args...)
	if err != nil {
		return err
	}
	if managerEnv != "" {
		mgr.Env = strings.Split(managerEnv, ",")
		res.ManagerEnv = mgr.Env
	}
	defer mgr.Stop()
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	if err := waitBackendReady(ctx, kube); err != nil {
		return err
	}
	logf("manager and backend up")

	// 3. N APITokens until all Ready.
	apiBefore, err := apiWrites(ctx, cp.Config)
	if err != nil {
		return err
	}
	beBefore := be.Stats()
	ready, err := createAndWait(ctx, cp.Config, kube, "bench", n, conc, nil)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let trailing writes (events) land before counting
	apiAfter, err := apiWrites(ctx, cp.Config)
	if err != nil {
		return err
	}
	beAfter := be.Stats()
	res.ReadySeconds = ready.Seconds()
	res.TokensPerSecond = float64(n) / ready.Seconds()
	res.RatioToFloor = res.ReadySeconds / res.FloorSeconds
	res.APIWritesByKind = diff(apiAfter, apiBefore)
	var core, all int
	for k, v := range res.APIWritesByKind {
		if strings.HasSuffix(k, " apitokens") && strings.HasPrefix(k, "POST ") {
			continue // the bench's own creates
		}
		all += v
		if !strings.Contains(k, "events") {
			core += v
		}
	}
	res.APIWritesPerToken = float64(core) / float64(n)
	res.APIWritesPerTokenEvents = float64(all) / float64(n)
	res.BackendWritesPerToken = float64(beAfter.WriteRequests-beBefore.WriteRequests) / float64(n)
	logf("ready: %d in %.2fs (%.0f/s, %.2fx floor); API writes/token %.2f (%.2f with events) %v; backend writes/token %.2f",
		n, res.ReadySeconds, res.TokensPerSecond, res.RatioToFloor, res.APIWritesPerToken, res.APIWritesPerTokenEvents, res.APIWritesByKind, res.BackendWritesPerToken)
	readMemory(mgr, res)

	// 4. Restart: until every token has been reconciled again, and the backend writes it made.
	mgr.Stop()
	beBefore = be.Stats()
	restartBegin := time.Now()
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	if err := harness.WaitFor(ctx, 10*time.Minute, "every token re-verified", func() (bool, string, error) {
		total, depth := reconcileProgress(mgr)
		return total >= float64(n) && depth == 0, fmt.Sprintf("%v reconciled, queue %v", total, depth), nil
	}); err != nil {
		return err
	}
	res.RestartSeconds = time.Since(restartBegin).Seconds()
	time.Sleep(2 * time.Second)
	res.RestartBackendWrites = be.Stats().WriteRequests - beBefore.WriteRequests
	logf("restart: every token re-verified %.2fs after the process started; %d backend writes", res.RestartSeconds, res.RestartBackendWrites)

	// 5. Expiry lag.
	if expiryN > 0 {
		p50, p99, err := expiryLag(ctx, cp.Config, kube, expiryN, conc)
		if err != nil {
			return err
		}
		res.ExpiryTokens, res.ExpiryLagP50Seconds, res.ExpiryLagP99Seconds = expiryN, p50, p99
		logf("expiry lag of %d tokens: p50 %.3fs, p99 %.3fs", expiryN, p50, p99)
	}
	readMemory(mgr, res)

	// 6. Unrelated Secrets.
	if unrelated > 0 {
		rss0, heap0 := settledMemory(mgr)
		if err := createUnrelated(ctx, kube, unrelated, conc); err != nil {
			return err
		}
		time.Sleep(10 * time.Second)
		rss1, heap1 := settledMemory(mgr)
		res.UnrelatedSecretsRSSGrowth = rss1 - rss0
		res.UnrelatedSecretsHeapGrowth = heap1 - heap0
		logf("%d unrelated 1 MiB Secrets: RSS %.1f -> %.1f MiB, heap %.1f -> %.1f MiB", unrelated, rss0, rss1, heap0, heap1)
		readMemory(mgr, res)
	}

	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	printTable(res)
	logf("wrote %s", out)
	return nil
}

func waitBackendReady(ctx context.Context, kube client.Client) error {
	return harness.WaitFor(ctx, time.Minute, "the backend Ready", func() (bool, string, error) {
		var b tokensv1alpha1.ClusterStatusBackend
		if err := kube.Get(ctx, client.ObjectKey{Name: "default"}, &b); err != nil {
			return false, err.Error(), nil
		}
		for _, c := range b.Status.Conditions {
			if c.Type == tokensv1alpha1.ConditionReady && c.Status == metav1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, "not Ready", nil
	})
}

func tokenObj(ns string, i int) *tokensv1alpha1.APIToken {
	return &tokensv1alpha1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tok-%05d", i), Namespace: ns},
		Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
	}
}

// pool runs f(0..n-1) on conc workers and returns the first error.
func pool(n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// unthrottled is a client without client-side rate limits: the floor is the API server's.
func unthrottled(cfg *rest.Config) (client.WithWatch, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	c.RateLimiter = nil
	return client.NewWithWatch(c, client.Options{Scheme: testenv.Scheme})
}

// runFloor creates n APITokens and does for each the writes the operator does (finalizer
// patch, Secret create, status patch), on conc workers.
func runFloor(ctx context.Context, cfg *rest.Config, n, conc int) (time.Duration, error) {
	c, err := unthrottled(cfg)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = pool(n, conc, func(i int) error {
		tok := tokenObj("bench-floor", i)
		if err := c.Create(ctx, tok); err != nil {
			return err
		}
		patch := client.MergeFrom(tok.DeepCopy())
		tok.Finalizers = append(tok.Finalizers, tokensv1alpha1.Finalizer)
		if err := c.Patch(ctx, tok, patch); err != nil {
			return err
		}
		value := make([]byte, 44)
		_, _ = rand.Read(value)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tok.Name, Namespace: tok.Namespace,
			Labels: map[string]string{tokensv1alpha1.LabelManagedBy: "bench-floor"}},
			Data: map[string][]byte{"token": value, "tokenID": []byte("tok_x"), "permission": []byte("ReadOnly"), "expiresAt": nil, "url": []byte("http://x/api/v3")}}
		if err := c.Create(ctx, sec); err != nil {
			return err
		}
		before := tok.DeepCopy()
		tok.Status.Phase = tokensv1alpha1.PhaseActive
		tok.Status.TokenID = "tok_x"
		tok.Status.SecretName = tok.Name
		tok.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Issued", Message: "Issued", LastTransitionTime: metav1.Now()}}
		return c.Status().Patch(ctx, tok, client.MergeFrom(before))
	})
	return time.Since(start), err
}

// createAndWait creates n APITokens in ns on conc workers (mutate adjusts each) and waits,
// through a watch, until all are Ready=True/Issued; it returns the time from the first
// create.
func createAndWait(ctx context.Context, cfg *rest.Config, kube client.Client, ns string, n, conc int, mutate func(i int, t *tokensv1alpha1.APIToken)) (time.Duration, error) {
	c, err := unthrottled(cfg)
	if err != nil {
		return 0, err
	}
	w, err := c.Watch(ctx, &tokensv1alpha1.APITokenList{}, client.InNamespace(ns))
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		errc <- pool(n, conc, func(i int) error {
			t := tokenObj(ns, i)
			if mutate != nil {
				mutate(i, t)
			}
			return c.Create(ctx, t)
		})
	}()
	ready := map[string]bool{}
	timeout := time.After(20 * time.Minute)
	for len(ready) < n {
		select {
		case err := <-errc:
			if err != nil {
				return 0, err
			}
			errc = nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch closed with %d of %d Ready", len(ready), n)
			}
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			t := ev.Object.(*tokensv1alpha1.APIToken)
			if harness.IsIssued(t) {
				ready[t.Name] = true
			}
		case <-timeout:
			return 0, fmt.Errorf("timed out with %d of %d Ready", len(ready), n)
		}
	}
	return time.Since(start), nil
}

// expiryLag creates n tokens expiring evenly over one minute (starting 30 s from now, so
// issuance is done first) and measures when each turns Inactive/Expired after its expiresAt.
func expiryLag(ctx context.Context, cfg *rest.Config, kube client.Client, n, conc int) (p50, p99 float64, err error) {
	base := time.Now().Add(30 * time.Second).Truncate(time.Second)
	expires := func(i int) time.Time {
		return base.Add(time.Duration(i) * time.Minute / time.Duration(n)).Truncate(time.Second)
	}
	c, err := unthrottled(cfg)
	if err != nil {
		return 0, 0, err
	}
	w, err := c.Watch(ctx, &tokensv1alpha1.APITokenList{}, client.InNamespace("bench-expiry"))
	if err != nil {
		return 0, 0, err
	}
	defer w.Stop()
	if err := pool(n, conc, func(i int) error {
		t := tokenObj("bench-expiry", i)
		at := metav1.NewTime(expires(i))
		t.Spec.ExpiresAt = &at
		return c.Create(ctx, t)
	}); err != nil {
		return 0, 0, err
	}
	var lags []float64
	seen := map[string]bool{}
	timeout := time.After(3 * time.Minute)
	for len(lags) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, 0, fmt.Errorf("watch closed")
			}
			t, isTok := ev.Object.(*tokensv1alpha1.APIToken)
			if !isTok || seen[t.Name] || t.Status.Phase != tokensv1alpha1.PhaseInactive || harness.ReadyReason(t) != tokensv1alpha1.ReasonExpired {
				continue
			}
			seen[t.Name] = true
			lags = append(lags, time.Since(t.Spec.ExpiresAt.Time).Seconds())
		case <-timeout:
			return 0, 0, fmt.Errorf("timed out: %d of %d expired", len(lags), n)
		}
	}
	sort.Float64s(lags)
	return quantile(lags, 0.5), quantile(lags, 0.99), nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * q)
	return sorted[i]
}

func createUnrelated(ctx context.Context, kube client.Client, n, conc int) error {
	blob := bytes.Repeat([]byte("u"), 1<<20-512)
	return pool(n, min(conc, 4), func(i int) error {
		return kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%04d", i), Namespace: "bench"},
			Data: map[string][]byte{"blob": blob}})
	})
}

// apiWrites reads apiserver_request_total from the API server and sums write verbs by
// "VERB resource[/subresource]".
func apiWrites(ctx context.Context, cfg *rest.Config) (map[string]int, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Get(strings.TrimRight(cfg.Host, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	labelRE := regexp.MustCompile(`(\w+)="([^"]*)"`)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndex(line, "}")
		labels := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(line[:end], -1) {
			labels[m[1]] = m[2]
		}
		switch labels["verb"] {
		case "POST", "PATCH", "PUT", "DELETE", "APPLY", "CREATE", "UPDATE":
		default:
			continue
		}
		res := labels["resource"]
		if res != "apitokens" && res != "secrets" && res != "events" {
			continue
		}
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		out[labels["verb"]+" "+res] += int(v)
	}
	return out, sc.Err()
}

func diff(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// metric returns the sum of a metric's samples whose line contains every filter.
func metric(text, name string, filters ...string) (float64, bool) {
	sum, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range filters {
			if !strings.Contains(line, f) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

func reconcileProgress(m *harness.Manager) (total, depth float64) {
	data, err := m.Scrape()
	if err != nil {
		return 0, -1
	}
	total, _ = metric(string(data), "controller_runtime_reconcile_total", `controller="apitoken"`)
	depth, ok := metric(string(data), "workqueue_depth", `name="apitoken"`)
	if !ok {
		depth = -1
	}
	return total, depth
}

// procStatus reads a field of /proc/<pid>/status in MiB.
func procStatus(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line)
			kb, _ := strconv.ParseFloat(fs[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func heapMiB(m *harness.Manager) float64 {
	data, err := m.Scrape()
	if err != nil {
		return 0
	}
	v, _ := metric(string(data), "go_memstats_heap_inuse_bytes")
	return v / (1 << 20)
}

// readMemory keeps the peak RSS (VmHWM) and the largest heap seen.
func readMemory(m *harness.Manager, res *Results) {
	if hwm := procStatus(m.Pid(), "VmHWM"); hwm > res.RSSMiBPeak {
		res.RSSMiBPeak = hwm
	}
	if h := heapMiB(m); h > res.HeapMiB {
		res.HeapMiB = h
	}
}

// settledMemory is RSS and heap after a short quiet period.
func settledMemory(m *harness.Manager) (rss, heap float64) {
	time.Sleep(2 * time.Second)
	return procStatus(m.Pid(), "VmRSS"), heapMiB(m)
}

func printTable(r *Results) {
	rows := [][2]string{
		{"tokens", strconv.Itoa(r.Tokens)},
		{"backend_latency_ms", fmt.Sprintf("%.0f", r.BackendLatencyMS)},
		{"ready_seconds", fmt.Sprintf("%.2f", r.ReadySeconds)},
		{"tokens_per_second", fmt.Sprintf("%.1f", r.TokensPerSecond)},
		{"floor_seconds", fmt.Sprintf("%.2f", r.FloorSeconds)},
		{"ratio_to_floor", fmt.Sprintf("%.2f", r.RatioToFloor)},
		{"api_writes_per_token", fmt.Sprintf("%.2f (%.2f with events)", r.APIWritesPerToken, r.APIWritesPerTokenEvents)},
		{"backend_writes_per_token", fmt.Sprintf("%.2f", r.BackendWritesPerToken)},
		{"restart_seconds", fmt.Sprintf("%.2f", r.RestartSeconds)},
		{"restart_backend_writes", strconv.FormatInt(r.RestartBackendWrites, 10)},
		{"expiry_lag_p50_seconds", fmt.Sprintf("%.3f", r.ExpiryLagP50Seconds)},
		{"expiry_lag_p99_seconds", fmt.Sprintf("%.3f", r.ExpiryLagP99Seconds)},
		{"rss_mib_peak", fmt.Sprintf("%.1f", r.RSSMiBPeak)},
		{"heap_mib", fmt.Sprintf("%.1f", r.HeapMiB)},
		{"unrelated_secrets_rss_growth_mib", fmt.Sprintf("%.1f", r.UnrelatedSecretsRSSGrowth)},
	}
	fmt.Println()
	fmt.Printf("| %-34s | %-22s |\n|%s|%s|\n", "metric", "value", strings.Repeat("-", 36), strings.Repeat("-", 24))
	for _, row := range rows {
		fmt.Printf("| %-34s | %-22s |\n", row[0], row[1])
	}
	fmt.Println()
}
