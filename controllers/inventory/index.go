package inventory

import (
	"context"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
)

// tokensByBackend maps each backend (backendkey.Key.String(), as backendsOf gives them) to the
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

// AsAPIToken is the APIToken of an informer event's object, a tombstone's included; nil for
// anything else.
func AsAPIToken(obj any) *tokensv1alpha1.APIToken {
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
	prev, tok := AsAPIToken(old), AsAPIToken(obj)
	if prev != nil {
		oldKeys, oldName = backendkey.Of(prev), types.NamespacedName{Namespace: prev.Namespace, Name: prev.Name}
	}
	if tok != nil {
		newKeys = backendkey.Of(tok)
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
func (b *tokensByBackend) tokensOf(key backendkey.Key) ([]*tokensv1alpha1.APIToken, bool) {
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

// IndexedTokens is an Inventory.TokensOf that reads backendkey.Index from the informer's own
// index. A List from the cache, even without deep copies, copies every APIToken (704 bytes)
// into the list's slice: at 20,000 tokens that was 14 MB per backend and sync interval, the
// largest share of an idle manager's garbage, which the heap's goal follows. A cache of
// several namespaces has no single informer or index: there a map fed by the informer's
// events (tokensByBackend) answers instead. ok is false when neither can answer yet (the
// informer's initial list not delivered); then a List is made.
func IndexedTokens(c cache.Informers) func(backendkey.Key) ([]*tokensv1alpha1.APIToken, bool) {
	var (
		indexer toolscache.Indexer
		byEvent *tokensByBackend
	)
	// Looked up now, before the manager starts, so that the handler sees the initial list.
	if inf, err := c.GetInformer(context.Background(), &tokensv1alpha1.APIToken{}, cache.BlockUntilSynced(false)); err == nil {
		if s, ok := inf.(interface{ GetIndexer() toolscache.Indexer }); ok {
			indexer = s.GetIndexer()
		} else {
			b := &tokensByBackend{}
			if reg, err := inf.AddEventHandler(b); err == nil {
				b.synced = reg.HasSynced
				byEvent = b
			}
		}
	}
	return func(key backendkey.Key) ([]*tokensv1alpha1.APIToken, bool) {
		if byEvent != nil {
			return byEvent.tokensOf(key)
		}
		if indexer == nil {
			return nil, false
		}
		// controller-runtime's names for a field index and its cluster-wide values
		// (FieldIndexName and KeyToNamespacedKey in its cache); TestIndexedTokens fails if
		// they change.
		objs, err := indexer.ByIndex("field:"+backendkey.Index, "__all_namespaces/"+key.String())
		if err != nil {
			return nil, false
		}
		tokens := make([]*tokensv1alpha1.APIToken, 0, len(objs))
		for _, o := range objs {
			tok, ok := o.(*tokensv1alpha1.APIToken)
			if !ok {
				return nil, false
			}
			tokens = append(tokens, tok)
		}
		return tokens, true
	}
}
