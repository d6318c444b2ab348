package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

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

// createAndWait creates n APITokens in ns on conc workers (mutate adjusts each) and waits,
// through a watch, until all are Ready=True/Issued; it returns the time from the first
// create.
func createAndWait(ctx context.Context, cfg *rest.Config, kube client.Client, ns string, n, conc int, mutate func(i int, t *tokensv1alpha1.APIToken)) (time.Duration, error) {
	c, err := unthrottled(cfg)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := watchTokens(ctx, c, ns)
	if err != nil {
		return 0, err
	}
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
		case t, ok := <-events:
			if !ok {
				return 0, fmt.Errorf("watch ended with %d of %d Ready", len(ready), n)
			}
			if harness.IsIssued(t) {
				ready[t.Name] = true
			}
		case <-timeout:
			return 0, fmt.Errorf("timed out with %d of %d Ready", len(ready), n)
		}
	}
	return time.Since(start), nil
}

// watchTokens delivers the APITokens of ns as they are added or change, until ctx ends. When
// the API server ends the watch (in session 7 it ended the Ready phase's watch 2 to 22 s in,
// on a loaded machine, and the bench failed with the tokens it had not seen yet), it watches
// on from the last resourceVersion it saw, as a reflector does; only when the API server
// refuses that version (410 Gone) does it list the namespace again, delivering every token
// anew, and watch on from the list. Each restart is logged.
func watchTokens(ctx context.Context, c client.WithWatch, ns string) (<-chan *tokensv1alpha1.APIToken, error) {
	w, err := c.Watch(ctx, &tokensv1alpha1.APITokenList{}, client.InNamespace(ns))
	if err != nil {
		return nil, err
	}
	out := make(chan *tokensv1alpha1.APIToken, 1024)
	go func() {
		defer close(out)
		send := func(t *tokensv1alpha1.APIToken) bool {
			select {
			case out <- t:
				return true
			case <-ctx.Done():
				return false
			}
		}
		rv := ""
		for {
			gone := false
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified:
					t, ok := ev.Object.(*tokensv1alpha1.APIToken)
					if !ok {
						continue
					}
					rv = t.ResourceVersion
					if !send(t) {
						w.Stop()
						return
					}
				case watch.Error:
					if ctx.Err() != nil {
						w.Stop()
						return // the bench's own end of the watch
					}
					err := apierrors.FromObject(ev.Object)
					logf("watch of %s: %v", ns, err)
					gone = gone || apierrors.IsGone(err) || apierrors.IsResourceExpired(err)
				}
			}
			w.Stop()
			for ctx.Err() == nil {
				if gone || rv == "" {
					var l tokensv1alpha1.APITokenList
					if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
						logf("watch of %s: listing again: %v", ns, err)
						time.Sleep(time.Second)
						continue
					}
					logf("watch of %s ended; listed %d tokens", ns, len(l.Items))
					for i := range l.Items {
						if !send(&l.Items[i]) {
							return
						}
					}
					rv, gone = l.ResourceVersion, false
				} else {
					logf("watch of %s ended; watching on from resourceVersion %s", ns, rv)
				}
				if w, err = c.Watch(ctx, &tokensv1alpha1.APITokenList{}, client.InNamespace(ns),
					&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}}); err != nil {
					logf("watch of %s: %v", ns, err)
					gone = apierrors.IsGone(err) || apierrors.IsResourceExpired(err)
					time.Sleep(time.Second)
					continue
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return out, nil
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := watchTokens(ctx, c, "bench-expiry")
	if err != nil {
		return 0, 0, err
	}
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
		case t, ok := <-events:
			if !ok {
				return 0, 0, fmt.Errorf("watch ended")
			}
			if seen[t.Name] || t.Status.Phase != tokensv1alpha1.PhaseInactive || harness.ReadyReason(t) != tokensv1alpha1.ReasonExpired {
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
	return apiRequests(ctx, cfg, true)
}

// apiReads sums the read verbs (GET, LIST, WATCH) of every resource likewise.
func apiReads(ctx context.Context, cfg *rest.Config) (map[string]int, error) {
	return apiRequests(ctx, cfg, false)
}

func apiRequests(ctx context.Context, cfg *rest.Config, writes bool) (map[string]int, error) {
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
			if !writes {
				continue
			}
		default:
			if writes {
				continue
			}
		}
		res := labels["resource"]
		if writes && res != "apitokens" && res != "secrets" && res != "events" {
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

// passBreakdown is the apitoken controller's passes by result and the passes the backend's
// in-flight cap queued (apitoken_backend_slot_waits_total), from one scrape.
func passBreakdown(m *harness.Manager) map[string]float64 {
	data, err := m.Scrape()
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, r := range []string{"success", "error", "requeue", "requeue_after"} {
		out[r], _ = metric(string(data), "controller_runtime_reconcile_total", `controller="apitoken"`, `result="`+r+`"`)
	}
	out["slot_waits"], _ = metric(string(data), "apitoken_backend_slot_waits_total")
	return out
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

// settledMemory is RSS and the live heap after a forced collection (pprof's heap?gc=1) and a
// short quiet period. Without the collection two readings compare two points of the heap's
// sawtooth, which rises to 1.75 times the live heap between collections: at N=5000 that alone
// moves a reading by up to 25 MiB, more than what is measured.
func settledMemory(m *harness.Manager, pprofAddr string) (rss, heap float64) {
	if body, err := pprofHeapAfterGC(pprofAddr, ""); err == nil {
		_, _ = io.Copy(io.Discard, body)
		body.Close()
	}
	time.Sleep(2 * time.Second)
	// The heap right after a second collection (see heapAllocAfterGC), the RSS once the
	// collection's freed pages had their 2 s.
	heap, _ = heapAllocAfterGC(pprofAddr)
	return procStatus(m.Pid(), "VmRSS"), heap / (1 << 20)
}

// waitSettled waits, instead of sleeping a guessed time, until the apitoken controller has
// nothing queued and no pass running, and the API server has counted at least minEvents
// Event creates since before (Events are written asynchronously): then every write a pass
// made has landed. It returns the API server's write counts at that moment.
func waitSettled(ctx context.Context, cfg *rest.Config, m *harness.Manager, before map[string]int, minEvents int) (map[string]int, error) {
	var after map[string]int
	err := harness.WaitFor(ctx, 2*time.Minute, "the operator's writes landed", func() (bool, string, error) {
		data, err := m.Scrape()
		if err != nil {
			return false, err.Error(), nil
		}
		depth, ok1 := metric(string(data), "workqueue_depth", `name="apitoken"`)
		active, ok2 := metric(string(data), "controller_runtime_active_workers", `controller="apitoken"`)
		if after, err = apiWrites(ctx, cfg); err != nil {
			return false, err.Error(), nil
		}
		events := 0
		for k, v := range diff(after, before) {
			if strings.HasPrefix(k, "POST ") && strings.HasSuffix(k, " events") {
				events += v
			}
		}
		return ok1 && ok2 && depth == 0 && active == 0 && events >= minEvents,
			fmt.Sprintf("queue %v, active %v, %d of %d Events", depth, active, events, minEvents), nil
	})
	return after, err
}
