package apitoken

import (
	"sync"

	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
)

// tokenHolders maps "backendKey#tokenID" to the APITokens whose status names that token as
// current, so that a backend that answers a create with a token id another APIToken already
// holds is caught. It is fed by the APIToken informer's events. A field index of the cache
// would do the same at several times the memory: controller-runtime keeps each value under
// the namespace and under all namespaces, as a set of its own (a Go map) each time, so a
// unique value per APIToken costs two maps per APIToken.
type tokenHolders struct {
	mu sync.RWMutex
	m  map[string][]types.UID
}

var _ toolscache.ResourceEventHandler = (*tokenHolders)(nil)

// tokenRef is the key of an APIToken's current token, "" when it has none.
func tokenRef(obj any) (string, types.UID) {
	tok := inventory.AsAPIToken(obj)
	if tok == nil || tok.Status.TokenID == "" {
		return "", ""
	}
	return backendkey.Current(tok).String() + "#" + tok.Status.TokenID, tok.UID
}

func (h *tokenHolders) OnAdd(obj any, _ bool) { h.move(nil, obj) }
func (h *tokenHolders) OnUpdate(old, obj any) { h.move(old, obj) }
func (h *tokenHolders) OnDelete(obj any)      { h.move(obj, nil) }

// move takes an APIToken off the key of old and puts it on the key of obj.
func (h *tokenHolders) move(old, obj any) {
	oldKey, oldUID := tokenRef(old)
	newKey, newUID := tokenRef(obj)
	if oldKey == newKey && oldUID == newUID {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if oldKey != "" {
		uids := h.m[oldKey]
		for i, u := range uids {
			if u == oldUID {
				uids = append(uids[:i:i], uids[i+1:]...)
				break
			}
		}
		if len(uids) == 0 {
			delete(h.m, oldKey)
		} else {
			h.m[oldKey] = uids
		}
	}
	if newKey != "" {
		if h.m == nil {
			h.m = map[string][]types.UID{}
		}
		h.m[newKey] = append(h.m[newKey], newUID)
	}
}

// heldByOther reports whether an APIToken other than uid holds token id on the backend key.
func (h *tokenHolders) heldByOther(key backendkey.Key, id string, uid types.UID) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, u := range h.m[key.String()+"#"+id] {
		if u != uid {
			return true
		}
	}
	return false
}
