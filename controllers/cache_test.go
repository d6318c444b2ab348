package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// startTestManager runs a manager of NewManager against env until the test ends.
func startTestManager(t *testing.T, env *testenv.Env, o Options) manager.Manager {
	t.Helper()
	o.SkipNameValidation = true
	if o.MetricsAddr == "" {
		o.MetricsAddr = "0"
	}
	if o.HealthAddr == "" {
		o.HealthAddr = "0"
	}
	mgr, err := NewManager(env.Config, o)
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return mgr
}

// TestManagedSecretsAreCachedWithoutTheirData: anyone who may create Secrets can label 40 of
// 900 KiB as managed; the manager's cache must hold them without their data (finding 6), and
// hold only the hash of each token.
func TestManagedSecretsAreCachedWithoutTheirData(t *testing.T) {
	g := NewWithT(t)
	env := testenv.Start(t)
	ctx := context.Background()
	const ns, n = "tenant", 40
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	mgr := startTestManager(t, env, Options{WatchNamespaces: []string{ns}})

	tokens := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("big-%02d", i)
		tokens[name] = fmt.Sprintf("%02d", i) + strings.Repeat("t", 450<<10)
		g.Expect(env.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				Labels: map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}},
			Data: map[string][]byte{
				tokensv1alpha1.SecretKeyToken:   []byte(tokens[name]),
				"padding":                       []byte(strings.Repeat("p", 450<<10)),
				tokensv1alpha1.SecretKeyTokenID: []byte("tok_" + name),
			},
		})).To(Succeed())
	}

	var cached corev1.SecretList
	g.Eventually(func(g Gomega) {
		g.Expect(mgr.GetCache().List(ctx, &cached, client.InNamespace(ns))).To(Succeed())
		g.Expect(cached.Items).To(HaveLen(n))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	total := 0
	for i := range cached.Items {
		s := &cached.Items[i]
		size := secretSize(s)
		total += size
		g.Expect(size).To(BeNumerically("<", 1<<10), "cached Secret %s holds %d bytes", s.Name, size)
		g.Expect(s.Data).NotTo(HaveKey(tokensv1alpha1.SecretKeyToken))
		g.Expect(s.Data).NotTo(HaveKey("padding"))
		g.Expect(s.Data).To(HaveKeyWithValue(tokensv1alpha1.SecretKeyTokenID, []byte("tok_"+s.Name)))
		g.Expect(secretcache.IsTrimmedSecret(s)).To(BeTrue())
		sum := sha256.Sum256([]byte(tokens[s.Name]))
		h, ok := secretcache.CachedTokenHash(s)
		g.Expect(ok).To(BeTrue())
		g.Expect(h).To(Equal(hex.EncodeToString(sum[:])))
		g.Expect(s.ManagedFields).To(BeNil())
	}
	t.Logf("%d managed Secrets of 900 KiB hold %d bytes of data and metadata in the cache", n, total)
}

// secretSize is the bytes of a Secret's data and its labels and annotations.
func secretSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	for _, m := range []map[string]string{s.Labels, s.Annotations} {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	return n
}
