package reliability

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// TestLeaderFailover runs two managers with leader election and SIGKILLs the leader right
// after the backend created a token for it (before it saw the reply): the other takes over
// and no APIToken ends with two tokens or none.
func TestLeaderFailover(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	a := startManager(t, s, "--leader-elect")
	b := startManager(t, s, "--leader-elect")
	// The continuous oracle counts time only while a manager leads: the standby's wait for
	// the lease cannot end what the killed leader left (its create not yet in status).
	watchCounting(t, s, func() bool { return isLeader(a) || isLeader(b) })
	var leader *harness.Manager
	if err := harness.WaitFor(ctx, time.Minute, "a leader", func() (bool, string, error) {
		for _, m := range []*harness.Manager{a, b} {
			if isLeader(m) {
				leader = m
				return true, "", nil
			}
		}
		return false, "none yet", nil
	}); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	creates := 0
	s.Proxy.OnResponse(func(r *http.Request, code int) {
		if faultproxy.Class(r.Method, r.URL.Path) != "create" || code/100 != 2 {
			return
		}
		mu.Lock()
		creates++
		c := creates
		mu.Unlock()
		if c == n/3 {
			once.Do(func() { leader.Kill(); close(killed) })
		}
	})
	if err := s.CreateTokens(ctx, "le", n, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the leader was never killed: it made fewer creates than expected")
	}
	s.Proxy.OnResponse(nil)
	start := time.Now()
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued by the new leader", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	t.Logf("the standby finished the run %s after the leader was killed", time.Since(start).Round(100*time.Millisecond))
	rep := checkOracle(t, s, "after failover")
	if rep.Writes.Creates != n {
		t.Errorf("the backend created %d tokens for %d APITokens: the failover duplicated creates", rep.Writes.Creates, n)
	}
	recordFigure("leader-failover", map[string]any{"tokens": n, "takeover_seconds": time.Since(start).Seconds(), "creates": rep.Writes.Creates, "replays": rep.Writes.Replays})
}

func isLeader(m *harness.Manager) bool {
	data, err := m.Scrape()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "leader_election_master_status") && strings.HasSuffix(line, " 1") {
			return true
		}
	}
	return false
}

// TestBackendOutage takes the backend away (connections refused) during issuance and
// during deletion: tokens wait with a condition that says why, finalizers stay, and all
// completes after recovery.
func TestBackendOutage(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	startManager(t, s)
	watch(t, s)
	// The backend must have been Ready once, so the outage hits a working setup.
	if err := waitBackendReady(ctx, s, s.Name); err != nil {
		t.Fatal(err)
	}

	s.Proxy.Down()
	if err := s.CreateTokens(ctx, "out", n, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(sz.outage)
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		c := meta.FindStatusCondition(it.Status.Conditions, tokensv1alpha1.ConditionReady)
		switch {
		case c == nil:
			t.Errorf("%s: no Ready condition after %s of backend outage", it.Name, sz.outage)
		case c.Status != metav1.ConditionFalse || (c.Reason != tokensv1alpha1.ReasonBackendError && c.Reason != tokensv1alpha1.ReasonBackendNotReady):
			t.Errorf("%s: Ready=%s reason %s during the outage, want False with BackendError or BackendNotReady", it.Name, c.Status, c.Reason)
		case c.Message == "":
			t.Errorf("%s: Ready=False %s without a message", it.Name, c.Reason)
		}
	}
	if len(items) > 0 {
		t.Logf("during the issuance outage: %s", readyOf(&items[0]))
	}
	if err := s.Proxy.Up(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued after the outage", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	issuedAfter := time.Since(up)
	// The backend's recovery wakes the waiting tokens (its re-check, then a watch): well
	// within 10 s, not at the end of a backoff.
	if issuedAfter > 10*time.Second {
		t.Errorf("every APIToken issued %s after the backend returned, want < 10 s", issuedAfter.Round(100*time.Millisecond))
	}
	checkOracleCreates(t, s, "after the issuance outage", new(n))

	s.Proxy.Down()
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(sz.outage)
	items, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != n {
		t.Errorf("%d of %d APITokens went away while the backend was down: their tokens could not have been revoked", n-len(items), n)
	}
	for _, it := range items {
		c := meta.FindStatusCondition(it.Status.Conditions, tokensv1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tokensv1alpha1.ReasonDeleting || c.Message == "" {
			t.Errorf("%s: during the deletion outage %s, want Ready=False reason Deleting with a message", it.Name, readyOf(&it))
		}
	}
	if len(items) > 0 {
		t.Logf("during the deletion outage: %s", readyOf(&items[0]))
	}
	if err := s.Proxy.Up(); err != nil {
		t.Fatal(err)
	}
	up = time.Now()
	if err := s.WaitGone(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	deletedAfter := time.Since(up)
	checkOracle(t, s, "after the deletion outage")
	t.Logf("outage %s: issued %s after recovery, deleted %s after recovery", sz.outage, issuedAfter.Round(100*time.Millisecond), deletedAfter.Round(100*time.Millisecond))
	recordFigure("outage", map[string]any{"tokens": n, "outage_seconds": sz.outage.Seconds(), "issued_after_recovery_seconds": issuedAfter.Seconds(), "deleted_after_recovery_seconds": deletedAfter.Seconds()})
}

func readyOf(t *tokensv1alpha1.APIToken) string {
	c := meta.FindStatusCondition(t.Status.Conditions, tokensv1alpha1.ConditionReady)
	if c == nil {
		return fmt.Sprintf("phase %s, no Ready condition", t.Status.Phase)
	}
	return fmt.Sprintf("phase %s, Ready=%s reason %s: %q", t.Status.Phase, c.Status, c.Reason, c.Message)
}

func waitBackendReady(ctx context.Context, s *harness.Scenario, name string) error {
	return harness.WaitFor(ctx, time.Minute, "ClusterStatusBackend "+name+" Ready", func() (bool, string, error) {
		var b tokensv1alpha1.ClusterStatusBackend
		if err := s.Kube.Get(ctx, types.NamespacedName{Name: name}, &b); err != nil {
			return false, err.Error(), nil
		}
		c := meta.FindStatusCondition(b.Status.Conditions, tokensv1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue, fmt.Sprint(c), nil
	})
}

// TestBackendRestart restarts the backend process state (server and store) mid-issuance:
// the data persists, tokens issued before still work, and the rest complete.
func TestBackendRestart(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	startManager(t, s)
	watch(t, s)
	restarted := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	creates := 0
	s.Proxy.OnResponse(func(r *http.Request, code int) {
		if faultproxy.Class(r.Method, r.URL.Path) != "create" || code/100 != 2 {
			return
		}
		mu.Lock()
		creates++
		c := creates
		mu.Unlock()
		if c == n/2 {
			once.Do(func() {
				go func() {
					_ = s.Backend.Stop()
					time.Sleep(2 * time.Second)
					if err := s.Backend.Start(); err != nil {
						t.Error(err)
					}
					close(restarted)
				}()
			})
		}
	})
	if err := s.CreateTokens(ctx, "br", n, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(2 * time.Minute):
		t.Fatal("the backend was never restarted")
	}
	s.Proxy.OnResponse(nil)
	// The tokens issued by the time the backend is back (so before its restart, but for a
	// few milliseconds), with the values their Secrets held.
	before := map[string][2]string{}
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if !harness.IsIssued(&it) {
			continue
		}
		var sec corev1.Secret
		if err := s.Kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: it.SecretNameOrDefault()}, &sec); err == nil {
			before[it.Name] = [2]string{it.Status.TokenID, string(sec.Data[tokensv1alpha1.SecretKeyToken])}
		}
	}
	if len(before) == 0 {
		t.Errorf("no APIToken was issued before the backend restart: the scenario tested nothing")
	}
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued after the backend restart", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	// Those keep their token id and value, and the value still authenticates.
	items, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		was, ok := before[it.Name]
		if !ok {
			continue
		}
		if it.Status.TokenID != was[0] {
			t.Errorf("%s: token %s before the backend restart, %s after", it.Name, was[0], it.Status.TokenID)
		}
		if dead, err := isDead(ctx, s, was[1]); err != nil || dead {
			t.Errorf("%s: the value issued before the backend restart no longer authenticates (%v)", it.Name, err)
		}
	}
	t.Logf("%d APITokens issued before the backend restart kept their token and value", len(before))
	rep := checkOracleCreates(t, s, "after the backend restart", new(n))
	t.Logf("backend restarted after %d creates; %d creates in all", n/2, rep.Writes.Creates)
}

// TestRateLimitStorm answers every backend request with 429 and Retry-After for a while:
// the operator must not retry a create before Retry-After has passed, and completes after.
func TestRateLimitStorm(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	const retryAfter = 2
	storm := time.Duration(pick(6, 30)) * time.Second
	startManager(t, s)
	watch(t, s)
	if err := waitBackendReady(ctx, s, s.Name); err != nil {
		t.Fatal(err)
	}
	s.Proxy.Add(faultproxy.Fault{Kind: faultproxy.RateLimit, RetryAfter: retryAfter})
	begin := time.Now()
	if err := s.CreateTokens(ctx, "rl", n, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(storm)
	s.Proxy.Clear()
	end := time.Now()
	if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued after the storm", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	checkOracleCreates(t, s, "after the 429 storm", new(n))

	// A stream of retries is one create (its idempotency key) or one other request (method
	// and path). Per request class the storm may see at most 1.1 times what Retry-After
	// permits: floor(storm/Retry-After)+1 per stream. Consecutive 429-answered attempts of
	// one create must be at least Retry-After apart (100 ms slack for timer granularity).
	// (Not yet for the other classes: a failed create asks for a re-check of the backend,
	// which sends GET /api_tokens/self at once, whatever Retry-After the last check got.)
	type stream struct{ class, id string }
	byStream := map[stream][]time.Time{}
	perClass := map[string]int{}
	total := 0
	for _, r := range s.Proxy.Requests() {
		if r.At.Before(begin) || r.At.After(end) {
			continue
		}
		total++
		if r.Code != http.StatusTooManyRequests {
			t.Errorf("a %s request during the storm was answered %d, not 429: the window is wrong", r.Class, r.Code)
			continue
		}
		id := r.Method + " " + r.Path
		if r.Class == "create" {
			id = r.Key
		}
		byStream[stream{r.Class, id}] = append(byStream[stream{r.Class, id}], r.At)
		perClass[r.Class]++
	}
	window := end.Sub(begin)
	permittedPerStream := int(window/(retryAfter*time.Second)) + 1
	streams := map[string]int{}
	early, minGap := 0, time.Hour
	for st, ts := range byStream {
		streams[st.class]++
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			gap := ts[i].Sub(ts[i-1])
			if gap < minGap {
				minGap = gap
			}
			if st.class == "create" && gap < retryAfter*time.Second-100*time.Millisecond {
				early++
				t.Errorf("%s %s was retried %s after a 429 with Retry-After %d s", st.class, st.id, gap.Round(time.Millisecond), retryAfter)
			}
		}
	}
	if streams["create"] == 0 {
		t.Errorf("no create was answered 429 during the storm: the scenario tested nothing")
	}
	for class, got := range perClass {
		permitted := streams[class] * permittedPerStream
		t.Logf("429 storm, %s: %d requests in %d streams, Retry-After permits %d", class, got, streams[class], permitted)
		if float64(got) > 1.1*float64(permitted) {
			t.Errorf("%s: %d requests during the %s storm, more than 1.1 times the %d that Retry-After permits", class, got, window.Round(time.Millisecond), permitted)
		}
	}
	rate := float64(total) / window.Seconds()
	allowed := float64(n+2) / retryAfter // every APIToken and the backend check once per Retry-After
	t.Logf("429 storm of %s: %d requests (%.1f/s, allowed about %.1f/s), %d retried early, smallest gap between retries of one stream %s",
		storm, total, rate, allowed, early, minGap)
	recordFigure("429-storm", map[string]any{"tokens": n, "storm_seconds": storm.Seconds(), "requests_per_second": rate, "allowed_per_second": allowed, "early_retries": early, "min_gap_seconds": minGap.Seconds()})
}

// TestExpiryWhileManagerDown lets tokens expire while the manager is stopped: after the
// restart each is Inactive (reason Expired) within one pass.
func TestExpiryWhileManagerDown(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := sz.tokens
	m := startManager(t, s)
	watch(t, s)
	expires := metav1.NewTime(time.Now().Add(time.Duration(pick(20, 40)) * time.Second).Truncate(time.Second))
	if err := s.CreateTokens(ctx, "exp", n, func(i int, a *tokensv1alpha1.APIToken) { a.Spec.ExpiresAt = &expires }); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx, 2*time.Minute, "every APIToken issued", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	if d := time.Until(expires.Time); d < 0 {
		t.Fatalf("issuance took longer than the expiry margin")
	} else {
		time.Sleep(d + 3*time.Second)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := s.WaitAll(ctx, 30*time.Second, "every APIToken Inactive/Expired after the restart", n, func(a *tokensv1alpha1.APIToken) bool {
		return a.Status.Phase == tokensv1alpha1.PhaseInactive && harness.ReadyReason(a) == tokensv1alpha1.ReasonExpired
	}); err != nil {
		t.Fatal(err)
	}
	lag := time.Since(restarted)
	t.Logf("every expired token was Inactive %s after the manager was ready", lag.Round(100*time.Millisecond))
	if lag > 10*time.Second {
		t.Errorf("expired tokens took %s after the restart to turn Inactive, want one pass (under 10 s)", lag)
	}
	checkOracle(t, s, "after expiry while down")
	recordFigure("expiry-while-down", map[string]any{"tokens": n, "inactive_after_restart_seconds": lag.Seconds()})
}

// TestUserDrift: a user deletes Secrets, edits their token, or revokes the token on the
// backend. Each is repaired with a new token and the old value is dead.
func TestUserDrift(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := max(sz.tokens/2, 9)
	startManager(t, s)
	watch(t, s)
	if err := s.CreateTokens(ctx, "drift", n, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx, 2*time.Minute, "every APIToken issued", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := native.New(native.Options{BaseURL: s.Backend.URL, Token: backend.SecretValue(s.Backend.AdminToken)})
	if err != nil {
		t.Fatal(err)
	}
	oldID := map[string]string{}
	oldValue := map[string]string{}
	for i, it := range items {
		oldID[it.Name] = it.Status.TokenID
		var sec corev1.Secret
		if err := s.Kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: it.Name}, &sec); err != nil {
			t.Fatal(err)
		}
		oldValue[it.Name] = string(sec.Data["token"])
		switch i % 3 {
		case 0:
			if err := s.Kube.Delete(ctx, &sec); err != nil {
				t.Fatal(err)
			}
		case 1:
			sec.Data["token"] = []byte("sgt_edited-by-hand-" + it.Name)
			if err := s.Kube.Update(ctx, &sec); err != nil {
				t.Fatal(err)
			}
		case 2:
			if _, err := admin.DeactivateToken(ctx, it.Status.TokenID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.WaitAll(ctx, 2*time.Minute, "every drifted APIToken repaired with a new token", n, func(a *tokensv1alpha1.APIToken) bool {
		return harness.IsIssued(a) && a.Status.TokenID != oldID[a.Name]
	}); err != nil {
		t.Fatal(err)
	}
	for name, v := range oldValue {
		dead, err := isDead(ctx, s, v)
		if err != nil {
			t.Fatal(err)
		}
		if !dead {
			t.Errorf("%s: the value from before the drift still authenticates", name)
		}
	}
	// One issuance per APIToken, and one more for each drifted one (all of them).
	checkOracleCreates(t, s, "after user drift", new(2*n))
}

// events returns the namespace's event notes, for assertions on what a user sees.
func events(ctx context.Context, t *testing.T, s *harness.Scenario) string {
	t.Helper()
	var list corev1.EventList
	if err := s.Kube.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range list.Items {
		fmt.Fprintf(&b, "%s %s: %s\n", e.Reason, e.InvolvedObject.Name, e.Message)
	}
	return b.String()
}

// TestBackendFaults puts each of the proxy's hang, reset, 503 and latency faults on the
// backend's creates in turn, each over a fresh batch of APITokens: while the fault holds
// nothing is issued, after it every APIToken is issued with exactly one active token and
// the backend created exactly one token per APIToken (the continuous oracle watches all
// along). The latency phase delays one create past the operator's 10 s request timeout: the
// backend still creates it after the client gave up, and the retry must replay it.
func TestBackendFaults(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	k := max(sz.tokens/4, 3)
	startManager(t, s)
	watch(t, s)
	if err := waitBackendReady(ctx, s, s.Name); err != nil {
		t.Fatal(err)
	}
	creates := faultproxy.MatchClass("create")
	phases := []struct {
		name string
		// faults are added for the phase; with hold, for hold only (nothing may be issued
		// meanwhile), then cleared.
		faults []faultproxy.Fault
		hold   time.Duration
	}{
		{"hang", []faultproxy.Fault{{Kind: faultproxy.Hang, Match: creates}}, 4 * time.Second},
		{"reset", []faultproxy.Fault{{Kind: faultproxy.Reset, Match: creates}}, 3 * time.Second},
		{"503", []faultproxy.Fault{{Kind: faultproxy.Status, Status: http.StatusServiceUnavailable, Match: creates}}, 3 * time.Second},
		{"latency", []faultproxy.Fault{
			{Kind: faultproxy.Pass, Latency: native.DefaultTimeout + time.Second, Match: creates, Times: 1},
			{Kind: faultproxy.Pass, Latency: time.Second},
		}, 0},
	}
	issued := 0
	for _, ph := range phases {
		begin := time.Now()
		replaysBefore := s.Backend.Stats().Replays
		s.Proxy.Add(ph.faults...)
		if err := s.CreateTokens(ctx, ph.name, k, nil); err != nil {
			t.Fatal(err)
		}
		mine := func(a *tokensv1alpha1.APIToken) bool { return strings.HasPrefix(a.Name, ph.name+"-") }
		if ph.hold > 0 {
			time.Sleep(ph.hold)
			items, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range items {
				if mine(&items[i]) && harness.IsIssued(&items[i]) {
					t.Errorf("%s: %s was issued while every create was faulted", ph.name, items[i].Name)
				}
			}
			s.Proxy.Clear()
		}
		if err := s.WaitAll(ctx, 3*time.Minute, "every APIToken issued after the "+ph.name+" fault", issued+k, harness.IsIssued); err != nil {
			t.Fatal(err)
		}
		s.Proxy.Clear()
		took := time.Since(begin)
		faulted, forwarded := 0, 0
		for _, r := range s.Proxy.Requests() {
			if r.At.Before(begin) || r.Class != "create" {
				continue
			}
			if r.Faulted {
				faulted++
			} else {
				forwarded++
			}
		}
		replays := s.Backend.Stats().Replays - replaysBefore
		t.Logf("%s: %d creates faulted, %d forwarded, %d replays; issued %s after the phase began", ph.name, faulted, forwarded, replays, took.Round(100*time.Millisecond))
		switch {
		case ph.hold > 0 && faulted == 0:
			t.Errorf("%s: no create was faulted: the phase tested nothing", ph.name)
		case ph.name == "latency" && took < native.DefaultTimeout:
			t.Errorf("latency: issued in %s, before the delayed create could have timed out: the phase tested nothing", took)
		case ph.name == "latency" && replays == 0:
			t.Errorf("latency: the create delayed past the client's timeout was never replayed")
		}
		issued += k
		checkOracleCreates(t, s, "after the "+ph.name+" fault", new(issued))
	}
}
