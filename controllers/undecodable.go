package controllers

import (
	"context"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

// UndecodableReporter tells the owner of an object that does not decode, which the informers
// leave out so that one such object cannot stop the operator for everyone else: a Warning
// Event on the object, an error log line and a counter. Each version of an object is
// reported once (a relist meets it again).
type UndecodableReporter struct {
	recorder events.EventRecorder
	log      logr.Logger
	cancel   func()

	mu   sync.Mutex
	seen map[string]bool
}

// NewUndecodableReporter subscribes to the decoders at once: the caches' first LIST comes
// before the manager starts its other runnables. Start ends the subscription with the manager.
func NewUndecodableReporter(recorder events.EventRecorder, log logr.Logger) *UndecodableReporter {
	r := &UndecodableReporter{recorder: recorder, log: log}
	r.cancel = tokensv1alpha1.OnUndecodable(r.report)
	return r
}

// maxUndecodableSeen bounds the memory of reported versions; past it, it starts afresh.
const maxUndecodableSeen = 1024

// Start waits for the manager to stop, then unsubscribes (a manager Runnable).
func (r *UndecodableReporter) Start(ctx context.Context) error {
	defer r.cancel()
	<-ctx.Done()
	return nil
}

// NeedLeaderElection is false: every replica's caches decode, and each reports what it met.
func (r *UndecodableReporter) NeedLeaderElection() bool { return false }

func (r *UndecodableReporter) report(u tokensv1alpha1.Undecodable) {
	key := u.Kind + "/" + u.Namespace + "/" + u.Name + "/" + string(u.UID) + "/" + u.ResourceVersion
	r.mu.Lock()
	if r.seen == nil || len(r.seen) >= maxUndecodableSeen {
		r.seen = map[string]bool{}
	}
	first := !r.seen[key]
	r.seen[key] = true
	r.mu.Unlock()
	if !first {
		return
	}
	metrics.UndecodableObjects.WithLabelValues(u.Kind).Inc()
	r.log.Error(u.Err, "Left an object that does not decode out of the cache; it is not managed until it is fixed",
		"kind", u.Kind, "namespace", u.Namespace, "name", u.Name, "uid", u.UID, "resourceVersion", u.ResourceVersion)
	if r.recorder == nil || u.Name == "" || u.UID == "" {
		return
	}
	ref := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: u.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: u.Namespace, Name: u.Name, UID: u.UID, ResourceVersion: u.ResourceVersion},
	}
	r.recorder.Eventf(ref, nil, corev1.EventTypeWarning, tokensv1alpha1.EventUndecodable, tokensv1alpha1.EventUndecodable,
		"%s", fmt.Sprintf("The operator cannot read this %s as stored (%v), so it does nothing for it until it is fixed. Correct the field (kubectl edit), or delete and re-create the object.", u.Kind, u.Err))
}
