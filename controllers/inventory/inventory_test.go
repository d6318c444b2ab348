package inventory

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// The inventory tests run the reference backend over real HTTP on loopback, and count its
// requests; the APIToken side is a fake client (the inventory only lists APITokens to wake
// them), so they need no control plane.

// inventoryFixture is a backend with a manual clock, registered in a registry, and an
// inventory over it.
type inventoryFixture struct {
	t     *testing.T
	ctx   context.Context
	srv   *servertest.Instance
	clock *servertest.Clock
	admin *native.Client
	reg   *registry.Registry
	key   backendkey.Key
	inv   *Inventory
	logs  *logLines
}

// logLines collects the inventory's log messages.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// newInventoryFixture starts a backend; skew is how far the operator's clock is ahead of the
// backend's.
func newInventoryFixture(t *testing.T, skew time.Duration, opts ...servertest.Option) *inventoryFixture {
	t.Helper()
	clock := servertest.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	srv := servertest.Start(t, append([]servertest.Option{servertest.WithClock(clock.Now)}, opts...)...)
	// The registry caps in-flight requests as the manager's does, so the inventory sees the
	// wrapped client a reconcile sees.
	f := &inventoryFixture{t: t, srv: srv, clock: clock, reg: registry.New(registry.WithMaxInFlightPerBackend(4)), logs: &logLines{},
		key: backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "b"}}
	f.ctx = logf.IntoContext(context.Background(), funcr.New(func(prefix, args string) {
		f.logs.mu.Lock()
		f.logs.lines = append(f.logs.lines, args)
		f.logs.mu.Unlock()
	}, funcr.Options{}))
	f.admin = f.newClient()
	f.register(f.admin.Driver())
	reader := fake.NewClientBuilder().WithScheme(testenv.Scheme).
		WithIndex(&tokensv1alpha1.APIToken{}, backendkey.Index, func(o client.Object) []string {
			return backendkey.Of(o.(*tokensv1alpha1.APIToken))
		}).Build()
	f.inv = New(f.reg, reader, time.Minute, func() time.Time { return clock.Now().Add(skew) })
	return f
}

// managedByLabels are the labels the native driver puts on a token of a cluster without an
// identity.
func managedByLabels() map[string]string {
	return native.CreateRequestFor(backend.Owner{}, backend.TokenSpec{}).Labels
}

// clusterLabels are the labels the native driver puts on a token of that cluster.
func clusterLabels(cluster string) map[string]string {
	return native.CreateRequestFor(backend.Owner{Cluster: cluster}, backend.TokenSpec{}).Labels
}

func (f *inventoryFixture) newClient() *native.Client {
	f.t.Helper()
	c, err := native.New(native.Options{BaseURL: f.srv.URL, Token: backend.SecretValue(f.srv.AdminToken)})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// register puts c in the registry as the backend's client, as a successful check does.
func (f *inventoryFixture) register(c backend.Driver) {
	f.reg.Set(f.ctx, f.key, &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: f.key.Name}}, c, f.srv.URL, fmt.Sprintf("%p", c))
}

// issue creates a token the way the operator does (our label, external_id set).
func (f *inventoryFixture) issue(name, externalID string, expires *time.Time) *native.CreatedToken {
	f.t.Helper()
	ct, err := f.admin.CreateToken(f.ctx, "key-"+name, native.CreateRequest{Name: name, Permission: backend.PermissionReadOnly,
		ExternalID: externalID, Labels: managedByLabels(), ExpiresAt: expires})
	if err != nil {
		f.t.Fatal(err)
	}
	return ct
}

// issueMany creates n tokens on 8 workers.
func (f *inventoryFixture) issueMany(n int) {
	f.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				name := fmt.Sprintf("many-%04d", i)
				if _, err := f.admin.CreateToken(f.ctx, "key-"+name, native.CreateRequest{Name: name, Permission: backend.PermissionReadOnly,
					ExternalID: "uid-" + name, Labels: managedByLabels()}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatal(err)
	}
}

// use makes one authenticated request with the token's value, which stamps last_used_at.
func (f *inventoryFixture) use(ct *native.CreatedToken) {
	f.t.Helper()
	c, err := native.New(native.Options{BaseURL: f.srv.URL, Token: ct.Value})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := c.Self(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

// refresh runs one sync interval and returns the backend requests it made.
func (f *inventoryFixture) refresh() statusserver.Stats {
	f.t.Helper()
	before := f.srv.Server.Stats()
	f.inv.Refresh(f.ctx)
	after := f.srv.Server.Stats()
	return statusserver.Stats{Requests: after.Requests - before.Requests, ListCalls: after.ListCalls - before.ListCalls,
		PingCalls: after.PingCalls - before.PingCalls}
}

func (f *inventoryFixture) snapshot() *Snapshot {
	f.t.Helper()
	s := f.inv.Snapshot(f.key)
	if s == nil {
		f.t.Fatal("no snapshot")
	}
	return s
}

func activeIDs(s *Snapshot) []string {
	var ids []string
	for id := range s.active {
		ids = append(ids, id)
	}
	return ids
}

// TestInventoryMergesChanges: after the first full list, one incremental request brings a
// deactivation (the token leaves active and byExternalID), a use (last_used_at), and a new
// token of an APIToken that already has one; a token made by hand is listed (it is counted
// in status.tokens) but indexed under no external_id, and the snapshot published before is
// left as it was.
func TestInventoryMergesChanges(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	a := f.issue("a", "uid-a", nil)
	b := f.issue("b", "uid-b", nil)
	c := f.issue("c", "uid-c", nil)
	byHand, err := f.admin.CreateToken(f.ctx, "key-foreign", native.CreateRequest{Name: "foreign", Permission: backend.PermissionReadOnly})
	if err != nil {
		t.Fatal(err)
	}

	f.refresh()
	first := f.snapshot()
	g.Expect(activeIDs(first)).To(ConsistOf(a.ID, b.ID, c.ID, byHand.ID))
	g.Expect(first.byExternalID).To(Equal(map[string][]string{"uid-a": {a.ID}, "uid-b": {b.ID}, "uid-c": {c.ID}}))
	g.Expect(first.active[a.ID].lastUsedAt).To(BeZero())

	f.clock.Advance(10 * time.Second)
	if _, err := f.admin.DeactivateToken(f.ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	f.use(a)
	d := f.issue("d", "uid-a", nil)
	f.clock.Advance(50 * time.Second)

	got := f.refresh()
	g.Expect(got.Requests).To(Equal(int64(1)), "one incremental list request")
	next := f.snapshot()
	g.Expect(next.takenAt).To(Equal(f.clock.Now()))
	g.Expect(activeIDs(next)).To(ConsistOf(a.ID, c.ID, d.ID, byHand.ID))
	g.Expect(next.byExternalID).To(HaveLen(2))
	g.Expect(next.byExternalID["uid-a"]).To(ConsistOf(a.ID, d.ID))
	g.Expect(next.byExternalID["uid-c"]).To(Equal([]string{c.ID}))
	g.Expect(next.active[a.ID].lastUsedAt).NotTo(BeZero())
	g.Expect(next.active[a.ID].cluster).To(BeEmpty(), "the inventory keeps only the cluster label")

	// Reconciles may still hold the first snapshot: it must not have changed.
	g.Expect(activeIDs(first)).To(ConsistOf(a.ID, b.ID, c.ID, byHand.ID))
	g.Expect(first.byExternalID).To(Equal(map[string][]string{"uid-a": {a.ID}, "uid-b": {b.ID}, "uid-c": {c.ID}}))
	g.Expect(first.active[a.ID].lastUsedAt).To(BeZero())
}

// TestInventoryDropsExpiredTokens: a token that expires between two walks is listed by the
// next incremental walk as inactive and leaves the snapshot, although nobody touched it.
func TestInventoryDropsExpiredTokens(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	at := f.clock.Now().Add(30 * time.Second)
	e := f.issue("expiring", "uid-e", &at)
	k := f.issue("kept", "uid-k", nil)

	f.refresh()
	g.Expect(activeIDs(f.snapshot())).To(ConsistOf(e.ID, k.ID))

	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)))
	g.Expect(activeIDs(f.snapshot())).To(ConsistOf(k.ID))
	g.Expect(f.snapshot().byExternalID).NotTo(HaveKey("uid-e"))
}

// TestInventoryIdleIntervalCostsOneRequest: 500 tokens, nothing changes. The first refresh
// reads the features and lists everything (1 ping + 6 pages: the 500 and the admin
// credential, since the inventory lists every token to count the unmanaged ones); every later
// interval costs one request (the target is at most 2), whatever the number of tokens.
func TestInventoryIdleIntervalCostsOneRequest(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	f.issueMany(500)
	// Issued a while ago: within the overlap before the first walk they would be listed
	// once more by the second.
	f.clock.Advance(time.Minute)

	first := f.refresh()
	g.Expect(first.PingCalls).To(Equal(int64(1)))
	g.Expect(first.ListCalls).To(Equal(int64(6)))
	g.Expect(f.snapshot().active).To(HaveLen(500))

	for interval := 1; interval <= 3; interval++ {
		f.clock.Advance(time.Minute)
		got := f.refresh()
		g.Expect(got.Requests).To(Equal(int64(1)), "idle interval %d", interval)
		g.Expect(f.snapshot().active).To(HaveLen(500))
	}
	g.Expect(f.logs.count("listing only changed tokens")).To(Equal(1))
}

// TestInventoryWithoutUpdatedSince: against a server without the feature every interval
// lists every active token in full (3 pages for 250), deactivations are still seen, and the
// fallback is logged once, not every interval nor every registration.
func TestInventoryWithoutUpdatedSince(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0, servertest.WithoutFeatures(statusserver.FeatureUpdatedSince))
	f.issueMany(249)
	gone := f.issue("gone", "uid-gone", nil)

	g.Expect(f.refresh().ListCalls).To(Equal(int64(3)))
	g.Expect(f.snapshot().active).To(HaveLen(250))

	if _, err := f.admin.DeactivateToken(f.ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for interval := 1; interval <= 3; interval++ {
		f.clock.Advance(time.Minute)
		got := f.refresh()
		g.Expect(got.ListCalls).To(Equal(int64(3)), "interval %d lists in full", interval)
		g.Expect(got.PingCalls).To(BeZero(), "features are read once per registration")
		g.Expect(f.snapshot().active).To(HaveLen(249))
		g.Expect(f.snapshot().active).NotTo(HaveKey(gone.ID))
	}
	// A re-registration (after an outage) reads the features again, and says nothing new.
	f.reg.Remove(f.key)
	f.register(f.newClient().Driver())
	g.Expect(f.refresh().PingCalls).To(Equal(int64(1)))
	g.Expect(f.logs.count("does not list the updated_since feature")).To(Equal(1))
}

// TestInventoryReregistrationListsInFull: a new registration (after an outage, or a new URL
// or credential) reads the features again and lists everything before going incremental; a
// re-check that keeps the client does not.
func TestInventoryReregistrationListsInFull(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	f.issueMany(150)
	f.clock.Advance(time.Minute)
	f.refresh()
	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)))

	// The periodic re-check sets the same client again (the registry wraps it anew): the
	// same registration, still incremental.
	f.register(f.admin.Driver())
	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)))

	f.reg.Remove(f.key)
	f.register(f.newClient().Driver())
	f.clock.Advance(time.Minute)
	got := f.refresh()
	g.Expect(got.PingCalls).To(Equal(int64(1)))
	g.Expect(got.ListCalls).To(Equal(int64(2)), "150 tokens in full: 2 pages")

	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)))
}

// TestInventoryToleratesBackendClockBehind: the backend's clock is 20 s behind ours (less
// than the overlap). A token deactivated just after a walk carries a backend time before
// that walk's start on our clock, and the next walk still sees it.
func TestInventoryToleratesBackendClockBehind(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 20*time.Second)
	tok := f.issue("skewed", "uid-s", nil)
	f.refresh()
	f.clock.Advance(time.Second)
	if _, err := f.admin.DeactivateToken(f.ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.refresh()
	g.Expect(f.snapshot().active).NotTo(HaveKey(tok.ID))
}

// TestInventoryFullListInterval: with updated_since the inventory still lists everything
// once per FullListInterval, so a backend restored from a backup is seen whole again.
func TestInventoryFullListInterval(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	f.inv.FullListInterval = 3 * time.Minute
	f.issueMany(150)
	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().ListCalls).To(Equal(int64(2)))
	var lists []int64
	for interval := 1; interval <= 4; interval++ {
		f.clock.Advance(time.Minute)
		lists = append(lists, f.refresh().ListCalls)
	}
	g.Expect(lists).To(Equal([]int64{1, 1, 2, 1}))
}

// TestInventoryMergeIsPure: merging changes never writes into the snapshot it starts from,
// and re-listed changes it already holds share its maps.
func TestInventoryMergeIsPure(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	u := t0.Add(-time.Minute)
	base := newSnapshot(t0, []backend.Token{
		{ID: "t1", Owner: backend.Owner{UID: "x"}, Status: backend.StatusActive, UpdatedAt: &u},
		{ID: "t2", Owner: backend.Owner{UID: "x"}, Status: backend.StatusActive, UpdatedAt: &u},
	}, "")
	same := base.merge(t0.Add(time.Minute), []backend.Token{{ID: "t1", Owner: backend.Owner{UID: "x"}, Status: backend.StatusActive, UpdatedAt: &u}})
	g.Expect(same.takenAt).To(Equal(t0.Add(time.Minute)))
	g.Expect(fmt.Sprintf("%p", same.active)).To(Equal(fmt.Sprintf("%p", base.active)), "nothing new: the maps are shared")

	later := t0
	next := base.merge(t0.Add(time.Minute), []backend.Token{
		{ID: "t1", Owner: backend.Owner{UID: "x"}, Status: backend.StatusInactive, UpdatedAt: &later},
		{ID: "t2", Owner: backend.Owner{UID: "y"}, Status: backend.StatusActive, UpdatedAt: &later},
		{ID: "t3", Owner: backend.Owner{UID: "gone"}, Status: backend.StatusInactive, UpdatedAt: &later},
	})
	g.Expect(next.byExternalID).To(Equal(map[string][]string{"y": {"t2"}}))
	g.Expect(activeIDs(next)).To(ConsistOf("t2"))
	g.Expect(base.byExternalID).To(Equal(map[string][]string{"x": {"t1", "t2"}}))
	g.Expect(activeIDs(base)).To(ConsistOf("t1", "t2"))
}

// TestInventoryCountsTokens: status.tokens sorts every active token of a shared backend by
// who manages it. This cluster's tokens held by an APIToken are managed; hand-made ones and
// a retained one of ours (our label, an external_id no APIToken has) are unmanaged; a token
// labelled with another cluster's identity, and an owned one without our label, are the
// other clusters', even when it carries the UID of one of our APITokens, which it then never
// appears under (so nothing here sweeps it). The admin credential is not counted. A change
// of the counts wakes the backend's controller once; an idle interval does not.
func TestInventoryCountsTokens(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	f.inv.ClusterIdentity = "this-cluster"
	ours, other := clusterLabels("this-cluster"), clusterLabels("other-cluster")
	mk := func(name, externalID string, perm backend.Permission, labels map[string]string) *native.CreatedToken {
		ct, err := f.admin.CreateToken(f.ctx, "key-"+name, native.CreateRequest{Name: name, Permission: perm, ExternalID: externalID, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	held := mk("held", "uid-held", backend.PermissionReadOnly, ours)
	mk("retained", "uid-deleted", backend.PermissionFullAccess, ours)
	mk("by-hand-ro", "", backend.PermissionReadOnly, nil)
	mk("by-hand-full", "", backend.PermissionFullAccess, nil)
	collision := mk("other-same-uid", "uid-held", backend.PermissionReadOnly, other)
	mk("other-labelled", "uid-theirs", backend.PermissionFullAccess, other)
	mk("other-adopted", "uid-adopted-there", backend.PermissionReadOnly, nil)
	apiTok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "held", UID: "uid-held"},
		Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly,
			BackendRef: &tokensv1alpha1.BackendReference{Kind: f.key.Kind, Name: f.key.Name}}}
	g.Expect(f.inv.Reader.(client.Client).Create(f.ctx, apiTok)).To(Succeed())

	f.refresh()
	g.Expect(f.inv.TokenCounts(f.key)).To(Equal(&tokensv1alpha1.BackendTokenCounts{Managed: 1, UnmanagedActive: 3, UnmanagedFullAccess: 2, OtherClusters: 3}))
	g.Expect(f.snapshot().byExternalID["uid-held"]).To(Equal([]string{held.ID}), "another cluster's token is never this APIToken's orphan")
	g.Expect(f.snapshot().active).To(HaveKey(collision.ID))
	g.Expect(f.inv.CountsChanged(f.key.Kind)).To(HaveLen(1), "the backend's controller is woken")
	<-f.inv.CountsChanged(f.key.Kind)

	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)), "an idle interval costs one request with the counts")
	g.Expect(f.inv.CountsChanged(f.key.Kind)).To(BeEmpty(), "unchanged counts wake nobody")

	// Deactivating the other cluster's tokens changes only their count, through the
	// incremental walk.
	if _, err := f.admin.DeactivateToken(f.ctx, collision.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.refresh()
	g.Expect(f.inv.TokenCounts(f.key)).To(Equal(&tokensv1alpha1.BackendTokenCounts{Managed: 1, UnmanagedActive: 3, UnmanagedFullAccess: 2, OtherClusters: 2}))
	g.Expect(f.inv.CountsChanged(f.key.Kind)).To(HaveLen(1))
}

// TestReviewCostPerSyncAtN1000 is the closing figure of the least-privilege review: at
// N=1000 tokens its backend cost per sync interval is the inventory's and nothing more. The
// first interval reads the features and lists everything (1 + 11 requests: 1000 tokens and
// the admin credential, 100 a page); an idle interval costs 1 request; an interval in which
// 50 tokens were refused a write costs 1 (the 50 changes fit one page). Reviewing all 1000
// APITokens from that inventory costs 0 requests, and finds the 50.
func TestReviewCostPerSyncAtN1000(t *testing.T) {
	g := NewWithT(t)
	f := newInventoryFixture(t, 0)
	f.reg.Set(f.ctx, f.key, &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: f.key.Name}}, f.admin.Driver(), f.srv.URL, fmt.Sprintf("%p", f.admin), backend.CapabilityUsage, backend.CapabilityUpdatedSince)
	const n = 1000
	values := make([]backend.SecretValue, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				ct, err := f.admin.CreateToken(f.ctx, fmt.Sprintf("key-%d", i), native.CreateRequest{Name: fmt.Sprintf("t-%04d", i), Permission: backend.PermissionReadOnly,
					ExternalID: fmt.Sprintf("uid-%04d", i), Labels: managedByLabels()})
				if err != nil {
					t.Error(err)
					return
				}
				values[i], ids[i] = ct.Value, ct.ID
			}
		}(w)
	}
	wg.Wait()
	f.clock.Advance(time.Minute)

	first := f.refresh()
	g.Expect(first.Requests).To(Equal(int64(12)), "features, then 11 pages")
	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)), "an idle interval")

	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/boards", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+values[i].Reveal())
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
	}
	f.clock.Advance(time.Minute)
	g.Expect(f.refresh().Requests).To(Equal(int64(1)), "50 changed tokens: one page of changes")

	window := time.Hour
	snap := f.snapshot()
	usage := f.reg.Features(f.key).Has(backend.CapabilityUsage)
	before := f.srv.Server.Stats().Requests
	denied := 0
	for i := 0; i < n; i++ {
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("t-%04d", i)}}
		tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
		tok.Status.TokenID = ids[i]
		tok.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: f.key.Kind, Name: f.key.Name}
		// The review is the pure part of a pass's report: the inventory's facts in, a verdict out.
		current, listed := snap.Token(ids[i])
		in := policy.Inputs{Now: f.clock.Now(), Token: tok, Inventory: policy.InventoryFacts{Taken: true, Listed: listed, Current: current},
			Review: policy.ReviewFacts{Window: window, Registered: true, Usage: usage}}
		policy.Report(tok, in, policy.Decision{Report: policy.ReportSpec{Kind: policy.ReportIssued}}, policy.Outcome{})
		if c := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionLeastPrivilege); c != nil && c.Reason == tokensv1alpha1.ReasonWritesDenied {
			denied++
		}
	}
	g.Expect(f.srv.Server.Stats().Requests-before).To(BeZero(), "the review itself makes no request")
	g.Expect(denied).To(Equal(50))
	t.Logf("review cost at N=%d: first interval %d requests, idle interval 1, 50 changed tokens 1, review of %d APITokens 0", n, first.Requests, n)
}

// TestInventoryEntryKeepsWhatIsRead: an entry gives back the token's owner, cluster label,
// permission and times as they were listed (to the nanosecond), and nothing else; the
// tokens of one cluster share one label string.
func TestInventoryEntryKeepsWhatIsRead(t *testing.T) {
	g := NewWithT(t)
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	listed := backend.Token{ID: "tok_1", Name: "team-a/grafana", Description: "d", Permission: backend.Permission(string([]byte("full_access"))),
		Status: backend.StatusActive, CreatedAt: *at("2026-11-01T10:00:00.123456789Z"), ExpiresAt: at("2027-01-01T00:00:00Z"),
		LastUsedAt: at("2026-12-01T09:00:00.5Z"), LastWriteAt: at("2026-12-01T08:00:00Z"), UpdatedAt: at("2026-12-01T09:00:01Z"),
		Last4: "abcd", Owner: backend.Owner{UID: "uid-a", Cluster: string([]byte("c1"))}}
	kept, keep := clustersKept{}, keptOfListed()
	e := kept.entry(keep(listed))
	got := e.token("tok_1")
	g.Expect(got.ID).To(Equal("tok_1"))
	g.Expect(got.Owner.UID).To(Equal("uid-a"))
	g.Expect(got.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(got.Status).To(Equal(backend.StatusActive))
	g.Expect(got.CreatedAt.Equal(listed.CreatedAt)).To(BeTrue())
	for _, p := range [][2]*time.Time{{got.ExpiresAt, listed.ExpiresAt}, {got.LastUsedAt, listed.LastUsedAt}, {got.LastWriteAt, listed.LastWriteAt}, {got.UpdatedAt, listed.UpdatedAt}} {
		g.Expect(p[0]).NotTo(BeNil())
		g.Expect(p[0].Equal(*p[1])).To(BeTrue(), "%v != %v", p[0], p[1])
	}
	g.Expect(got.LastDeniedAt).To(BeNil(), "never denied stays nil")
	g.Expect(got.Owner.Cluster).To(Equal("c1"))
	g.Expect(got.Name + got.Description + got.Last4).To(BeEmpty())

	other := listed
	other.Owner.Cluster = string([]byte("c1"))
	l1, l2 := keep(listed), keep(other)
	g.Expect(unsafe.StringData(l1.Owner.Cluster)).To(Equal(unsafe.StringData(l2.Owner.Cluster)), "one copy of the cluster per walk")
	e2 := kept.entry(keep(other))
	g.Expect(unsafe.StringData(e2.cluster)).To(Equal(unsafe.StringData(e.cluster)), "one copy of the label per walk")

	bare := kept.entry(backend.Token{ID: "tok_2", Permission: backend.PermissionReadOnly})
	g.Expect(bare.token("tok_2").Owner.Cluster).To(BeEmpty())
	g.Expect(bare.token("tok_2").CreatedAt.IsZero()).To(BeTrue())
	g.Expect(bare.token("tok_2").ExpiresAt).To(BeNil())
}
