package registry

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

// ErrBackendBusy is what a registry client returns at once, without calling the backend,
// when the operator already has the backend's cap of requests in flight to it. It is the
// bulkhead of finding 8: a backend that hangs holds a few workers, not all of them.
var ErrBackendBusy = errors.New("too many requests in flight to this backend")

// IsBackendBusy reports an error from the in-flight cap: the caller should requeue after a
// short delay (BackendBusyRetryAfter does it), report no outage and change no condition.
func IsBackendBusy(err error) bool { return errors.Is(err, ErrBackendBusy) }

// busyError is ErrBackendBusy dressed as the backend's own 429 with a short Retry-After, so
// callers that know only backend errors (the inventory, the delete path) also retry soon
// without reporting an outage.
type busyError struct{ be *backend.Error }

func (e *busyError) Error() string   { return e.be.Error() }
func (e *busyError) Unwrap() []error { return []error{ErrBackendBusy, e.be} }

func newBusyError(op string) error {
	return &busyError{be: &backend.Error{
		Op: op, Kind: backend.KindTransient, StatusCode: http.StatusTooManyRequests,
		Message: ErrBackendBusy.Error() + " (operator-side limit)", RetryAfter: BackendBusyRetryAfter(),
	}}
}

// BackendBusyRetryAfter is how long a pass refused by the in-flight cap waits: 200 ms to
// 1 s, spread so that the refused tokens do not all come back in the same instant.
func BackendBusyRetryAfter() time.Duration {
	return 200*time.Millisecond + rand.N(800*time.Millisecond)
}

// backendSlots is one backend's in-flight cap: a semaphore of slots, and the APITokens whose
// pass it refused, woken one per slot it frees. A refused token then comes back when a slot
// is free instead of polling for one: with 16 workers and 4 slots, polling every 200 ms to
// 1 s made 24 passes per token in a burst of 5,000 issuances, each a full read of the token,
// its Secret and its backend.
type backendSlots struct {
	sem  chan struct{}
	wake chan<- event.GenericEvent
	// key names the backend in apitoken_backend_slot_waits_total (zero: not counted).
	key backendkey.Key

	mu sync.Mutex
	// waiting is the refused APITokens in the order refused; queued, the set of them.
	waiting []types.NamespacedName
	queued  map[types.NamespacedName]bool
	// firsts is how many of waiting, at its head, were put first in line.
	firsts   int
	retrying bool
}

func newBackendSlots(n int, wake chan<- event.GenericEvent) *backendSlots {
	return &backendSlots{sem: make(chan struct{}, n), wake: wake, queued: map[types.NamespacedName]bool{}}
}

func (s *backendSlots) tryAcquire() bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

// release frees a slot and wakes the first waiting APIToken.
func (s *backendSlots) release() {
	<-s.sem
	s.wakeOne()
}

// wait records tok as refused; it is woken when a slot frees, or at once if one is free
// already (released between the refusal and now). With first, tok goes ahead of the others
// (after any other first ones): a pass that must end a transient state the oracle counts,
// such as a create whose outcome is unknown, does not wait behind a burst of new issuances.
func (s *backendSlots) wait(tok types.NamespacedName, first bool) {
	s.mu.Lock()
	switch {
	case first && s.queued[tok]:
		// Already in line: move it up.
		i := slices.Index(s.waiting, tok)
		s.waiting = slices.Insert(slices.Delete(s.waiting, i, i+1), min(s.firsts, i), tok)
		if s.firsts <= i {
			s.firsts++
		}
	case first:
		s.queued[tok] = true
		s.waiting = slices.Insert(s.waiting, s.firsts, tok)
		s.firsts++
	case !s.queued[tok]:
		s.queued[tok] = true
		s.waiting = append(s.waiting, tok)
	}
	s.mu.Unlock()
	if s.key != (backendkey.Key{}) {
		metrics.BackendSlotWaits.WithLabelValues(string(s.key.Kind), s.key.Namespace, s.key.Name, strconv.FormatBool(first)).Inc()
	}
	if len(s.sem) < cap(s.sem) {
		s.wakeOne()
	}
}

// forgetSlotWaits drops a deleted backend's series.
func forgetSlotWaits(key backendkey.Key) {
	for _, first := range []string{"false", "true"} {
		metrics.BackendSlotWaits.DeleteLabelValues(string(key.Kind), key.Namespace, key.Name, first)
	}
}

// wakeOne hands the first waiting APIToken to the controller. The send never blocks a
// worker: when the channel is full the token stays first in line, and a retry wakes it
// shortly, so no refused token is ever forgotten.
func (s *backendSlots) wakeOne() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) == 0 {
		return
	}
	tok := s.waiting[0]
	select {
	case s.wake <- event.GenericEvent{Object: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: tok.Namespace, Name: tok.Name}}}:
		s.waiting[0] = types.NamespacedName{}
		s.waiting = s.waiting[1:]
		s.firsts = max(s.firsts-1, 0)
		delete(s.queued, tok)
		if len(s.waiting) == 0 {
			// A burst left a long queue behind: neither a slice's array nor a map shrinks,
			// so both start over (at N=20000 they held 3.5 MiB after the burst).
			s.waiting, s.queued = nil, map[types.NamespacedName]bool{}
		}
	default:
		if !s.retrying {
			s.retrying = true
			time.AfterFunc(wakeRetry, func() {
				s.mu.Lock()
				s.retrying = false
				s.mu.Unlock()
				s.wakeOne()
			})
		}
	}
}

// wakeRetry is how soon a wake that found the controller's channel full is tried again.
const wakeRetry = 100 * time.Millisecond

// waiters is how many APITokens wait for a slot.
func (s *backendSlots) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// limitedClient holds one slot of its backend's semaphore per call. It is the port, and
// passes the driver's optional abilities (Claimer, Identifier) through.
type limitedClient struct {
	inner backend.Driver
	slots *backendSlots
}

var (
	_ backend.Endpointer = (*limitedClient)(nil)
	_ backend.Driver     = (*limitedClient)(nil)
	_ backend.Claimer    = (*limitedClient)(nil)
	_ backend.Identifier = (*limitedClient)(nil)
)

// acquire takes a slot for one call or, within a pass (WithBackendPass), for the rest of
// the pass; it refuses at once when none is free.
func (c *limitedClient) acquire(ctx context.Context, op string) (func(), error) {
	if p, ok := ctx.Value(passKey{}).(*backendPass); ok {
		return p.acquire(c.slots, op)
	}
	if c.slots.tryAcquire() {
		return c.slots.release, nil
	}
	return nil, newBusyError(op)
}

type passKey struct{}

// backendPass is the slots one reconcile pass holds, one per capped backend it called, and
// the backend whose cap refused it, if one did.
type backendPass struct {
	mu      sync.Mutex
	held    []*backendSlots
	refused *backendSlots
}

// WithBackendPass marks ctx as one reconcile pass. Its first call to a capped backend takes
// one of the backend's slots and keeps it until end is called, so the cap counts workers (a
// backend holds at most its cap of them), and a pass that got going is never refused halfway,
// for example between a create and the sweep after it: only its first call can be refused,
// before anything happened on the backend.
func WithBackendPass(ctx context.Context) (_ context.Context, end func()) {
	p := &backendPass{}
	return context.WithValue(ctx, passKey{}, p), p.end
}

func (p *backendPass) acquire(slots *backendSlots, op string) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.held {
		if s == slots {
			return func() {}, nil
		}
	}
	if slots.tryAcquire() {
		p.held = append(p.held, slots)
		return func() {}, nil
	}
	p.refused = slots
	return nil, newBusyError(op)
}

func (p *backendPass) end() {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, s := range held {
		s.release()
	}
}

// WaitForSlot records that the pass of ctx (WithBackendPass) was refused by a backend's
// in-flight cap, so that tok is reconciled again when that backend frees a slot (first: ahead
// of the tokens that are not first). It reports whether it did: false when no cap refused
// the pass.
func WaitForSlot(ctx context.Context, tok types.NamespacedName, first bool) bool {
	p, ok := ctx.Value(passKey{}).(*backendPass)
	if !ok {
		return false
	}
	p.mu.Lock()
	refused := p.refused
	p.mu.Unlock()
	if refused == nil {
		return false
	}
	refused.wait(tok, first)
	return true
}

// limited runs call holding a slot of the backend for op.
func limited[T any](ctx context.Context, c *limitedClient, op string, call func() (T, error)) (T, error) {
	release, err := c.acquire(ctx, op)
	if err != nil {
		var zero T
		return zero, err
	}
	defer release()
	return call()
}

func (c *limitedClient) Create(ctx context.Context, owner backend.Owner, spec backend.TokenSpec) (*backend.CreatedToken, error) {
	return limited(ctx, c, "create", func() (*backend.CreatedToken, error) { return c.inner.Create(ctx, owner, spec) })
}

func (c *limitedClient) Get(ctx context.Context, id string) (*backend.Token, error) {
	return limited(ctx, c, "get", func() (*backend.Token, error) { return c.inner.Get(ctx, id) })
}

func (c *limitedClient) List(ctx context.Context, opts backend.ListOptions) ([]backend.Token, error) {
	return limited(ctx, c, "list", func() ([]backend.Token, error) { return c.inner.List(ctx, opts) })
}

func (c *limitedClient) Deactivate(ctx context.Context, id string) (*backend.Token, error) {
	return limited(ctx, c, "deactivate", func() (*backend.Token, error) { return c.inner.Deactivate(ctx, id) })
}

func (c *limitedClient) Self(ctx context.Context) (*backend.Token, error) {
	return limited(ctx, c, "self", func() (*backend.Token, error) { return c.inner.Self(ctx) })
}

func (c *limitedClient) Capabilities(ctx context.Context) (backend.Capabilities, error) {
	return limited(ctx, c, "ping", func() (backend.Capabilities, error) { return c.inner.Capabilities(ctx) })
}

// errNotOffered: the driver in use lacks an optional ability (its Capabilities say so first).
var errNotOffered = errors.New("the backend's driver does not offer this")

// Endpoint implements backend.Endpointer when the driver does; "" otherwise.
func (c *limitedClient) Endpoint() string {
	if e, ok := c.inner.(backend.Endpointer); ok {
		return e.Endpoint()
	}
	return ""
}

// Claim implements backend.Claimer when the driver does.
func (c *limitedClient) Claim(ctx context.Context, id string, owner backend.Owner) (*backend.Token, error) {
	cl, ok := c.inner.(backend.Claimer)
	if !ok {
		return nil, errNotOffered
	}
	return limited(ctx, c, "claim", func() (*backend.Token, error) { return cl.Claim(ctx, id, owner) })
}

// Identify implements backend.Identifier when the driver does.
func (c *limitedClient) Identify(ctx context.Context, value backend.SecretValue) (*backend.Token, error) {
	id, ok := c.inner.(backend.Identifier)
	if !ok {
		return nil, errNotOffered
	}
	return limited(ctx, c, "self", func() (*backend.Token, error) { return id.Identify(ctx, value) })
}
