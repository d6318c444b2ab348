package v1alpha1

import (
	stdjson "encoding/json"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/json"
)

// Defence in depth for the informers. The schema admits only what these Go types decode, but a
// CRD upgrade, a CRD edited by hand or a direct etcd write can still bring in an object that
// does not decode. client-go decodes a LIST as one document, so one such object would fail
// the whole list: the operator's informers would never sync, and no APIToken anywhere would be
// issued, rotated, expired or finalized. The lists below decode item by item when the whole
// list does not decode, leave out the items that fail, and tell the subscribers which ones
// (a watch event that does not decode ends the watch, and the relist that follows comes here).

// Undecodable is an object that was left out of a list because it did not decode.
// +kubebuilder:object:generate=false
type Undecodable struct {
	// Kind is the object's kind, e.g. APIToken.
	Kind string
	// Namespace, Name, UID and ResourceVersion come from its metadata, when that decodes.
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	// Err says why it did not decode, cut to a few hundred bytes.
	Err error
}

var undecodable struct {
	mu   sync.Mutex
	next int
	subs map[int]func(Undecodable)
}

// OnUndecodable registers f to be told, from the decoding goroutine, about every list item left
// out because it did not decode; the returned func unregisters it. f must not block.
func OnUndecodable(f func(Undecodable)) (cancel func()) {
	undecodable.mu.Lock()
	defer undecodable.mu.Unlock()
	if undecodable.subs == nil {
		undecodable.subs = map[int]func(Undecodable){}
	}
	id := undecodable.next
	undecodable.next++
	undecodable.subs[id] = f
	return func() {
		undecodable.mu.Lock()
		defer undecodable.mu.Unlock()
		delete(undecodable.subs, id)
	}
}

func reportUndecodable(u Undecodable) {
	undecodable.mu.Lock()
	subs := make([]func(Undecodable), 0, len(undecodable.subs))
	for _, f := range undecodable.subs {
		subs = append(subs, f)
	}
	undecodable.mu.Unlock()
	for _, f := range subs {
		f(u)
	}
}

// maxErrLen bounds the error a report carries: it may quote a field's value, which the
// object's writer chose.
const maxErrLen = 300

// decodeItems decodes the items of a list one by one into out, leaving out (and reporting) those
// that do not decode. It is the slow path: a list is first decoded whole.
func decodeItems[T any](kind string, data []byte, typ *metav1.TypeMeta, meta *metav1.ListMeta, out *[]T) error {
	var raw struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ListMeta      `json:"metadata"`
		Items           []stdjson.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*typ, *meta = raw.TypeMeta, raw.Metadata
	items := make([]T, 0, len(raw.Items))
	for _, item := range raw.Items {
		var v T
		if err := json.Unmarshal(item, &v); err != nil {
			u := Undecodable{Kind: kind, Err: shortError(err)}
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if json.Unmarshal(item, &m) == nil {
				u.Namespace, u.Name, u.UID, u.ResourceVersion = m.Metadata.Namespace, m.Metadata.Name, m.Metadata.UID, m.Metadata.ResourceVersion
			}
			reportUndecodable(u)
			continue
		}
		items = append(items, v)
	}
	*out = items
	return nil
}

func shortError(err error) error {
	msg := err.Error()
	if len(msg) > maxErrLen {
		msg = msg[:maxErrLen] + "..."
	}
	return fmt.Errorf("%s", msg)
}

// The list types decode whole first (the fast path, as before); only a list that fails is
// decoded again item by item.
//
// +kubebuilder:object:generate=false
type apiTokenListWhole APITokenList

// +kubebuilder:object:generate=false
type statusBackendListWhole StatusBackendList

// +kubebuilder:object:generate=false
type clusterStatusBackendListWhole ClusterStatusBackendList

// UnmarshalJSON decodes the list, leaving out the APITokens that do not decode (OnUndecodable).
func (l *APITokenList) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*apiTokenListWhole)(l)); err == nil {
		return nil
	}
	l.Items = nil
	return decodeItems("APIToken", data, &l.TypeMeta, &l.ListMeta, &l.Items)
}

// UnmarshalJSON decodes the list, leaving out the StatusBackends that do not decode.
func (l *StatusBackendList) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*statusBackendListWhole)(l)); err == nil {
		return nil
	}
	l.Items = nil
	return decodeItems("StatusBackend", data, &l.TypeMeta, &l.ListMeta, &l.Items)
}

// UnmarshalJSON decodes the list, leaving out the ClusterStatusBackends that do not decode.
func (l *ClusterStatusBackendList) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*clusterStatusBackendListWhole)(l)); err == nil {
		return nil
	}
	l.Items = nil
	return decodeItems("ClusterStatusBackend", data, &l.TypeMeta, &l.ListMeta, &l.Items)
}
