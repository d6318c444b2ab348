package controllers

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

func TestSplitNamespaces(t *testing.T) {
	g := NewWithT(t)
	g.Expect(SplitNamespaces(" a, b,,c ")).To(Equal([]string{"a", "b", "c"}))
	g.Expect(SplitNamespaces("")).To(BeEmpty())
}

func TestCacheTransformsDropLargeMetadata(t *testing.T) {
	g := NewWithT(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "s", Labels: map[string]string{"a": "b"},
		Annotations:     map[string]string{lastAppliedAnnotation: `{"data":{"token":"c2VjcmV0"}}`, "keep": "me"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "owner"}},
	}}
	out, err := trimForCache(secret.DeepCopy())
	g.Expect(err).NotTo(HaveOccurred())
	got := out.(*corev1.Secret)
	g.Expect(got.ManagedFields).To(BeNil())
	g.Expect(got.Annotations).To(Equal(map[string]string{"keep": "me"}))
	g.Expect(got.Labels).To(HaveKey("a"))

	// The metadata cache holds every Secret in the cluster: only the managed-by label and the
	// controller reference stay, however many labels and owners a tenant adds.
	hostile := secret.ObjectMeta.DeepCopy()
	hostile.Labels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}
	for i := range 1000 {
		hostile.Labels[fmt.Sprintf("l%04d", i)] = strings.Repeat("v", 63)
		hostile.OwnerReferences = append(hostile.OwnerReferences, metav1.OwnerReference{Name: fmt.Sprintf("o%d", i)})
	}
	hostile.OwnerReferences = append(hostile.OwnerReferences, metav1.OwnerReference{Name: "owner", Controller: ptr.To(true)})
	out, err = trimSecretMetadata(&metav1.PartialObjectMetadata{ObjectMeta: *hostile})
	g.Expect(err).NotTo(HaveOccurred())
	meta := out.(*metav1.PartialObjectMetadata)
	g.Expect(meta.Annotations).To(BeNil())
	g.Expect(meta.ManagedFields).To(BeNil())
	g.Expect(meta.Labels).To(Equal(map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}))
	g.Expect(meta.OwnerReferences).To(Equal([]metav1.OwnerReference{{Name: "owner", Controller: ptr.To(true)}}))

	out, err = trimSecretMetadata(&metav1.PartialObjectMetadata{ObjectMeta: *secret.ObjectMeta.DeepCopy()})
	g.Expect(err).NotTo(HaveOccurred())
	meta = out.(*metav1.PartialObjectMetadata)
	g.Expect(meta.Labels).To(BeNil(), "a foreign Secret keeps no label")
	g.Expect(meta.OwnerReferences).To(BeNil(), "nor a non-controller owner")
}
