// Package backendkey names a backend object (Key), says which backends an APIToken depends on
// (Of), and names the index of APITokens by them (Index), so that a backend's event wakes
// exactly its tokens.
package backendkey

import (
	"slices"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// Key names a StatusBackend or a ClusterStatusBackend.
type Key struct {
	Kind      tokensv1alpha1.BackendKind
	Namespace string
	Name      string
}

// String is "Kind/name" or "Kind/namespace/name"; it is also the APIToken index value.
func (k Key) String() string {
	if k.Namespace == "" {
		return string(k.Kind) + "/" + k.Name
	}
	return string(k.Kind) + "/" + k.Namespace + "/" + k.Name
}

// For is the backend an APIToken's spec refers to.
func For(tok *tokensv1alpha1.APIToken) Key {
	ref := tok.BackendRefOrDefault()
	key := Key{Kind: ref.Kind, Name: ref.Name}
	if ref.Kind == tokensv1alpha1.BackendKindStatusBackend {
		key.Namespace = tok.Namespace
	}
	return key
}

// OfRef is the key of a backend recorded in status.
func OfRef(ref tokensv1alpha1.BackendStatusReference) Key {
	return Key{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
}

// Ref is the status form of a key; uid is the live object's UID.
func Ref(key Key, uid string) tokensv1alpha1.BackendStatusReference {
	return tokensv1alpha1.BackendStatusReference{Kind: key.Kind, Name: key.Name, Namespace: key.Namespace, UID: uid}
}

// Current is the backend that holds the current token: the recorded one, or for objects
// written before status.backend existed, the one the spec names.
func Current(tok *tokensv1alpha1.APIToken) Key {
	if tok.Status.Backend != nil {
		return OfRef(*tok.Status.Backend)
	}
	return For(tok)
}

// Of lists every backend an APIToken depends on: the one its spec names, the one that holds
// its current token, those holding draining predecessors, and those holding tokens still to
// be deactivated. A backend (and its credential) is kept while any of them is in use, and its
// inventory looks at them all.
func Of(tok *tokensv1alpha1.APIToken) []string {
	keys := []string{For(tok).String()}
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	add(Current(tok).String())
	for _, p := range tok.Status.PreviousTokens {
		add(OfRef(p.Backend).String())
	}
	for _, p := range tok.Status.PendingDeactivation {
		add(OfRef(p.Backend).String())
	}
	return keys
}

// Index is the field index of APITokens by Key.String() of every backend in Of (registered by
// apitoken.IndexBackends, so that this package, which policy imports, needs no client).
const Index = "spec.backendRef"
