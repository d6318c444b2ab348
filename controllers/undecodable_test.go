package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
)

// loosenAPITokenSchema replaces the APIToken CRD's spec schema with one that takes anything,
// as a CRD upgrade gone wrong (or a direct etcd write) would, and puts the real one back when
// the test ends. The API server then stores values the Go types cannot decode.
func loosenAPITokenSchema(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	name := types.NamespacedName{Name: "apitokens." + tokensv1alpha1.GroupVersion.Group}
	scheme := runtime.NewScheme()
	g.Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	var crd apiextensionsv1.CustomResourceDefinition
	g.Expect(c.Get(ctx, name, &crd)).To(Succeed())
	original := crd.Spec.Versions[0].Schema.DeepCopy()
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrTo(true)}
	g.Expect(c.Update(ctx, &crd)).To(Succeed())
	t.Cleanup(func() {
		NewWithT(t).Eventually(func() error {
			var cur apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, name, &cur); err != nil {
				return err
			}
			cur.Spec.Versions[0].Schema = original
			return c.Update(ctx, &cur)
		}).Should(Succeed())
	})
}

func ptrTo[T any](v T) *T { return &v }

// createRaw creates an APIToken from a raw spec, retrying until the loosened schema is in
// force (the API server takes a moment to serve a changed CRD).
func createRaw(h *harness, ns, name string, spec map[string]any) *unstructured.Unstructured {
	h.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": tokensv1alpha1.GroupVersion.String(), "kind": "APIToken",
		"metadata": map[string]any{"namespace": ns, "name": name}, "spec": spec}}
	NewWithT(h.t).Eventually(func() error { return h.c.Create(h.ctx, u.DeepCopy()) }).WithTimeout(20 * time.Second).Should(Succeed())
	h.t.Cleanup(func() {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(u.GroupVersionKind())
		if h.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cur) == nil {
			cur.SetFinalizers(nil)
			_ = h.c.Update(context.Background(), cur)
			_ = h.c.Delete(context.Background(), cur)
		}
	})
	return u
}

// TestUndecodableAPITokenStopsNothing: APITokens the API server stores but the Go types
// cannot decode (a grace period beyond time.Duration, an offset of +25:00, garbage after the
// seconds, and the same value patched into an APIToken already managed) stop nothing for the
// other namespaces: after a restart, a new APIToken elsewhere is Ready within 5 s while they
// exist, and each
// bad object gets a Warning Event its owner sees. Before the lists decoded item by item, the
// manager's LIST of APITokens failed and no APIToken anywhere got a status.
func TestUndecodableAPITokenStopsNothing(t *testing.T) {
	other := fmt.Sprintf("undecodable-other-%d", nsCounter.Add(1))
	h := newHarness(t, func(o *controllers.Options) { o.WatchNamespaces = append(o.WatchNamespaces, other) })
	g := NewWithT(t)
	g.Expect(h.c.Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}})).To(Succeed())
	managed := h.waitFor(h.create(h.newToken("managed", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	loosenAPITokenSchema(t)
	ref := map[string]any{"kind": "ClusterStatusBackend", "name": h.backendName}
	bad := map[string]map[string]any{
		"grace":  {"permission": "ReadOnly", "backendRef": ref, "rotation": map[string]any{"gracePeriod": "99999999999h"}},
		"quiet":  {"permission": "ReadOnly", "backendRef": ref, "rotation": map[string]any{"retireWhenUnused": map[string]any{"quietPeriod": "99999999999h"}}},
		"offset": {"permission": "ReadOnly", "backendRef": ref, "expiresAt": "2030-06-30T00:00:00+25:00"},
		"junk":   {"permission": "ReadOnly", "backendRef": ref, "expiresAt": "2030-06-30T00:00:00x5Z"},
	}
	for name, spec := range bad {
		createRaw(h, h.ns, name, spec)
	}
	// The same value patched into the APIToken the operator already manages.
	patch := []byte(`{"spec":{"rotation":{"gracePeriod":"99999999999h"}}}`)
	asUnstructured := func() *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(tokensv1alpha1.GroupVersion.WithKind("APIToken"))
		u.SetNamespace(managed.Namespace)
		u.SetName(managed.Name)
		return u
	}
	g.Eventually(func() error {
		return h.c.Patch(h.ctx, asUnstructured(), client.RawPatch(types.MergePatchType, patch))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	t.Cleanup(func() {
		_ = h.c.Patch(context.Background(), asUnstructured(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"rotation":null}}`)))
	})

	// A restart lists every APIToken again (as a relist after a watch error does): that LIST
	// held the undecodable objects, and failed whole.
	h.restartManager()

	// Another namespace's new APIToken is Ready within 5 s.
	start := time.Now()
	fresh := h.newToken("elsewhere", tokensv1alpha1.PermissionReadOnly)
	fresh.Namespace = other
	g.Expect(h.c.Create(h.ctx, fresh)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var got tokensv1alpha1.APIToken
		g.Expect(h.c.Get(h.ctx, types.NamespacedName{Namespace: other, Name: fresh.Name}, &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(tokensv1alpha1.PhaseActive))
	}).WithTimeout(5*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "another namespace's APIToken while undecodable ones exist")
	t.Logf("Ready after %s", time.Since(start).Round(time.Millisecond))

	// Each bad object is reported on itself.
	for name := range bad {
		g.Expect(h.expectEvent(name, tokensv1alpha1.EventUndecodable)).To(ContainSubstring("cannot read this APIToken"))
	}
	g.Expect(h.expectEvent(managed.Name, tokensv1alpha1.EventUndecodable)).To(ContainSubstring("invalid duration"))
	g.Expect(h.logs.String()).To(ContainSubstring("does not decode"))
}
