package controllers_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/controllers/apitoken"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func withRotation(r tokensv1alpha1.RotationSpec) func(*tokensv1alpha1.APIToken) {
	return func(t *tokensv1alpha1.APIToken) { t.Spec.Rotation = &r }
}

func annotate(h *harness, name, key, value string) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() error {
		cur := h.get(name)
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[key] = value
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
}

// waitForNewToken waits until status names a token other than old, Ready again.
func waitForNewToken(h *harness, name, old string) *tokensv1alpha1.APIToken {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() string { return h.get(name).Status.TokenID }).WithTimeout(30 * time.Second).ShouldNot(Equal(old))
	return h.waitFor(name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
}

// TestReplacementOverlapsForTheGracePeriod: with a grace period, a rotation leaves the old
// value working (listed in status.previousTokens, the APIToken Ready and kstatus Current)
// until the grace ends; then it is retired with a PredecessorRetired Event.
func TestReplacementOverlapsForTheGracePeriod(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("overlap", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(6 * time.Second)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	oldValue := h.secret(tok.Name).Data["token"]
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	got := waitForNewToken(h, tok.Name, tok.Status.TokenID)

	g.Expect(got.Status.PreviousTokens).To(ConsistOf(HaveField("TokenID", tok.Status.TokenID)))
	g.Expect(got.Status.Draining).To(BeEquivalentTo(1))
	p := got.Status.PreviousTokens[0]
	g.Expect(p.RetireAt.Sub(p.SupersededAt.Time)).To(Equal(6 * time.Second))
	g.Expect(p.TokenHint).To(Equal(tok.Status.TokenHint))
	g.Expect(kstatusOf(t, got)).To(Equal(status.CurrentStatus), "draining is not Reconciling")
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusOK), "the old value still works")
	g.Expect(h.activeBackendTokens(got.UID)).To(HaveLen(2))

	g.Eventually(func() []tokensv1alpha1.PreviousToken { return h.get(tok.Name).Status.PreviousTokens }).WithTimeout(20 * time.Second).Should(BeEmpty())
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("grace period is over"))
	g.Expect(h.activeBackendTokens(got.UID)).To(ConsistOf(HaveField("ID", got.Status.TokenID)))
}

// TestScheduledRotation: with a lifetime, each backend token carries its own expiry, and its
// successor is issued at status.renewalTime without anyone touching the APIToken.
func TestScheduledRotation(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("scheduled", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{
		Lifetime: dur(time.Minute), RenewBefore: dur(50 * time.Second), GracePeriod: dur(3 * time.Second),
	}))).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(tok.Status.ExpiresAt).NotTo(BeNil(), "the backend token dies by itself")
	g.Expect(tok.Status.ExpiresAt.Sub(tok.Status.IssuedAt.Time)).To(BeNumerically("<=", time.Minute))
	g.Expect(tok.Status.ExpiresAt.Sub(tok.Status.IssuedAt.Time)).To(BeNumerically(">", 50*time.Second))
	g.Expect(h.backendToken(tok.Status.TokenID).ExpiresAt).NotTo(BeNil())
	g.Expect(tok.Status.RenewalTime).NotTo(BeNil())
	g.Expect(tok.Status.RenewalTime.Before(tok.Status.ExpiresAt)).To(BeTrue())

	got := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(got.Status.IssuedAt.Time).To(BeTemporally(">=", tok.Status.RenewalTime.Time.Add(-time.Second)), "issued at the renewal time, not before")
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventReplaced)).To(ContainSubstring("scheduled rotation"))
	g.Expect(got.Status.RenewalTime).NotTo(BeNil())
	g.Expect(got.Status.RenewalTime.After(tok.Status.RenewalTime.Time)).To(BeTrue())
	g.Eventually(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(15 * time.Second).Should(Equal(backend.StatusInactive))
}

// TestRetireWhenUnused: once the successor is used and the predecessor has been quiet for
// quietPeriod, the predecessor goes long before its grace ends.
func TestRetireWhenUnused(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("unused", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{
		GracePeriod: dur(10 * time.Minute), RetireWhenUnused: &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: 3 * time.Second}},
	}))).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	got := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(got.Status.PreviousTokens).To(HaveLen(1))

	// Unused successor: the predecessor waits (an idle consumer falls back to the grace).
	g.Consistently(func() int { return len(h.get(tok.Name).Status.PreviousTokens) }).WithTimeout(5 * time.Second).Should(Equal(1))
	g.Expect(h.useToken(h.secret(tok.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Eventually(func() []tokensv1alpha1.PreviousToken { return h.get(tok.Name).Status.PreviousTokens }).WithTimeout(20 * time.Second).Should(BeEmpty())
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("has not been used"))
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
}

// TestPredecessorStillInUseIsRetiredWithAWarning: a consumer that keeps using the old value
// does not keep it alive past the grace period; the Warning names it and a metric counts it.
func TestPredecessorStillInUseIsRetiredWithAWarning(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("stubborn", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(5 * time.Second)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	oldValue := h.secret(tok.Name).Data["token"]
	before := usedAfterGrace(t, h.ns, tok.Name)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Eventually(func() int {
		h.useToken(oldValue, http.MethodGet, "/boards")
		return len(h.get(tok.Name).Status.PreviousTokens)
	}).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(BeZero())
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorStillInUse)).To(ContainSubstring(tok.Status.TokenID))
	g.Expect(usedAfterGrace(t, h.ns, tok.Name) - before).To(BeEquivalentTo(1))
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
}

func usedAfterGrace(t *testing.T, ns, name string) float64 {
	t.Helper()
	return counterValue(t, "apitoken_predecessor_used_after_grace_total", map[string]string{"namespace": ns, "apitoken": name})
}

// counterValue is the value of the counter series of that name whose labels include want, 0
// when there is none.
func counterValue(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestThirdReplacementRetiresTheOldest: at most two predecessors drain; a third rotation
// retires the oldest at once.
func TestThirdReplacementRetiresTheOldest(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("thrice", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	ids := []string{tok.Status.TokenID}
	for _, v := range []string{"r1", "r2", "r3"} {
		annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, v)
		g.Eventually(func() string { return h.get(tok.Name).Status.RotationHandled }).WithTimeout(15 * time.Second).Should(Equal(v))
		ids = append(ids, h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued).Status.TokenID)
	}
	got := h.get(tok.Name)
	g.Expect(previousIDsOf(got)).To(Equal([]string{ids[1], ids[2]}), "oldest first")
	g.Expect(h.backendToken(ids[0]).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.activeBackendTokens(got.UID)).To(HaveLen(3))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("newer replacement"))
}

func previousIDsOf(tok *tokensv1alpha1.APIToken) []string {
	var out []string
	for _, p := range tok.Status.PreviousTokens {
		out = append(out, p.TokenID)
	}
	return out
}

// TestRevokeRequestedRetiresEverythingAtOnce: the revoke annotation (a leaked token) issues a
// new token and deactivates every older one at once, draining or not, with no overlap.
func TestRevokeRequestedRetiresEverythingAtOnce(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("leaked", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	second := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(second.Status.PreviousTokens).To(HaveLen(1))

	annotate(h, tok.Name, tokensv1alpha1.AnnotationRevokeRequestedAt, "leak-1")
	third := waitForNewToken(h, tok.Name, second.Status.TokenID)
	g.Expect(third.Status.RevocationHandled).To(Equal("leak-1"))
	g.Expect(third.Status.PreviousTokens).To(BeEmpty())
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.backendToken(second.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.activeBackendTokens(third.UID)).To(ConsistOf(HaveField("ID", third.Status.TokenID)))
	// The same value never revokes twice.
	g.Consistently(func() string { return h.get(tok.Name).Status.TokenID }).WithTimeout(3 * time.Second).Should(Equal(third.Status.TokenID))
}

// TestDeactivatingEndsTheOverlap: active=false deactivates the draining predecessors too.
func TestDeactivatingEndsTheOverlap(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("stop", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Eventually(func() error {
		cur := h.get(tok.Name)
		off := false
		cur.Spec.Active = &off
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)
	g.Expect(got.Status.PreviousTokens).To(BeEmpty())
	g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty())
}

// TestRestartMidDrainMakesNoBackendWrite: a manager restart while a predecessor drains
// writes nothing to the backend, and the predecessor is still retired on time.
func TestRestartMidDrainMakesNoBackendWrite(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("restart", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(8 * time.Second)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	got := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	before := h.backend.Server.Stats()
	h.restartManager()
	g.Eventually(func() bool { return h.get(tok.Name).Status.ObservedGeneration == got.Generation }).Should(BeTrue())
	g.Consistently(func() int64 { return h.backend.Server.Stats().WriteRequests - before.WriteRequests }).
		WithTimeout(3 * time.Second).Should(BeZero())
	g.Eventually(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(20 * time.Second).Should(Equal(backend.StatusInactive))
}

// TestCrashAfterSuccessorCreate: killed right after the successor's create during an
// overlapped rotation, the restarted manager replays the create, and the end state is the
// successor plus exactly the one listed predecessor: never zero usable tokens, never an
// unlisted active one.
func TestCrashAfterSuccessorCreate(t *testing.T) {
	crashed := make(chan struct{}, 1)
	creates := 0
	h := newHarness(t, func(o *controllers.Options) {
		o.ReconcilerOptions = append(o.ReconcilerOptions, apitoken.WithAfterCreate(func(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
			if creates++; creates != 2 {
				return nil
			}
			crashed <- struct{}{}
			<-ctx.Done()
			return errors.New("simulated crash after the successor's create")
		}))
	})
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("crash-rotate", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	oldValue := h.secret(tok.Name).Data["token"]
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	g.Eventually(crashed).WithTimeout(15 * time.Second).Should(Receive())
	h.stopMgr()
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusOK), "the crash left the old value working")
	created := h.backend.Server.Stats().TokensCreated
	h.startManager()

	got := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(h.backend.Server.Stats().TokensCreated).To(Equal(created), "the successor's create was replayed")
	g.Expect(previousIDsOf(got)).To(Equal([]string{tok.Status.TokenID}))
	g.Expect(h.activeBackendTokens(got.UID)).To(ConsistOf(HaveField("ID", got.Status.TokenID), HaveField("ID", tok.Status.TokenID)))
	g.Expect(h.useToken(h.secret(tok.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
}

// TestOutageSpanningRetireAt: the backend refuses deactivations when a predecessor's grace
// ends; it stays listed (pendingDeactivation, so nothing is unlisted while it is active) and
// is retired when the backend answers again.
func TestOutageSpanningRetireAt(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	f, tok := frontedToken(t, h, "outage-retire", withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(3 * time.Second)}))
	first := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, first.Status.TokenID)
	f.fail("deactivate", http.StatusServiceUnavailable)
	got := waitForPending(h, tok.Name)
	g.Expect(got.Status.PreviousTokens).To(BeEmpty())
	g.Expect(got.Status.PendingDeactivation).To(ConsistOf(HaveField("TokenID", first.Status.TokenID)))
	g.Expect(h.backendToken(first.Status.TokenID).Status).To(Equal(backend.StatusActive))
	f.fail("deactivate", 0)
	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backendToken(first.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("grace period is over"))
}
