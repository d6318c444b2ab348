package controllers

import (
	"fmt"
	"testing"
	"unsafe"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// decoded returns what the decoder gives: every string its own copy.
func decoded(s string) string { return string([]byte(s)) }

func internTestToken(name string) *tokensv1alpha1.APIToken {
	return &tokensv1alpha1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: decoded(name), Namespace: decoded("team-a"),
			Labels:     map[string]string{decoded("tokens.statusops.dev/cluster"): decoded("0f9c1d2e-uid")},
			Finalizers: []string{decoded(tokensv1alpha1.Finalizer)}},
		Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.Permission(decoded("ReadOnly"))},
		Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.APITokenPhase(decoded("Active")), TokenID: decoded("tok_" + name),
			Conditions: []metav1.Condition{{Type: decoded("Ready"), Reason: decoded("Issued"), Message: decoded("Issued " + name)}}},
	}
}

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestInternObjectSharesRepeatedStrings(t *testing.T) {
	g := NewWithT(t)
	cacheStrings = newInterner()
	a, b := internTestToken("grafana"), internTestToken("pager")
	wantA, wantB := a.DeepCopy(), b.DeepCopy()
	for _, o := range []*tokensv1alpha1.APIToken{a, b} {
		_, err := internObject(o)
		g.Expect(err).NotTo(HaveOccurred())
	}
	// No value changes.
	g.Expect(equality.Semantic.DeepEqual(a, wantA)).To(BeTrue())
	g.Expect(equality.Semantic.DeepEqual(b, wantB)).To(BeTrue())
	// The repeated strings share one copy; the unique ones keep their own.
	g.Expect(sameBytes(a.Namespace, b.Namespace)).To(BeTrue(), "namespace")
	g.Expect(sameBytes(a.Finalizers[0], b.Finalizers[0])).To(BeTrue(), "finalizer")
	g.Expect(sameBytes(a.Labels["tokens.statusops.dev/cluster"], b.Labels["tokens.statusops.dev/cluster"])).To(BeTrue(), "label value")
	g.Expect(sameBytes(string(a.Status.Phase), string(b.Status.Phase))).To(BeTrue(), "phase")
	g.Expect(sameBytes(a.Status.Conditions[0].Reason, b.Status.Conditions[0].Reason)).To(BeTrue(), "reason")
	g.Expect(sameBytes(string(a.Spec.Permission), string(b.Spec.Permission))).To(BeTrue(), "permission")

	s1 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: decoded("team-a")}, Data: map[string][]byte{
		tokensv1alpha1.SecretKeyPermission: []byte("ReadOnly"), tokensv1alpha1.SecretKeyTokenID: []byte("tok_1")}}
	s2 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: decoded("team-a")}, Data: map[string][]byte{
		tokensv1alpha1.SecretKeyPermission: []byte("ReadOnly"), tokensv1alpha1.SecretKeyTokenID: []byte("tok_2")}}
	_, _ = internObject(s1)
	_, _ = internObject(s2)
	g.Expect(&s1.Data[tokensv1alpha1.SecretKeyPermission][0]).To(BeIdenticalTo(&s2.Data[tokensv1alpha1.SecretKeyPermission][0]))
	g.Expect(string(s2.Data[tokensv1alpha1.SecretKeyTokenID])).To(Equal("tok_2"))
	g.Expect(sameBytes(s1.Namespace, a.Namespace)).To(BeTrue(), "one copy across kinds")
}

func TestInternerIsBounded(t *testing.T) {
	g := NewWithT(t)
	cacheStrings = newInterner()
	for i := range 3 * maxInterned {
		o := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k": fmt.Sprintf("value-%d", i)}}}
		_, _ = internObject(o)
	}
	g.Expect(len(cacheStrings.strings) + len(cacheStrings.values)).To(BeNumerically("<=", maxInterned))
	long := decoded(string(make([]byte, maxInternedLen+1)))
	o := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: long}}
	_, _ = internObject(o)
	g.Expect(cacheStrings.strings).NotTo(HaveKey(long), "long values are not kept")
}

// TestInternObjectClipsConditions: the decoder leaves three conditions in room for four; the
// cached copy keeps exactly its conditions, unchanged.
func TestInternObjectClipsConditions(t *testing.T) {
	g := NewWithT(t)
	cacheStrings = newInterner()
	tok := internTestToken("grafana")
	conds := make([]metav1.Condition, 0, 4)
	for _, typ := range []string{"Ready", "BackendReachable", "SecretSynced"} {
		conds = append(conds, metav1.Condition{Type: decoded(typ), Status: metav1.ConditionTrue, Reason: decoded("Issued")})
	}
	tok.Status.Conditions = conds
	want := tok.DeepCopy()
	_, err := internObject(tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Status.Conditions).To(HaveLen(3))
	g.Expect(cap(tok.Status.Conditions)).To(Equal(3))
	g.Expect(equality.Semantic.DeepEqual(tok, want)).To(BeTrue())
}
