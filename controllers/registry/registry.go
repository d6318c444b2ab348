package registry

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// registeredBackend is a backend whose credential answered GET /ping.
type registeredBackend struct {
	// client is the checked client; limited wraps it with the backend's in-flight cap and is
	// what Get hands out.
	client  backend.Driver
	limited backend.Driver
	url     string
	// fingerprint changes when the URL, CA bundle or credential changes.
	fingerprint string
	// features are the protocol extensions it offers.
	features backend.Capabilities
	// checkedAt and self are the last successful check, which a check soon after reuses
	// (RecentCheck); zero after an outage report, so that the re-check asks the backend.
	checkedAt time.Time
	self      *backend.Token
}

// Registry holds a checked client for every Ready backend. The backend controllers
// fill it after a successful ping; the APIToken controller and the inventory read it. When
// a backend (re)appears, the registry emits an event so that the APITokens waiting for it
// are reconciled at once (watch, not poll).
type Registry struct {
	mu       sync.RWMutex
	backends map[backendkey.Key]*registeredBackend
	events   chan event.GenericEvent
	// recheck asks the backend controllers to check a backend now, per kind.
	recheck map[tokensv1alpha1.BackendKind]chan event.GenericEvent
	// maxInFlight caps the requests in flight to one backend (0: no cap); slots holds each
	// backend's semaphore, kept across re-registrations so calls still running count.
	maxInFlight int
	slots       map[backendkey.Key]*backendSlots
	// slotFreed carries the APITokens woken by a freed slot of the cap (see backendSlots).
	slotFreed chan event.GenericEvent
}

// Option configures New.
type Option func(*Registry)

// WithMaxInFlightPerBackend caps the requests the operator has in flight to one backend. A
// call beyond the cap fails at once with ErrBackendBusy instead of waiting, so one slow or
// hanging backend holds at most n reconcile workers (a bulkhead); n <= 0 means no cap.
func WithMaxInFlightPerBackend(n int) Option {
	return func(r *Registry) { r.maxInFlight = n }
}

// New returns an empty registry.
func New(opts ...Option) *Registry {
	r := &Registry{
		backends: map[backendkey.Key]*registeredBackend{},
		slots:    map[backendkey.Key]*backendSlots{},
		// A wake that finds it full is retried (backendSlots.wakeOne), not lost.
		slotFreed: make(chan event.GenericEvent, 4096),
		events:    make(chan event.GenericEvent, 1024),
		recheck: map[tokensv1alpha1.BackendKind]chan event.GenericEvent{
			tokensv1alpha1.BackendKindStatusBackend:        make(chan event.GenericEvent, 1024),
			tokensv1alpha1.BackendKindClusterStatusBackend: make(chan event.GenericEvent, 1024),
		},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Get returns the client of a Ready backend, wrapped so that a call beyond the backend's
// in-flight cap fails at once with an error for which IsBackendBusy is true.
func (r *Registry) Get(key backendkey.Key) (backend.Driver, string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, ok := r.backends[key]
	if !ok {
		return nil, "", false
	}
	return b.limited, b.url, true
}

// CheckedClient returns the unwrapped client and its fingerprint, for the backend check:
// the check has its own bulkhead and must not be refused by the tokens' cap.
func (r *Registry) CheckedClient(key backendkey.Key) (backend.Driver, string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, ok := r.backends[key]
	if !ok {
		return nil, "", false
	}
	return b.client, b.fingerprint, true
}

// Fingerprint returns the fingerprint a backend was registered with.
func (r *Registry) Fingerprint(key backendkey.Key) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if b, ok := r.backends[key]; ok {
		return b.fingerprint
	}
	return ""
}

// Keys lists the registered backends.
func (r *Registry) Keys() []backendkey.Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	keys := make([]backendkey.Key, 0, len(r.backends))
	for k := range r.backends {
		keys = append(keys, k)
	}
	return keys
}

// Set registers a checked client. obj is the backend object, used for the event.
func (r *Registry) Set(ctx context.Context, key backendkey.Key, obj client.Object, c backend.Driver, url, fingerprint string, features ...backend.Capability) {
	r.mu.Lock()
	old, had := r.backends[key]
	limited := c
	if r.maxInFlight > 0 {
		if r.slots[key] == nil {
			r.slots[key] = newBackendSlots(r.maxInFlight, r.slotFreed)
			r.slots[key].key = key
		}
		limited = &limitedClient{inner: c, slots: r.slots[key]}
	}
	// The features are set together with the client: a token woken by this registration
	// must see them, or its review would flap between "no usage" and a verdict.
	b := &registeredBackend{client: c, limited: limited, url: url, fingerprint: fingerprint, features: features}
	if had && old.fingerprint == fingerprint {
		b.checkedAt, b.self = old.checkedAt, old.self
	}
	r.backends[key] = b
	r.mu.Unlock()
	if !had || old.fingerprint != fingerprint {
		r.notify(ctx, obj)
	}
}

// RecordCheck remembers when a registered backend's check succeeded, and the credential's
// token it read.
func (r *Registry) RecordCheck(key backendkey.Key, self *backend.Token, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backends[key]; ok {
		b.checkedAt, b.self = at, self
	}
}

// RecentCheck returns the last successful check of a backend registered with fingerprint,
// when it is less than within old and no outage was reported since.
func (r *Registry) RecentCheck(key backendkey.Key, fingerprint string, now time.Time, within time.Duration) (*backend.Token, backend.Capabilities, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, ok := r.backends[key]
	if !ok || b.fingerprint != fingerprint || b.self == nil || b.checkedAt.IsZero() || now.Sub(b.checkedAt) >= within {
		return nil, nil, false
	}
	return b.self, b.features, true
}

// SetFeatures records the protocol extensions a registered backend offers.
func (r *Registry) SetFeatures(key backendkey.Key, f backend.Capabilities) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backends[key]; ok {
		b.features = f
	}
}

// Features returns the protocol extensions of a registered backend.
func (r *Registry) Features(key backendkey.Key) backend.Capabilities {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if b, ok := r.backends[key]; ok {
		return b.features
	}
	return nil
}

// Remove unregisters a backend that is no longer Ready.
func (r *Registry) Remove(key backendkey.Key) {
	r.mu.Lock()
	delete(r.backends, key)
	r.mu.Unlock()
}

// Forget drops what the registry keeps of a deleted backend: its in-flight slots (a pass
// still holding one releases it into the dropped set) and their metric series. Without it, a
// tenant creating and deleting backends under new names would grow the registry for good.
func (r *Registry) Forget(key backendkey.Key) {
	r.mu.Lock()
	delete(r.backends, key)
	if s := r.slots[key]; s != nil && s.waiters() == 0 {
		// A waiter keeps them: it must still be woken when a slot frees.
		delete(r.slots, key)
	}
	r.mu.Unlock()
	forgetSlotWaits(key)
}

func (r *Registry) notify(ctx context.Context, obj client.Object) {
	select {
	case r.events <- event.GenericEvent{Object: obj}:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		// The APIToken controller is not consuming (not started yet or stopped); the
		// initial list at its start covers the tokens anyway.
	}
}

// Events is the channel of backend (re)registrations, a source for the APIToken controller.
func (r *Registry) Events() <-chan event.GenericEvent { return r.events }

// SlotFreed is the channel of APITokens to reconcile because a slot they waited for is free,
// a source for the APIToken controller.
func (r *Registry) SlotFreed() <-chan event.GenericEvent { return r.slotFreed }

// ReportOutage is called when a call to a registered backend failed as if it were down. The
// backend's controller checks it again at once: if it is down it is unregistered (its tokens
// wait quietly instead of each retrying), and when a later check succeeds it is registered
// again, which wakes all its tokens at once instead of each waiting out its own backoff.
func (r *Registry) ReportOutage(key backendkey.Key) {
	r.mu.Lock()
	if b, ok := r.backends[key]; ok {
		b.checkedAt = time.Time{} // the re-check asks the backend, whenever it last did
	}
	r.mu.Unlock()
	var obj client.Object
	switch key.Kind {
	case tokensv1alpha1.BackendKindStatusBackend:
		obj = &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	default:
		obj = &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}
	}
	select {
	case r.recheck[key.Kind] <- event.GenericEvent{Object: obj}:
	default: // a re-check is already queued
	}
}

// Rechecks is the channel of re-check requests for one kind, a source for its controller.
func (r *Registry) Rechecks(kind tokensv1alpha1.BackendKind) <-chan event.GenericEvent {
	return r.recheck[kind]
}
