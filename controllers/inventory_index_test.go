package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/controllers/apitoken"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
)

// TestIndexedTokens: the inventory reads a backend's APITokens from the informer's index
// (no List, which copies every APIToken), and finds the same ones a List finds. A cache of
// several namespaces has no such index; there a map fed by the informer's events answers.
func TestIndexedTokens(t *testing.T) {
	ensureEnv(t)
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := fmt.Sprintf("t%d-indexed-tokens", nsCounter.Add(1))
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	backendName := "b-" + ns
	key := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: backendName}
	var want []string
	for i := range 3 {
		name := fmt.Sprintf("tok-%d", i)
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly,
				BackendRef: &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: backendName}}}
		g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
		want = append(want, name)
	}
	other := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns},
		Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly,
			BackendRef: &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "other-" + backendName}}}
	g.Expect(env.Client.Create(ctx, other)).To(Succeed())

	start := func(opts cache.Options) cache.Cache {
		opts.Scheme = controllers.Scheme()
		c, err := cache.New(env.Config, opts)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(apitoken.IndexBackends(c)).To(Succeed())
		go func() { _ = c.Start(ctx) }()
		g.Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
		return c
	}
	names := func(tokens []*tokensv1alpha1.APIToken) []string {
		var out []string
		for _, tok := range tokens {
			out = append(out, tok.Name)
		}
		slices.Sort(out)
		return out
	}

	whole := start(cache.Options{})
	byIndex := inventory.IndexedTokens(whole)
	g.Eventually(func(g Gomega) {
		got, ok := byIndex(key)
		g.Expect(ok).To(BeTrue(), "read from the index")
		g.Expect(names(got)).To(Equal(want))
		var list tokensv1alpha1.APITokenList
		g.Expect(whole.List(ctx, &list, client.MatchingFields{"spec.backendRef": key.String()})).To(Succeed())
		var fromList []*tokensv1alpha1.APIToken
		for i := range list.Items {
			fromList = append(fromList, &list.Items[i])
		}
		g.Expect(names(fromList)).To(Equal(want))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	got, _ := byIndex(key)
	var cached tokensv1alpha1.APIToken
	g.Expect(whole.Get(ctx, types.NamespacedName{Namespace: ns, Name: got[0].Name}, &cached)).To(Succeed())
	g.Expect(got[0].UID).To(Equal(cached.UID))

	// A cache of several namespaces has no single index: a map fed by the informer's events
	// answers, and follows a token that moves to another backend or goes.
	other2 := fmt.Sprintf("t%d-indexed-tokens-b", nsCounter.Add(1))
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other2}})).To(Succeed())
	some := start(cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}, other2: {}}})
	byEvents := inventory.IndexedTokens(some)
	bothAgree := func(want []string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			for _, read := range []func(backendkey.Key) ([]*tokensv1alpha1.APIToken, bool){byIndex, byEvents} {
				got, ok := read(key)
				g.Expect(ok).To(BeTrue(), "read without a List")
				g.Expect(names(got)).To(Equal(want))
			}
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}
	bothAgree(want)
	var moved tokensv1alpha1.APIToken
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "tok-0"}, &moved)).To(Succeed())
	moved.Spec.BackendRef.Name = "other-" + backendName
	g.Expect(env.Client.Update(ctx, &moved)).To(Succeed())
	bothAgree([]string{"tok-1", "tok-2"})
	g.Expect(env.Client.Delete(ctx, &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok-1"}})).To(Succeed())
	bothAgree([]string{"tok-2"})
	movedKey := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "other-" + backendName}
	got, ok := byEvents(movedKey)
	g.Expect(ok).To(BeTrue())
	g.Expect(names(got)).To(Equal([]string{"elsewhere", "tok-0"}))
	g.Expect(got[0].ResourceVersion).NotTo(BeEmpty())
}
