package controllers

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// tokensByBackend maps each backend (BackendKey.String(), as backendsOf gives them) to the
// APITokens that refer to it: the informer's own objects, only ever read. It is fed by the
// APIToken informer's events, for a cache of several namespaces (--watch-namespaces), which
// has no single index to read: there the inventory listed the cache at every sync interval,
// and a List copies every APIToken into its slice, once per namespace and once more into the
// combined list: 27 MB at 20,000 APITokens, held through the whole refresh, which the heap's
// goal then followed (profiled 2026-12-01, session 6). An entry here costs the map's slot
// (the name's strings are the object's own).
type tokensByBackend struct {
	mu sync.RWMutex
	m  map[string]map[types.NamespacedName]*tokensv1alpha1.APIToken
	// synced reports the informer's initial list delivered to this handler: until then the
	// map is partial and the inventory lists instead.
	synced func() bool
}

var _ toolscache.ResourceEventHandler = (*tokensByBackend)(nil)

func (b *tokensByBackend) OnAdd(obj any, _ bool) { b.move(nil, obj) }
func (b *tokensByBackend) OnUpdate(old, obj any) { b.move(old, obj) }
func (b *tokensByBackend) OnDelete(obj any)      { b.move(obj, nil) }

// asAPIToken is the APIToken of an informer event's object, a tombstone's included; nil for
// anything else.
func asAPIToken(obj any) *tokensv1alpha1.APIToken {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	tok, _ := obj.(*tokensv1alpha1.APIToken)
	return tok
}

// move takes old off the backends it referred to and puts obj on the ones it refers to.
func (b *tokensByBackend) move(old, obj any) {
	var oldKeys, newKeys []string
	var oldName types.NamespacedName
	prev, tok := asAPIToken(old), asAPIToken(obj)
	if prev != nil {
		oldKeys, oldName = backendsOf(prev), types.NamespacedName{Namespace: prev.Namespace, Name: prev.Name}
	}
	if tok != nil {
		newKeys = backendsOf(tok)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range oldKeys {
		if tok != nil && tok.Namespace == oldName.Namespace && tok.Name == oldName.Name && slices.Contains(newKeys, k) {
			continue // replaced below
		}
		if byName := b.m[k]; byName != nil {
			delete(byName, oldName)
			if len(byName) == 0 {
				delete(b.m, k)
			}
		}
	}
	if tok == nil {
		return
	}
	if b.m == nil {
		b.m = map[string]map[types.NamespacedName]*tokensv1alpha1.APIToken{}
	}
	name := types.NamespacedName{Namespace: tok.Namespace, Name: tok.Name}
	for _, k := range newKeys {
		byName := b.m[k]
		if byName == nil {
			byName = map[types.NamespacedName]*tokensv1alpha1.APIToken{}
			b.m[k] = byName
		}
		byName[name] = tok
	}
}

// tokensOf returns the APITokens that refer to key; ok is false until the informer's initial
// list has been delivered.
func (b *tokensByBackend) tokensOf(key BackendKey) ([]*tokensv1alpha1.APIToken, bool) {
	if b.synced == nil || !b.synced() {
		return nil, false
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	byName := b.m[key.String()]
	tokens := make([]*tokensv1alpha1.APIToken, 0, len(byName))
	for _, tok := range byName {
		tokens = append(tokens, tok)
	}
	return tokens, true
}
