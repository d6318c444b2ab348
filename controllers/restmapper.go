package controllers

import (
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// memoMapper remembers the mappings it found. With --watch-namespaces the manager's cache is
// controller-runtime's multi-namespace cache, which asks the RESTMapper whether the kind is
// namespaced on every Get and List; controller-runtime's mapper answers that by walking
// every API group's mapper and building a no-match error for each one that does not know
// the kind. In the bench that was more than half of everything the manager allocated during
// the creation burst (8 GB in 150 s at N=5000, docs/performance.md). A kind's mapping does
// not change while its CRD exists, and only found mappings are kept, so a kind installed
// later is still looked up.
type memoMapper struct {
	meta.RESTMapper
	mu    sync.RWMutex
	found map[mappingKey]meta.RESTMapping
}

type mappingKey struct {
	gk      schema.GroupKind
	version string
}

// newMemoMapper is a ctrl.Options.MapperProvider: controller-runtime's mapper, memoized.
func newMemoMapper(c *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	m, err := apiutil.NewDynamicRESTMapper(c, httpClient)
	if err != nil {
		return nil, err
	}
	return &memoMapper{RESTMapper: m, found: map[mappingKey]meta.RESTMapping{}}, nil
}

// RESTMapping returns a copy of the remembered mapping when a single version is asked for
// (what the cache and the client ask), and asks the wrapped mapper otherwise.
func (m *memoMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if len(versions) != 1 {
		return m.RESTMapper.RESTMapping(gk, versions...)
	}
	k := mappingKey{gk: gk, version: versions[0]}
	m.mu.RLock()
	r, ok := m.found[k]
	m.mu.RUnlock()
	if ok {
		return &r, nil
	}
	res, err := m.RESTMapper.RESTMapping(gk, versions...)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.found[k] = *res
	m.mu.Unlock()
	return res, nil
}
