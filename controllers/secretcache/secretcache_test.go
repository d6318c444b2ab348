package secretcache

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// managedSecret is a Secret as the operator writes it, before any trimming.
func managedSecret() *corev1.Secret {
	now := metav1.Now()
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "s", Namespace: "ns", UID: "uid-1", ResourceVersion: "42",
			DeletionTimestamp: &now, Finalizers: []string{"example.com/keep"},
			Labels:          map[string]string{"app.kubernetes.io/managed-by": "apitoken-operator", "team": "a"},
			Annotations:     map[string]string{"tokens.statusops.dev/token-sha256": sha256Hex("tok-value"), "reloader/match": "true"},
			OwnerReferences: []metav1.OwnerReference{{Name: "tok", UID: "owner", Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Data: map[string][]byte{
			"token": []byte("tok-value"), "tokenID": []byte("tok_1"), "permission": []byte("read_only"),
			"expiresAt": []byte(""), "url": []byte("http://backend"),
		},
		StringData: map[string]string{"token": "tok-value"},
	}
}

// TestTrimManagedSecret: a cached managed Secret keeps what the operator reads, a hash instead
// of the token, and costs bounded memory whatever a tenant puts into it.
func TestTrimManagedSecret(t *testing.T) {
	big := strings.Repeat("x", 900<<10)
	cases := []struct {
		name   string
		mutate func(*corev1.Secret)
		check  func(g Gomega, in, out *corev1.Secret)
	}{{
		name: "keeps the metadata and small operator keys, hashes the token",
		check: func(g Gomega, in, out *corev1.Secret) {
			g.Expect(out.ObjectMeta.Name).To(Equal(in.Name))
			g.Expect(out.Namespace).To(Equal(in.Namespace))
			g.Expect(out.UID).To(Equal(in.UID))
			g.Expect(out.ResourceVersion).To(Equal(in.ResourceVersion))
			g.Expect(out.DeletionTimestamp).To(Equal(in.DeletionTimestamp))
			g.Expect(out.Finalizers).To(Equal(in.Finalizers))
			g.Expect(out.Labels).To(Equal(in.Labels))
			g.Expect(out.Annotations).To(Equal(in.Annotations))
			g.Expect(out.OwnerReferences).To(Equal(in.OwnerReferences))
			g.Expect(out.ManagedFields).To(BeNil())
			g.Expect(out.StringData).To(BeNil())
			for _, k := range []string{"tokenID", "permission", "expiresAt", "url"} {
				g.Expect(out.Data).To(HaveKeyWithValue(k, in.Data[k]))
			}
			g.Expect(out.Data).NotTo(HaveKey("token"))
			expectHash(g, out, sha256Hex("tok-value"))
			g.Expect(IsTrimmedSecret(out)).To(BeTrue())
			g.Expect(MetadataTrimmed(out)).To(BeFalse())
		},
	}, {
		name: "drops other data keys and oversized operator keys",
		mutate: func(s *corev1.Secret) {
			s.Data["payload"] = []byte(big)
			s.Data["url"] = []byte(strings.Repeat("u", 1<<10+1))
			s.Data["tokenID"] = []byte(strings.Repeat("i", 1<<10))
		},
		check: func(g Gomega, in, out *corev1.Secret) {
			g.Expect(out.Data).NotTo(HaveKey("payload"))
			g.Expect(out.Data).NotTo(HaveKey("url"))
			g.Expect(out.Data).To(HaveKey("tokenID"), "exactly 1 KiB is kept")
			g.Expect(dataSize(out)).To(BeNumerically("<", 2<<10))
		},
	}, {
		name:   "a huge token is kept only as its hash",
		mutate: func(s *corev1.Secret) { s.Data["token"] = []byte(big) },
		check: func(g Gomega, in, out *corev1.Secret) {
			expectHash(g, out, sha256Hex(big))
			g.Expect(dataSize(out)).To(BeNumerically("<", 1<<10))
		},
	}, {
		name:   "no token, no hash",
		mutate: func(s *corev1.Secret) { delete(s.Data, "token") },
		check: func(g Gomega, in, out *corev1.Secret) {
			h, ok := CachedTokenHash(out)
			g.Expect(ok).To(BeFalse())
			g.Expect(h).To(BeEmpty())
			g.Expect(IsTrimmedSecret(out)).To(BeTrue())
		},
	}, {
		name:   "an empty token has the hash of the empty string",
		mutate: func(s *corev1.Secret) { s.Data["token"] = nil },
		check: func(g Gomega, in, out *corev1.Secret) {
			expectHash(g, out, sha256Hex(""))
		},
	}, {
		name: "metadata over 64 KiB keeps only the operator's prefixes",
		mutate: func(s *corev1.Secret) {
			s.Annotations["huge"] = strings.Repeat("a", 64<<10)
			s.Annotations["app.kubernetes.io/huge"] = strings.Repeat("b", 2<<10)
			s.Annotations["tokens.statusops.dev/x"] = "y"
		},
		check: func(g Gomega, in, out *corev1.Secret) {
			g.Expect(out.Annotations).To(Equal(map[string]string{
				"tokens.statusops.dev/token-sha256": sha256Hex("tok-value"), "tokens.statusops.dev/x": "y"}))
			g.Expect(out.Labels).To(Equal(map[string]string{"app.kubernetes.io/managed-by": "apitoken-operator"}))
			g.Expect(MetadataTrimmed(out)).To(BeTrue())
			g.Expect(IsTrimmedSecret(out)).To(BeTrue())
		},
	}, {
		name:   "metadata of exactly 64 KiB is kept whole",
		mutate: func(s *corev1.Secret) { padMetadataTo(s, 64<<10) },
		check: func(g Gomega, in, out *corev1.Secret) {
			g.Expect(out.Annotations).To(Equal(in.Annotations))
			g.Expect(MetadataTrimmed(out)).To(BeFalse())
		},
	}, {
		name: "many owner references and finalizers are cut",
		mutate: func(s *corev1.Secret) {
			for i := 0; i < 20; i++ {
				s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{Name: "other"})
				s.Finalizers = append(s.Finalizers, "example.com/f")
			}
			s.Finalizers = append(s.Finalizers, "tokens.statusops.dev/f")
		},
		check: func(g Gomega, in, out *corev1.Secret) {
			g.Expect(out.OwnerReferences).To(Equal(in.OwnerReferences[:1]), "the controller reference")
			g.Expect(out.Finalizers).To(Equal([]string{"tokens.statusops.dev/f"}))
			g.Expect(MetadataTrimmed(out)).To(BeTrue())
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := managedSecret()
			if tc.mutate != nil {
				tc.mutate(in)
			}
			out, err := TrimManagedSecret(in.DeepCopy())
			g.Expect(err).NotTo(HaveOccurred())
			tc.check(g, in, out.(*corev1.Secret))
			again, err := TrimManagedSecret(out.(*corev1.Secret).DeepCopy())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).To(Equal(out), "trimming twice changes nothing")
		})
	}
}

// expectHash asserts that s has a token and that its hash is want.
func expectHash(g Gomega, s *corev1.Secret, want string) {
	h, ok := CachedTokenHash(s)
	g.Expect(ok).To(BeTrue(), "CachedTokenHash ok")
	g.Expect(h).To(Equal(want))
}

func dataSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	return n
}

// padMetadataTo adds an annotation so labels plus annotations are exactly n bytes.
func padMetadataTo(s *corev1.Secret, n int) {
	s.Annotations["pad"] = ""
	s.Annotations["pad"] = strings.Repeat("p", n-metadataSize(s.Labels, s.Annotations))
}

// TestTrimManagedSecretLeavesOtherObjects: tombstones and other kinds pass through.
func TestTrimManagedSecretLeavesOtherObjects(t *testing.T) {
	g := NewWithT(t)
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/s", Obj: managedSecret()}
	out, err := TrimManagedSecret(tomb)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(tomb))
	cm := &corev1.ConfigMap{Data: map[string]string{"a": "b"}}
	out, err = TrimManagedSecret(cm)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(&corev1.ConfigMap{Data: map[string]string{"a": "b"}}))
}

// TestCachedSecretAccessorsOnLiveSecrets: a Secret read from the API server is not trimmed,
// its hash is computed from its token, and no real data key can fake a marker.
func TestCachedSecretAccessorsOnLiveSecrets(t *testing.T) {
	g := NewWithT(t)
	live := managedSecret()
	g.Expect(IsTrimmedSecret(live)).To(BeFalse())
	g.Expect(MetadataTrimmed(live)).To(BeFalse())
	expectHash(g, live, sha256Hex("tok-value"))
	delete(live.Data, "token")
	_, ok := CachedTokenHash(live)
	g.Expect(ok).To(BeFalse())
	g.Expect(IsTrimmedSecret(nil)).To(BeFalse())
	_, ok = CachedTokenHash(nil)
	g.Expect(ok).To(BeFalse())
	for _, k := range []string{cachedTokenHashKey, cachedTrimmedKey, cachedMetadataTrimmedKey, cachedMetadataFoldedKey} {
		g.Expect(validation.IsConfigMapKey(k)).NotTo(BeEmpty(), "%q must not be a valid Secret data key", k)
	}
}

// standardSecret is a Secret as the operator writes it with no secretTemplate.
func standardSecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "tok", Namespace: "ns", UID: "uid-1", ResourceVersion: "42",
			Labels:      map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue, tokensv1alpha1.LabelAPIToken: "tok"},
			Annotations: map[string]string{AnnotationTokenSHA256: sha256Hex("tok-value")},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "APIToken",
				Name: "tok", UID: "owner", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Data: map[string][]byte{"token": []byte("tok-value"), "tokenID": []byte("tok_1"), "permission": []byte("read_only"),
			"expiresAt": []byte(""), "url": []byte("http://backend")},
	}
}

// TestStandardMetadataIsFolded: the labels and annotation the operator writes on every Secret
// are not kept as maps in the cache, and a copy read through gatherSecret's
// UnfoldSecretMetadata has them back exactly; anything else is kept as it is.
func TestStandardMetadataIsFolded(t *testing.T) {
	cases := []struct {
		name                   string
		mutate                 func(*corev1.Secret)
		labelsKept, annotsKept bool
	}{
		{name: "the operator's own labels and annotation"},
		{name: "a template label", mutate: func(s *corev1.Secret) { s.Labels["team"] = "a" }, labelsKept: true},
		{name: "a template annotation", mutate: func(s *corev1.Secret) { s.Annotations["reloader/match"] = "true" }, annotsKept: true},
		{name: "the apitoken label names another object", mutate: func(s *corev1.Secret) { s.Labels[tokensv1alpha1.LabelAPIToken] = "other" }, labelsKept: true},
		{name: "the managed-by label has another value", mutate: func(s *corev1.Secret) { s.Labels[tokensv1alpha1.LabelManagedBy] = "someone" }, labelsKept: true},
		{name: "the controller is not an APIToken", mutate: func(s *corev1.Secret) { s.OwnerReferences[0].Kind = "ConfigMap" }, labelsKept: true},
		{name: "no controller", mutate: func(s *corev1.Secret) { s.OwnerReferences = nil }, labelsKept: true},
		{name: "the token was edited (its hash no longer matches the annotation)", mutate: func(s *corev1.Secret) { s.Data["token"] = []byte("edited") }, annotsKept: true},
		{name: "no token key", mutate: func(s *corev1.Secret) { delete(s.Data, "token") }, annotsKept: true},
		{name: "no annotation", mutate: func(s *corev1.Secret) { s.Annotations = nil }, annotsKept: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			in := standardSecret()
			if c.mutate != nil {
				c.mutate(in)
			}
			obj, err := TrimManagedSecret(in.DeepCopy())
			g.Expect(err).NotTo(HaveOccurred())
			cached := obj.(*corev1.Secret)
			if c.labelsKept {
				g.Expect(cached.Labels).To(Equal(in.Labels))
			} else {
				g.Expect(cached.Labels).To(BeNil())
			}
			if c.annotsKept {
				g.Expect(cached.Annotations).To(Equal(in.Annotations))
			} else {
				g.Expect(cached.Annotations).To(BeNil())
			}
			// Trimming again (the informer's Replace runs the transform twice) changes nothing.
			again, err := TrimManagedSecret(cached.DeepCopy())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).To(Equal(cached))

			read := cached.DeepCopy()
			UnfoldSecretMetadata(read)
			g.Expect(read.Labels).To(Equal(in.Labels))
			g.Expect(read.Annotations).To(Equal(in.Annotations))
			g.Expect(read.Data).NotTo(HaveKey(cachedMetadataFoldedKey))
			// The cache's own object is not touched by reading a copy.
			g.Expect(cached.Labels == nil).To(Equal(!c.labelsKept))
		})
	}
}

// TestUnfoldLeavesOtherSecretsAlone: a live Secret, or a trimmed one with nothing folded, is
// returned as it was.
func TestUnfoldLeavesOtherSecretsAlone(t *testing.T) {
	g := NewWithT(t)
	live := standardSecret()
	UnfoldSecretMetadata(live)
	g.Expect(live).To(Equal(standardSecret()))
	obj, err := TrimManagedSecret(managedSecret())
	g.Expect(err).NotTo(HaveOccurred())
	trimmed := obj.(*corev1.Secret)
	want := trimmed.DeepCopy()
	UnfoldSecretMetadata(trimmed)
	g.Expect(trimmed).To(Equal(want))
	UnfoldSecretMetadata(nil)
}
