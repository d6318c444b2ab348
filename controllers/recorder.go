package controllers

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// oneOffRecorder writes Normal Events straight to the API server and hands every other Event
// to the manager's recorder. client-go's events broadcaster keeps each Event it emitted for 6
// to 12 minutes, to fold a repeat of the same reason on the same object into a series; a burst
// of N issuances then holds N Issued Events (about 1 KiB each) that never repeat. The Normal
// Events (Issued, Replaced, Expired, Deactivated, Revoked, ...) are one per change of a token;
// the Warnings (Failed on every retry) are the ones that repeat, and keep their series.
//
// The Events written here are those client-go would write for a first occurrence: the same
// name scheme, regarding and related references, reporting controller and instance.
type oneOffRecorder struct {
	series     events.EventRecorder
	sink       eventsv1client.EventsV1Interface
	scheme     *runtime.Scheme
	controller string
	instance   string
	queue      chan *eventsv1.Event
}

// maxQueuedEvents bounds the Events waiting to be written; past it an Event is dropped, as
// client-go's broadcaster drops past its own 1000.
const maxQueuedEvents = 1000

// eventWriters is how many Events are written at once.
const eventWriters = 4

func newOneOffRecorder(series events.EventRecorder, sink eventsv1client.EventsV1Interface, scheme *runtime.Scheme, controller string) *oneOffRecorder {
	host, _ := os.Hostname()
	return &oneOffRecorder{series: series, sink: sink, scheme: scheme, controller: controller,
		instance: controller + "-" + host, queue: make(chan *eventsv1.Event, maxQueuedEvents)}
}

// Eventf implements events.EventRecorder.
func (r *oneOffRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if eventtype != corev1.EventTypeNormal {
		r.series.Eventf(regarding, related, eventtype, reason, action, note, args...)
		return
	}
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		return
	}
	var relatedRef *corev1.ObjectReference
	if related != nil {
		if relatedRef, err = reference.GetReference(r.scheme, related); err != nil {
			return
		}
	}
	now := time.Now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%v.%x", ref.Name, now.UnixNano()), Namespace: ns},
		EventTime:           metav1.MicroTime{Time: now},
		ReportingController: r.controller,
		ReportingInstance:   r.instance,
		Action:              action,
		Reason:              reason,
		Regarding:           *ref,
		Related:             relatedRef,
		Note:                fmt.Sprintf(note, args...),
		Type:                eventtype,
	}
	select {
	case r.queue <- ev:
	default:
	}
}

// Start writes the queued Events until ctx ends (a manager Runnable).
func (r *oneOffRecorder) Start(ctx context.Context) error {
	done := make(chan struct{})
	for range eventWriters {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-r.queue:
					r.write(ctx, ev)
				}
			}
		}()
	}
	for range eventWriters {
		<-done
	}
	return nil
}

// NeedLeaderElection: it writes only what the reconcilers, which run on the leader, queue.
func (r *oneOffRecorder) NeedLeaderElection() bool { return false }

// write creates ev, retrying a few times on errors that may pass (client-go retries 12
// times, 10 s apart; an Event is not worth holding that long).
func (r *oneOffRecorder) write(ctx context.Context, ev *eventsv1.Event) {
	for attempt := 0; attempt < 3; attempt++ {
		_, err := r.sink.Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
		switch {
		case err == nil, apierrors.IsAlreadyExists(err), apierrors.IsInvalid(err), apierrors.IsNotFound(err), apierrors.IsForbidden(err):
			if err != nil && !apierrors.IsAlreadyExists(err) {
				logf.FromContext(ctx).Info("Dropped an Event", "reason", ev.Reason, "regarding", ev.Regarding.Name, "error", err.Error())
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
}
