package controllers

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// The decoder gives every cached object its own copy of each string, though many of them
// repeat across thousands of objects: the namespace, label and annotation keys, the
// managed-by and cluster label values, finalizers, owner references' API version and kind,
// an APIToken's phase, permission, condition types and reasons, a Secret's permission, URL
// and expiry. The interning transform points each such copy at one shared copy.
//
// Strings that are unique per object (names, UIDs, token ids) are left alone where
// the code can tell: a table entry costs more than the copy it would save. Values longer than
// maxInternedLen are left alone too (a token hash is 64 characters; what repeats is shorter).
// The table is bounded: and when it holds maxInterned entries it starts afresh,
// so tenants writing ever-new label values cannot grow it; what was shared before a reset
// stays shared, only later objects get a new copy.
const (
	maxInternedLen = 40
	maxInterned    = 16384
)

type interner struct {
	mu      sync.Mutex
	strings map[string]string
	// values are the shared Secret data values, which are byte slices.
	values map[string][]byte
}

var cacheStrings = newInterner()

func newInterner() *interner {
	return &interner{strings: map[string]string{}, values: map[string][]byte{}}
}

// makeRoom starts afresh when the table is full; the caller holds mu.
func (in *interner) makeRoom() {
	if len(in.strings)+len(in.values) >= maxInterned {
		in.strings, in.values = map[string]string{}, map[string][]byte{}
	}
}

// str returns the shared copy of s, adding s when it is new.
func (in *interner) str(s string) string {
	if s == "" || len(s) > maxInternedLen {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.strings[s]; ok {
		return v
	}
	in.makeRoom()
	in.strings[s] = s
	return s
}

// bytesOf returns the shared copy of a short data value. The cache's objects are never
// written (readers get deep copies, which copy the bytes), so their values may share memory.
func (in *interner) bytesOf(v []byte) []byte {
	if len(v) == 0 || len(v) > maxInternedLen {
		return v
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if shared, ok := in.values[string(v)]; ok {
		return shared
	}
	in.makeRoom()
	v = v[:len(v):len(v)]
	in.values[string(v)] = v
	return v
}

// internedMap rebuilds m with shared keys and values (a map's keys cannot be replaced in
// place).
func internedMap[V ~string](in *interner, m map[string]V) map[string]V {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[in.str(k)] = V(in.str(string(v)))
	}
	return out
}

// internObject is the cache transform that shares repeated strings (see above). It changes
// no value, only which copy of it an object points to, and never fails.
func internObject(obj any) (any, error) {
	in := cacheStrings
	m, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	m.SetNamespace(in.str(m.GetNamespace()))
	m.SetLabels(internedMap(in, m.GetLabels()))
	m.SetAnnotations(internedMap(in, m.GetAnnotations()))
	fs := m.GetFinalizers()
	for i := range fs {
		fs[i] = in.str(fs[i])
	}
	refs := m.GetOwnerReferences()
	for i := range refs {
		refs[i].APIVersion, refs[i].Kind = in.str(refs[i].APIVersion), in.str(refs[i].Kind)
	}
	switch o := obj.(type) {
	case *tokensv1alpha1.APIToken:
		internAPIToken(in, o)
	case *corev1.Secret:
		for _, k := range sharedSecretValues {
			if v, ok := o.Data[k]; ok {
				o.Data[k] = in.bytesOf(v)
			}
		}
	}
	return obj, nil
}

// sharedSecretValues are the Secret data keys whose values repeat across Secrets; the token
// id and the token's hash do not.
var sharedSecretValues = []string{tokensv1alpha1.SecretKeyPermission, tokensv1alpha1.SecretKeyURL,
	tokensv1alpha1.SecretKeyExpiresAt}

func internAPIToken(in *interner, t *tokensv1alpha1.APIToken) {
	t.Spec.Permission = tokensv1alpha1.Permission(in.str(string(t.Spec.Permission)))
	if b := t.Spec.BackendRef; b != nil {
		b.Kind, b.Name = tokensv1alpha1.BackendKind(in.str(string(b.Kind))), in.str(b.Name)
	}
	st := &t.Status
	// The decoder grows a list by doubling: three conditions (96 bytes each) arrive in room
	// for four. The cached copy lives as long as the token, so it gets a list of its length.
	if c := st.Conditions; cap(c) > len(c) {
		st.Conditions = append(make([]metav1.Condition, 0, len(c)), c...)
	}
	st.Phase = tokensv1alpha1.APITokenPhase(in.str(string(st.Phase)))
	st.Permission = tokensv1alpha1.Permission(in.str(string(st.Permission)))
	for i := range st.Conditions {
		c := &st.Conditions[i]
		// A short message is a fixed one ("", "Up to date"); a long one names the token and
		// is left alone by str.
		c.Type, c.Reason, c.Message = in.str(c.Type), in.str(c.Reason), in.str(c.Message)
	}
}
