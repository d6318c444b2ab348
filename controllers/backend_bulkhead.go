package controllers

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
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

// limitedClient holds one slot of its backend's semaphore per call.
type limitedClient struct {
	inner backend.Client
	slots chan struct{}
}

var _ backend.Client = (*limitedClient)(nil)

// acquire takes a slot for one call or, within a pass (WithBackendPass), for the rest of
// the pass; it refuses at once when none is free.
func (c *limitedClient) acquire(ctx context.Context, op string) (func(), error) {
	if p, ok := ctx.Value(passKey{}).(*backendPass); ok {
		return p.acquire(c.slots, op)
	}
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	default:
		return nil, newBusyError(op)
	}
}

type passKey struct{}

// backendPass is the slots one reconcile pass holds, one per capped backend it called.
type backendPass struct {
	mu   sync.Mutex
	held []chan struct{}
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

func (p *backendPass) acquire(slots chan struct{}, op string) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.held {
		if s == slots {
			return func() {}, nil
		}
	}
	select {
	case slots <- struct{}{}:
		p.held = append(p.held, slots)
		return func() {}, nil
	default:
		return nil, newBusyError(op)
	}
}

func (p *backendPass) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.held {
		<-s
	}
	p.held = nil
}

func (c *limitedClient) Ping(ctx context.Context) error {
	release, err := c.acquire(ctx, "ping")
	if err != nil {
		return err
	}
	defer release()
	return c.inner.Ping(ctx)
}

func (c *limitedClient) CreateToken(ctx context.Context, key string, req backend.CreateRequest) (*backend.CreatedToken, error) {
	release, err := c.acquire(ctx, "create")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.CreateToken(ctx, key, req)
}

func (c *limitedClient) GetToken(ctx context.Context, id string) (*backend.Token, error) {
	release, err := c.acquire(ctx, "get")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.GetToken(ctx, id)
}

func (c *limitedClient) ListTokens(ctx context.Context, opts backend.ListOptions) ([]backend.Token, error) {
	release, err := c.acquire(ctx, "list")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.ListTokens(ctx, opts)
}

func (c *limitedClient) DeactivateToken(ctx context.Context, id string) (*backend.Token, error) {
	release, err := c.acquire(ctx, "deactivate")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.DeactivateToken(ctx, id)
}

func (c *limitedClient) Self(ctx context.Context) (*backend.Token, error) {
	release, err := c.acquire(ctx, "self")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.Self(ctx)
}

// maxChecksPerNamespace bounds the backend checks running at once for the StatusBackends of
// one namespace, so a tenant's hanging backends hold at most this many backend workers.
// ClusterStatusBackends, written by cluster admins, are not bounded.
const maxChecksPerNamespace = 2

// tenantBusyRequeue is how soon a check refused by the per-namespace bound is tried again.
const tenantBusyRequeue = time.Second

// checkSlots counts the backend checks in flight per namespace.
type checkSlots struct {
	mu      sync.Mutex
	running map[string]int
}

// acquire takes a slot for a check of key; ok is false when its namespace has none free.
func (s *checkSlots) acquire(key BackendKey) (release func(), ok bool) {
	if key.Namespace == "" {
		return func() {}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]int{}
	}
	if s.running[key.Namespace] >= maxChecksPerNamespace {
		return nil, false
	}
	s.running[key.Namespace]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.running[key.Namespace]--
	}, true
}
