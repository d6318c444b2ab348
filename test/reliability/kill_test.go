package reliability

import (
	"context"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// killPoint is where the manager is SIGKILLed: when the proxy has forwarded the nth reply
// of a class (counted from the restart before) and before that reply reaches the manager,
// or, with class "", after a delay from the previous restart.
type killPoint struct {
	class string // create, deactivate, list, or "" for a timed kill
	nth   int
	after time.Duration
}

type killStats struct {
	kills, notReached int
	// windowHits counts kills after the backend created a token and before its value was in
	// a Secret: the window the idempotency key exists for. Each value counts once (seen).
	windowHits int
	seen       map[string]bool
	// overlap: predecessors drain in this phase, so windows are not counted.
	overlap bool
}

// TestKillManagerEverywhere SIGKILLs the manager at points spread over issuance,
// replacement and deletion, restarting it after each, and checks after each phase that
// every token is whole (oracle), that no create was duplicated (every kill in the window
// was recovered by an idempotent replay, not a second token), and that a plain restart
// makes no backend write.
func TestKillManagerEverywhere(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	m := startManager(t, s)
	watch(t, s)
	var st killStats
	if os.Getenv("RELIABILITY_BREAK_IDEMPOTENCY") == "1" {
		// Breaks the crash-safety mechanism on purpose: this test must then fail.
		s.Proxy.StripHeaders("Idempotency-Key")
		t.Log("RELIABILITY_BREAK_IDEMPOTENCY=1: the proxy drops every Idempotency-Key")
	}

	issuance := []killPoint{{class: "create", nth: 2}, {after: 700 * time.Millisecond}}
	replacement := []killPoint{{class: "create", nth: 4}, {class: "deactivate", nth: 3}}
	rotation := []killPoint{{class: "create", nth: 3}, {class: "deactivate", nth: 2}}
	deletion := []killPoint{{class: "deactivate", nth: 5}}
	if sz.full {
		issuance = []killPoint{{class: "create", nth: 1}, {class: "create", nth: 17}, {class: "create", nth: 40}, {class: "create", nth: 40},
			{after: 500 * time.Millisecond}, {class: "create", nth: 30}, {after: 1500 * time.Millisecond}, {class: "create", nth: 5}}
		replacement = []killPoint{{class: "create", nth: 3}, {class: "deactivate", nth: 10}, {class: "create", nth: 40},
			{after: 800 * time.Millisecond}, {class: "deactivate", nth: 30}, {class: "create", nth: 8}, {class: "list", nth: 20}, {class: "create", nth: 4}}
		rotation = []killPoint{{class: "create", nth: 2}, {class: "create", nth: 30}, {after: 700 * time.Millisecond}, {class: "deactivate", nth: 3}, {class: "deactivate", nth: 30}}
		deletion = []killPoint{{class: "deactivate", nth: 1}, {class: "list", nth: 15}, {class: "deactivate", nth: 40},
			{after: 600 * time.Millisecond}, {class: "deactivate", nth: 35}, {class: "deactivate", nth: 40}, {class: "list", nth: 30}, {class: "deactivate", nth: 5}}
	}

	// Issuance.
	count := func(ok func(*tokensv1alpha1.APIToken) bool) int {
		items, err := s.List(ctx)
		if err != nil {
			return 0
		}
		c := 0
		for i := range items {
			if ok(&items[i]) {
				c++
			}
		}
		return c
	}
	replaced := func(a *tokensv1alpha1.APIToken) bool {
		return harness.IsIssued(a) && a.Status.Permission == tokensv1alpha1.PermissionFullAccess
	}
	killAt(t, s, m, issuance, &st, func() int { return n - count(harness.IsIssued) }, func() {
		if err := s.CreateTokens(ctx, "kill", n, nil); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	rep := checkOracle(t, s, "after issuance with kills")
	if rep.Writes.Creates != n {
		t.Errorf("after issuance: the backend created %d tokens for %d APITokens: a kill led to a second create instead of an idempotent replay", rep.Writes.Creates, n)
	}

	// A clean restart makes no backend writes.
	writesBefore := s.Backend.Stats().WriteRequests
	m.Stop()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // longer than the 3 s inventory interval: a full pass
	if w := s.Backend.Stats().WriteRequests - writesBefore; w != 0 {
		t.Errorf("a restart of the manager made %d backend writes, want 0", w)
	}

	// Replacement: every token's permission changes, so each is replaced.
	killAt(t, s, m, replacement, &st, func() int { return n - count(replaced) }, func() {
		items, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			patch := client.MergeFrom(items[i].DeepCopy())
			items[i].Spec.Permission = tokensv1alpha1.PermissionFullAccess
			if err := s.Kube.Patch(ctx, &items[i], patch); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken replaced", n, replaced); err != nil {
		t.Fatal(err)
	}
	rep = checkOracle(t, s, "after replacement with kills")
	if rep.Writes.Creates != 2*n {
		t.Errorf("after replacement: the backend created %d tokens for %d issuances: a kill led to a second create", rep.Writes.Creates, 2*n)
	}

	// Overlapped rotation: every token rotates with a grace period, kills land on the
	// successors' creates and on the predecessors' retirements. While they drain, each
	// APIToken has its current token plus exactly the predecessor its status lists; then
	// every predecessor is retired and nothing else is active.
	rotateAll(t, s, ctx)
	rotated := func(a *tokensv1alpha1.APIToken) bool {
		return harness.IsIssued(a) && a.Status.RotationHandled == "kill-rotation"
	}
	drained := func(a *tokensv1alpha1.APIToken) bool { return rotated(a) && len(a.Status.PreviousTokens) == 0 }
	// Draining predecessors are active values in no Secret, which countWindow would take for
	// creates whose Secret write was cut off: this phase counts kills only, and creates == 3n
	// below shows that none of them led to a second create.
	st.overlap = true
	killAt(t, s, m, rotation, &st, func() int { return n - count(drained) }, func() {
		annotateAll(t, s, ctx, tokensv1alpha1.AnnotationRotateRequestedAt, "kill-rotation")
	})
	st.overlap = false
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken rotated", n, rotated); err != nil {
		t.Fatal(err)
	}
	checkOracle(t, s, "while predecessors drain, with kills")
	if err := s.WaitAll(ctx, 3*time.Minute, "every predecessor retired", n, drained); err != nil {
		t.Fatal(err)
	}
	rep = checkOracle(t, s, "after rotation with kills")
	if rep.Writes.Creates != 3*n {
		t.Errorf("after rotation: the backend created %d tokens for %d issuances: a kill led to a second create", rep.Writes.Creates, 3*n)
	}

	// Deletion.
	killAt(t, s, m, deletion, &st, func() int { return count(func(*tokensv1alpha1.APIToken) bool { return true }) }, func() {
		if err := s.DeleteAll(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.WaitGone(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkOracle(t, s, "after deletion with kills")
	var secrets corev1.SecretList
	if err := s.Kube.List(ctx, &secrets, client.InNamespace(s.Namespace), client.MatchingLabels{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("%d managed Secrets are left after every APIToken was deleted", len(secrets.Items))
	}

	bs := s.Backend.Stats()
	t.Logf("kills: %d (%d points not reached), window between backend create and Secret write hit %d times, backend replays %d, creates %d, deactivations %d",
		st.kills, st.notReached, st.windowHits, bs.Replays, bs.TokensCreated, bs.Deactivations)
	// The short run reaches every kill point it names; the full run's 24 may miss two (a
	// phase of 200 tokens can finish before its last point's nth reply).
	points := len(issuance) + len(replacement) + len(rotation) + len(deletion)
	switch {
	case !sz.full && st.kills != points:
		t.Errorf("%d kills happened (%d points not reached), want every one of the %d kill points", st.kills, st.notReached, points)
	case sz.full && st.kills < points-2:
		t.Errorf("only %d kills happened, want at least %d of the %d kill points", st.kills, points-2, points)
	}
	if st.windowHits == 0 {
		t.Errorf("no kill landed between a backend create and the Secret write: the scenario did not test the window")
	}
	if bs.Replays < int64(st.windowHits) {
		t.Errorf("%d kills landed in the create-to-Secret window but the backend replayed only %d creates", st.windowHits, bs.Replays)
	}
	recordFigure("kill", map[string]any{"tokens": n, "kills": st.kills, "not_reached": st.notReached, "window_hits": st.windowHits,
		"replays": bs.Replays, "creates": bs.TokensCreated, "deactivations": bs.Deactivations})
}

// killAt runs through the kill points of one phase: arm the first, start the phase with
// trigger, then for each point wait for the kill, restart and arm the next.
//
// remaining is the work left in the phase (APITokens not yet done); a point's nth is
// capped at an even share of it, so that later points still land inside the phase.
func killAt(t *testing.T, s *harness.Scenario, m *harness.Manager, points []killPoint, st *killStats, remaining func() int, trigger func()) {
	t.Helper()
	ctx := context.Background()
	for i, p := range points {
		if i > 0 && p.class != "" {
			if share := remaining() / (len(points) - i + 1); share < p.nth {
				p.nth = max(1, share)
			}
		}
		killed := make(chan string, 1) // the created value when a create reply was cut off
		if p.class == "" {
			go func() {
				time.Sleep(p.after)
				m.Kill()
				killed <- ""
			}()
		} else {
			var mu sync.Mutex
			count := 0
			s.Proxy.OnResponse(func(r *http.Request, code int) {
				if faultproxy.Class(r.Method, r.URL.Path) != p.class || code/100 != 2 {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				count++
				if count != p.nth {
					return
				}
				m.Kill() // before this reply reaches the manager
				killed <- p.class
			})
		}
		if i == 0 {
			trigger()
		}
		select {
		case what := <-killed:
			st.kills++
			if what == "create" && !st.overlap {
				st.windowHits += countWindow(t, s, st)
			}
		case <-time.After(time.Duration(pick(10, 30)) * time.Second):
			st.notReached++
			t.Logf("kill point %+v not reached (the phase finished first)", p)
		}
		s.Proxy.OnResponse(nil)
		if !m.Running() {
			if err := m.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// countWindow counts issued values that are active on the backend but in no Secret and
// named by no APIToken's status, with the manager dead: tokens created whose Secret write had
// not happened, each counted once over the run. A value status names is a token being
// replaced (the Secret already holds its successor; the status patch or the same-pass
// deactivation was cut off) or retiring: it needs no replay, and counting it made the window
// look larger than the replays (50 against 43 in a full run).
func countWindow(t *testing.T, s *harness.Scenario, st *killStats) int {
	t.Helper()
	ctx := context.Background()
	var secrets corev1.SecretList
	if err := s.Kube.List(ctx, &secrets, client.InNamespace(s.Namespace)); err != nil {
		t.Fatal(err)
	}
	inSecret := map[string]bool{}
	for _, sec := range secrets.Items {
		inSecret[string(sec.Data[tokensv1alpha1.SecretKeyToken])] = true
	}
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named := statusTokenIDs(items)
	if st.seen == nil {
		st.seen = map[string]bool{}
	}
	ids := s.Proxy.IssuedIDs()
	n := 0
	for v := range s.Proxy.IssuedValues() {
		if inSecret[v] || named[ids[v]] || st.seen[v] {
			continue
		}
		if dead, err := isDead(ctx, s, v); err == nil && !dead {
			st.seen[v] = true
			n++
		}
	}
	return n
}

// statusTokenIDs is every backend token id the APITokens' status names: current, retiring
// and draining.
func statusTokenIDs(items []tokensv1alpha1.APIToken) map[string]bool {
	out := map[string]bool{}
	for i := range items {
		st := &items[i].Status
		out[st.TokenID] = true
		for _, p := range st.PendingDeactivation {
			out[p.TokenID] = true
		}
		for _, p := range st.PreviousTokens {
			out[p.TokenID] = true
		}
	}
	delete(out, "")
	return out
}

// rotationGrace is the overlap of the kill scenario's rotation phase: long enough for the
// kills to land while predecessors drain, short enough for the phase to end quickly.
const rotationGrace = 6 * time.Second

// rotateAll gives every APIToken an overlap (a spec change that does not replace anything).
func rotateAll(t *testing.T, s *harness.Scenario, ctx context.Context) {
	t.Helper()
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		patch := client.MergeFrom(items[i].DeepCopy())
		items[i].Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: rotationGrace}}
		if err := s.Kube.Patch(ctx, &items[i], patch); err != nil {
			t.Fatal(err)
		}
	}
}

// annotateAll sets an annotation on every APIToken.
func annotateAll(t *testing.T, s *harness.Scenario, ctx context.Context, key, value string) {
	t.Helper()
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		patch := client.MergeFrom(items[i].DeepCopy())
		if items[i].Annotations == nil {
			items[i].Annotations = map[string]string{}
		}
		items[i].Annotations[key] = value
		if err := s.Kube.Patch(ctx, &items[i], patch); err != nil {
			t.Fatal(err)
		}
	}
}
