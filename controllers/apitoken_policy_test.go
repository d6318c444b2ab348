package controllers_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Issue 27, findings 3, 4, 8 and 9: policy holds for every token an APIToken has, not only
// for what its spec asks now.

const fullAccessLabel = "statusops.dev/full-access"

func allowFullAccessByLabel(h *harness) {
	h.t.Helper()
	labelNamespace(h, map[string]string{fullAccessLabel: "true"})
	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.FullAccessNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{fullAccessLabel: "true"}}
	})
}

// TestFullAccessPredecessorEndsWithFullAccess: a tenant switches FullAccess to ReadOnly with
// the longest grace period the schema allows, so the FullAccess predecessor drains. When the
// namespace loses FullAccess, that predecessor is deactivated at once and leaves status,
// while the ReadOnly token keeps working. (It drained for the whole grace before.)
func TestFullAccessPredecessorEndsWithFullAccess(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	allowFullAccessByLabel(h)
	tok := h.waitFor(h.create(h.newToken("writer", tokensv1alpha1.PermissionFullAccess, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(168 * time.Hour)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Eventually(func() error {
		cur := h.get(tok.Name)
		cur.Spec.Permission = tokensv1alpha1.PermissionReadOnly
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	ro := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(ro.Status.PreviousTokens).To(ConsistOf(HaveField("Permission", tokensv1alpha1.PermissionFullAccess)))
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusActive), "it drains while FullAccess is allowed")

	labelNamespace(h, map[string]string{})
	g.Eventually(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(15*time.Second).Should(Equal(backend.StatusInactive), "the FullAccess predecessor ends with FullAccess")
	g.Eventually(func() []string { return previousIDsOf(h.get(tok.Name)) }).WithTimeout(10 * time.Second).Should(BeEmpty())
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("FullAccess tokens are no longer allowed"))
	now := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(now.Status.TokenID).To(Equal(ro.Status.TokenID), "the ReadOnly token is untouched")
	g.Expect(h.activeBackendTokens(tok.UID)).To(ConsistOf(HaveField("ID", ro.Status.TokenID)))
}

// TestAdoptedFullAccessGetsNoOverlapWhereNotAllowed: a ReadOnly APIToken adopts a legacy
// FullAccess token in a namespace without FullAccess. The replacement by a ReadOnly token has
// no overlap: the legacy token is deactivated at once, not drained for the grace period.
func TestAdoptedFullAccessGetsNoOverlapWhereNotAllowed(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.FullAccessNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{fullAccessLabel: "true"}}
	})
	legacy := legacyToken(h, "legacy-writer", backend.PermissionFullAccess)
	tok := h.create(h.newToken("reader", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "legacy-writer"), withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(168 * time.Hour)})))
	got := waitForNewToken(h, tok.Name, legacy.ID)
	g.Expect(got.Status.Permission).To(Equal(tokensv1alpha1.PermissionReadOnly))
	g.Eventually(func() backend.TokenStatus { return h.backendToken(legacy.ID).Status }).WithTimeout(10 * time.Second).Should(Equal(backend.StatusInactive))
	g.Expect(h.get(tok.Name).Status.PreviousTokens).To(BeEmpty(), "no overlap for a FullAccess token where FullAccess is not allowed")
	g.Expect(h.useToken([]byte(legacy.Value.Reveal()), http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
}

// TestBackendSwitchOnOneAccountKeepsTheOverlap: two ClusterStatusBackends name one account
// (same URL and credential). Switching between them and back leaves both predecessors
// draining, as status lists them: the sweep on one object used to deactivate the tokens
// recorded under the other. And a predecessor deactivated by hand leaves status.
func TestBackendSwitchOnOneAccountKeepsTheOverlap(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	twin := "twin-" + h.ns
	h.createClusterBackend(twin, h.backend.URL, nil)
	h.backendReady(twin, tokensv1alpha1.ReasonPingSucceeded)
	tok := h.waitFor(h.create(h.newToken("switcher", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(time.Hour)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	switchTo := func(name string) { h.switchBackend(tok.Name, name) }
	first := tok.Status.TokenID
	switchTo(twin)
	second := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued).Status.TokenID
	switchTo(h.backendName)
	third := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued).Status.TokenID

	listedAndActive := func(g Gomega) {
		cur := h.get(tok.Name)
		g.Expect(previousIDsOf(cur)).To(ConsistOf(first, second))
		var ids []string
		for _, b := range h.activeBackendTokens(tok.UID) {
			ids = append(ids, b.ID)
		}
		g.Expect(ids).To(ConsistOf(first, second, third), "every token status lists, and only those, is active")
	}
	g.Eventually(listedAndActive).WithTimeout(5 * time.Second).Should(Succeed())
	g.Consistently(listedAndActive).WithTimeout(4 * time.Second).Should(Succeed())

	// Deactivated by hand on the backend: it leaves status (the inventory no longer lists it).
	_, err := h.admin.DeactivateToken(h.ctx, first)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() []string { return previousIDsOf(h.get(tok.Name)) }).WithTimeout(20 * time.Second).Should(ConsistOf(second))
	g.Expect(h.backendToken(second).Status).To(Equal(backend.StatusActive))
}

// TestDeactivationSkipsAnotherAPITokensToken: the backend that receives the deactivation
// really holds the token status names, and that token carries another APIToken's UID. Only
// the ownership check on the backend's own object (deactivateIfOwned) keeps it active:
// without it this test fails. Status is written by the test as a restored backup, or a lying
// backend earlier in the token's history, could have written it.
func TestDeactivationSkipsAnotherAPITokensToken(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	victim := h.waitFor(h.create(h.newToken("victim", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	other := h.waitFor(h.create(h.newToken("other", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Eventually(func() error {
		cur := h.get(other.Name)
		off := false
		cur.Spec.Active = &off
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	h.waitFor(other.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)

	// Status now names the victim's token, active, on the shared backend; the next pass sees
	// spec.active false and a token that may be active, so it deactivates that token.
	g.Eventually(func() error {
		cur := h.get(other.Name)
		cur.Status.TokenID = victim.Status.TokenID
		cur.Status.Phase = tokensv1alpha1.PhaseActive
		meta.SetStatusCondition(&cur.Status.Conditions, metav1.Condition{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1alpha1.ReasonIssued, Message: "restored"})
		return h.c.Status().Update(h.ctx, cur)
	}).Should(Succeed())
	annotate(h, other.Name, "test/wake", "1")
	h.waitFor(other.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)
	g.Consistently(func() backend.TokenStatus { return h.backendToken(victim.Status.TokenID).Status }).WithTimeout(2*time.Second).Should(Equal(backend.StatusActive),
		"the token carries another APIToken's UID on the backend that holds it")
	g.Expect(h.backendToken(victim.Status.TokenID).ExternalID).To(Equal(string(victim.UID)), "the deactivation really reached a token of another APIToken")
}

// TestRetainNeedsTheBackendsConsent: Retain is decided per backend. By default a ReadOnly
// token may be retained and a FullAccess one may not: refused, the APIToken says so (Ready
// False, Stalled, the token still working) and its deletion waits, never a silent revoke.
// Allowed, the retained token shows in the backend's unmanaged counts.
func TestRetainNeedsTheBackendsConsent(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	retain := func(t *tokensv1alpha1.APIToken) { t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain }
	full := h.create(h.newToken("keep-full", tokensv1alpha1.PermissionFullAccess, retain))
	refused := h.waitFor(full.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonRetainNotAllowed)
	g.Expect(h.readyCondition(refused).Message).To(ContainSubstring("spec.retainFullAccessNamespaces"))
	g.Expect(meta.IsStatusConditionTrue(refused.Status.Conditions, tokensv1alpha1.ConditionStalled)).To(BeTrue())
	g.Expect(h.useToken(h.secret(full.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK), "the token itself works")

	// Deleted anyway: the deletion waits and says why; the token is neither revoked nor retained.
	g.Expect(h.c.Delete(h.ctx, refused)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := h.get(full.Name)
		g.Expect(cur).NotTo(BeNil())
		g.Expect(h.readyCondition(cur).Reason).To(Equal(tokensv1alpha1.ReasonDeleting))
		g.Expect(h.readyCondition(cur).Message).To(ContainSubstring("spec.deletionPolicy: Revoke"))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Consistently(func() bool { return h.get(full.Name) != nil }).WithTimeout(2 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(refused.Status.TokenID).Status).To(Equal(backend.StatusActive))
	// The person chooses Revoke: the deletion goes on and deactivates the token.
	g.Eventually(func() error {
		cur := h.get(full.Name)
		cur.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRevoke
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	g.Eventually(func() bool { return h.get(full.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(refused.Status.TokenID).Status).To(Equal(backend.StatusInactive))

	// The backend's admin allows the namespace: a FullAccess token is retained, and counted.
	labelNamespace(h, map[string]string{"statusops.dev/retain": "true"})
	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.RetainFullAccessNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"statusops.dev/retain": "true"}}
	})
	kept := h.waitFor(h.create(h.newToken("kept-full", tokensv1alpha1.PermissionFullAccess, retain)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.c.Delete(h.ctx, kept)).To(Succeed())
	g.Eventually(func() bool { return h.get(kept.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(kept.Status.TokenID).Status).To(Equal(backend.StatusActive))
	g.Eventually(func(g Gomega) {
		c := backendCounts(h)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.UnmanagedActive).To(BeEquivalentTo(1), "a retained token is unmanaged")
		g.Expect(c.UnmanagedFullAccess).To(BeEquivalentTo(1))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	// A backend that allows no namespace to retain refuses ReadOnly tokens too.
	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.RetainNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"statusops.dev/retain": "never"}}
	})
	ro := h.create(h.newToken("keep-ro", tokensv1alpha1.PermissionReadOnly, retain))
	g.Expect(h.readyCondition(h.waitFor(ro.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonRetainNotAllowed)).Message).To(ContainSubstring("spec.retainNamespaces"))
}

// TestSkipRevokeStillRevokesOnAReachableBackend: the skip-revoke annotation is the way out
// when a backend is gone, not a second Retain: where the backend answers, the token is
// deactivated as without it (else it would retain what the retain policy refuses).
func TestSkipRevokeStillRevokesOnAReachableBackend(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("skipper", tokensv1alpha1.PermissionFullAccess, func(t *tokensv1alpha1.APIToken) {
		t.Annotations = map[string]string{tokensv1alpha1.AnnotationSkipRevoke: "true"}
	})).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	g.Eventually(func() bool { return h.get(tok.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.countEvents(tok.Name, tokensv1alpha1.EventRevocationSkipped)).To(BeZero())
}
