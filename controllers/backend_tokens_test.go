package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/controllers/inventory"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// backendCounts is the test backend's status.tokens, or nil.
func backendCounts(h *harness) *tokensv1alpha1.BackendTokenCounts {
	var b tokensv1alpha1.ClusterStatusBackend
	if err := h.c.Get(h.ctx, types.NamespacedName{Name: h.backendName}, &b); err != nil {
		return nil
	}
	return b.Status.Tokens
}

func waitCounts(h *harness, want tokensv1alpha1.BackendTokenCounts) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() *tokensv1alpha1.BackendTokenCounts { return backendCounts(h) }).
		WithTimeout(20 * time.Second).Should(Equal(&want))
}

// backendTokensGauge reads apitoken_backend_tokens for the test backend and a class.
func backendTokensGauge(t *testing.T, backendName, class string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "apitoken_backend_tokens" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "backend") == backendName && label(m, "class") == class {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestBackendTokenCounts: a backend shared with another cluster. The operator labels the
// token it creates with this cluster's identity (the kube-system namespace's UID), counts
// it as managed, the hand-made tokens as unmanaged, and the other cluster's tokens as
// otherClusters, also in the gauge. One of those carries the UID of our APIToken as
// external_id (a cluster restored from another's backup): a rotation's sweep of that
// APIToken's tokens leaves it active. Another cluster's token cannot be adopted. Adopting a
// hand-made token moves it from unmanaged to managed.
func TestBackendTokenCounts(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	var kubeSystem corev1.Namespace
	g.Expect(h.c.Get(h.ctx, types.NamespacedName{Name: metav1.NamespaceSystem}, &kubeSystem)).To(Succeed())

	tok := h.waitFor(h.create(h.newToken("managed", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backendToken(tok.Status.TokenID).Labels).To(HaveKeyWithValue(tokensv1alpha1.LabelCluster, string(kubeSystem.UID)))
	legacyRO := legacyToken(h, "legacy-ro", backend.PermissionReadOnly)
	h.backend.IssueToken(t, native.CreateRequest{Name: "by hand", Permission: backend.PermissionFullAccess})
	otherLabels := map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue, tokensv1alpha1.LabelCluster: "other-cluster"}
	collision := h.backend.IssueToken(t, native.CreateRequest{Name: "theirs", Permission: backend.PermissionReadOnly, ExternalID: string(tok.UID), Labels: otherLabels})
	unowned := h.backend.IssueToken(t, native.CreateRequest{Name: "theirs too", Permission: backend.PermissionFullAccess, Labels: otherLabels})

	waitCounts(h, tokensv1alpha1.BackendTokenCounts{Managed: 1, UnmanagedActive: 2, UnmanagedFullAccess: 1, OtherClusters: 2})
	g.Expect(backendTokensGauge(t, h.backendName, "other_clusters")).To(Equal(2.0))
	g.Expect(backendTokensGauge(t, h.backendName, "unmanaged_full_access")).To(Equal(1.0))

	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	rotated := waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Eventually(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(10 * time.Second).Should(Equal(backend.StatusInactive))
	g.Expect(h.backendToken(collision.ID).Status).To(Equal(backend.StatusActive), "another cluster's token is never swept as this APIToken's orphan")
	g.Expect(h.activeBackendTokens(rotated.UID)).To(HaveLen(2), "ours and the other cluster's")

	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "theirs"}, Data: map[string][]byte{"token": []byte(unowned.Value.Reveal())}}
	g.Expect(h.c.Create(h.ctx, s)).To(Succeed())
	refused := h.waitFor(h.create(h.newToken("take-theirs", tokensv1alpha1.PermissionFullAccess, adopting(unowned.ID, "theirs"))).Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonAlreadyManaged)
	g.Expect(h.readyCondition(refused).Message).To(ContainSubstring("another cluster"))
	g.Expect(h.backendToken(unowned.ID).ExternalID).To(BeEmpty(), "not claimed")

	h.waitFor(h.create(h.newToken("legacy-ro", tokensv1alpha1.PermissionReadOnly, adopting(legacyRO.ID, "legacy-ro"))).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
	waitCounts(h, tokensv1alpha1.BackendTokenCounts{Managed: 2, UnmanagedActive: 1, UnmanagedFullAccess: 1, OtherClusters: 2})
	g.Expect(backendTokensGauge(t, h.backendName, "managed")).To(Equal(2.0))
}

// TestStatusBackendTokenCounts: a namespaced StatusBackend gets status.tokens too, and a
// token made on the backend later shows up within a sync interval (the inventory wakes the
// backend's controller). No APIToken uses this backend, so nothing there is managed.
func TestStatusBackendTokenCounts(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	sb := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "team-backend"}}
	sb.Spec.URL = h.backend.URL
	sb.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "admin", Key: "token"}
	g.Expect(h.c.Create(h.ctx, sb)).To(Succeed())
	counts := func() *tokensv1alpha1.BackendTokenCounts {
		var got tokensv1alpha1.StatusBackend
		if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: sb.Name}, &got); err != nil {
			return nil
		}
		return got.Status.Tokens
	}
	g.Eventually(counts).WithTimeout(20 * time.Second).Should(Equal(&tokensv1alpha1.BackendTokenCounts{}))
	h.backend.IssueToken(t, native.CreateRequest{Name: "later", Permission: backend.PermissionFullAccess})
	g.Eventually(counts).WithTimeout(20 * time.Second).Should(Equal(&tokensv1alpha1.BackendTokenCounts{UnmanagedActive: 1, UnmanagedFullAccess: 1}))
}

// TestResolveClusterIdentity: --cluster-name wins and must be a label value; without it the
// identity is the kube-system namespace's UID, and a cluster where that cannot be read says
// how to get past it.
func TestResolveClusterIdentity(t *testing.T) {
	g := NewWithT(t)
	withNS := fake.NewClientBuilder().WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "ks-uid"}}).Build()
	id, err := inventory.ResolveClusterIdentity(context.Background(), withNS, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(id).To(Equal("ks-uid"))
	id, err = inventory.ResolveClusterIdentity(context.Background(), withNS, "prod-eu-1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(id).To(Equal("prod-eu-1"))
	_, err = inventory.ResolveClusterIdentity(context.Background(), withNS, "prod/eu 1")
	g.Expect(err).To(MatchError(ContainSubstring("--cluster-name")))
	_, err = inventory.ResolveClusterIdentity(context.Background(), fake.NewClientBuilder().Build(), "")
	g.Expect(err).To(MatchError(ContainSubstring("set --cluster-name")))
}
