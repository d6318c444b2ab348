package controllers_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

func labelNamespace(h *harness, labels map[string]string) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() error {
		var ns corev1.Namespace
		if err := h.c.Get(h.ctx, types.NamespacedName{Name: h.ns}, &ns); err != nil {
			return err
		}
		ns.Labels = labels
		return h.c.Update(h.ctx, &ns)
	}).Should(Succeed())
}

func updateClusterBackend(h *harness, name string, mutate func(*tokensv1alpha1.ClusterStatusBackend)) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() error {
		var b tokensv1alpha1.ClusterStatusBackend
		if err := h.c.Get(h.ctx, types.NamespacedName{Name: name}, &b); err != nil {
			return err
		}
		mutate(&b)
		return h.c.Update(h.ctx, &b)
	}).Should(Succeed())
}

// TestFullAccessNamespaces: a backend's fullAccessNamespaces decides who may hold FullAccess.
// A new FullAccess token outside it fails with PermissionNotAllowed; an existing one is
// deactivated when the policy changes; ReadOnly tokens are untouched.
func TestFullAccessNamespaces(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	full := h.waitFor(h.create(h.newToken("full", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	ro := h.waitFor(h.create(h.newToken("ro", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.FullAccessNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"statusops.dev/full-access": "true"}}
	})
	got := h.waitFor(full.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonPermissionNotAllowed)
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring("spec.permission: ReadOnly"))
	g.Expect(h.backendToken(full.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.activeBackendTokens(full.UID)).To(BeEmpty())
	g.Expect(h.expectEvent(full.Name, tokensv1alpha1.EventPolicyDeactivated)).To(ContainSubstring("deactivated"))
	g.Expect(h.backendToken(ro.Status.TokenID).Status).To(Equal(backend.StatusActive), "ReadOnly is not affected")

	fresh := h.create(h.newToken("full2", tokensv1alpha1.PermissionFullAccess))
	h.waitFor(fresh.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonPermissionNotAllowed)
	g.Expect(h.activeBackendTokens(fresh.UID)).To(BeEmpty(), "nothing was issued")

	// Allowing the namespace issues fresh tokens (watch on the namespace, not polling).
	labelNamespace(h, map[string]string{"statusops.dev/full-access": "true"})
	again := h.waitFor(full.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(again.Status.TokenID).NotTo(Equal(full.Status.TokenID))
	h.waitFor(fresh.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
}

// TestNamespaceNoLongerAllowedIsRevoked: removing a namespace from allowedNamespaces (here:
// removing its label) deactivates its tokens; policy is enforced, not only checked at issue.
func TestNamespaceNoLongerAllowedIsRevoked(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	labelNamespace(h, map[string]string{"statusops.dev/tokens": "allowed"})
	updateClusterBackend(h, h.backendName, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.AllowedNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"statusops.dev/tokens": "allowed"}}
	})
	tok := h.waitFor(h.create(h.newToken("allowed", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	labelNamespace(h, map[string]string{})
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonNamespaceNotAllowed)
	g.Expect(got.Status.TokenID).To(Equal(tok.Status.TokenID))
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.useToken(h.secret(tok.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
}

// TestBackendSwitchCannotReachAnotherTenantsToken is the confused deputy: a tenant's own
// backend answers a create with the id of another APIToken's token on the shared backend.
// Switching backendRef to the shared backend and deactivating never touches that token,
// and the tenant's own token on its backend is deactivated there.
func TestBackendSwitchCannotReachAnotherTenantsToken(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	victim := h.waitFor(h.create(h.newToken("victim", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	// The tenant's backend is a reference server of its own behind a front that lies.
	own := servertest.Start(t)
	h.createAdminSecret(h.ns, "own-admin", own.AdminToken)
	f := newHostileFrontFor(t, own)
	f.setRewrite(func(class string, _ *http.Request, d map[string]any) {
		if class == "create" {
			d["id"] = victim.Status.TokenID
		}
	})
	sb := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "own"}}
	sb.Spec.URL = f.url()
	sb.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "own-admin", Key: "token"}
	g.Expect(h.c.Create(h.ctx, sb)).To(Succeed())
	attacker := h.create(h.newToken("attacker", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "own"}
	}))
	got := h.waitFor(attacker.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(got.Status.TokenID).To(Equal(victim.Status.TokenID), "the lie was taken for a token of its own backend")
	g.Expect(got.Status.Backend).NotTo(BeNil())
	g.Expect(got.Status.Backend.Kind).To(Equal(tokensv1alpha1.BackendKindStatusBackend))

	// Switch to the shared backend and deactivate at once.
	g.Eventually(func() error {
		cur := h.get(attacker.Name)
		off := false
		cur.Spec.Active = &off
		cur.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: h.backendName}
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	h.waitFor(attacker.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)
	g.Consistently(func() backend.TokenStatus { return h.backendToken(victim.Status.TokenID).Status }).WithTimeout(3 * time.Second).Should(Equal(backend.StatusActive))
	g.Expect(f.count("deactivate")).To(Equal(1), "one deactivation, sent to the backend that holds the token")

	// Reactivated on the shared backend: a token is issued there, the old one goes on its own.
	g.Eventually(func() error {
		cur := h.get(attacker.Name)
		on := true
		cur.Spec.Active = &on
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	now := h.waitFor(attacker.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(now.Status.Backend.Kind).To(Equal(tokensv1alpha1.BackendKindClusterStatusBackend))
	g.Expect(h.activeBackendTokens(now.UID)).To(ConsistOf(HaveField("ID", now.Status.TokenID)))
	g.Expect(h.backendToken(victim.Status.TokenID).Status).To(Equal(backend.StatusActive))
}

// TestBackendSwitchRetiresTheOldBackendsToken: changing backendRef issues on the new backend
// and deactivates the token on the old one (before the fix it stayed active for good).
func TestBackendSwitchRetiresTheOldBackendsToken(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	other := servertest.Start(t)
	h.createAdminSecret(h.ns, "other-admin", other.AdminToken)
	h.createClusterBackend("other-"+h.ns, other.URL, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.CredentialsSecretRef.Name = "other-admin"
	})
	h.backendReady("other-"+h.ns, tokensv1alpha1.ReasonPingSucceeded)
	tok := h.waitFor(h.create(h.newToken("mover", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	h.switchBackend(tok.Name, "other-"+h.ns)
	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive), "the old backend's token is deactivated")
	g.Expect(h.activeBackendTokens(tok.UID)).To(BeEmpty())
	list, err := other.Client(t).ListTokens(h.ctx, native.ListOptions{ExternalID: string(tok.UID), Status: backend.StatusActive})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(HaveLen(1))
}

// TestSkipRevokeReleasesTheFinalizer: with the backend gone for good, the annotation
// tokens.statusops.dev/skip-revoke=true lets the APIToken go, with a Warning that its token
// may stay active; the Deleting message names the way out.
func TestSkipRevokeReleasesTheFinalizer(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("gone", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	h.backend.Close()
	g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := h.get(tok.Name)
		g.Expect(got).NotTo(BeNil())
		g.Expect(h.readyCondition(got).Reason).To(Equal(tokensv1alpha1.ReasonDeleting))
		g.Expect(h.readyCondition(got).Message).To(ContainSubstring(tokensv1alpha1.AnnotationSkipRevoke))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Eventually(func() error {
		cur := h.get(tok.Name)
		cur.Annotations = map[string]string{tokensv1alpha1.AnnotationSkipRevoke: "true"}
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	g.Eventually(func() bool { return h.get(tok.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.expectEvent(tok.Name, "RevocationSkipped")).To(ContainSubstring(tok.Status.TokenID))
	g.Expect(h.secret(tok.Name)).To(BeNil())
}
