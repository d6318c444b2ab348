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

func (c *limitedClient) acquire(op string) (func(), error) {
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	default:
		return nil, newBusyError(op)
	}
}

func (c *limitedClient) Ping(ctx context.Context) error {
	release, err := c.acquire("ping")
	if err != nil {
		return err
	}
	defer release()
	return c.inner.Ping(ctx)
}

func (c *limitedClient) CreateToken(ctx context.Context, key string, req backend.CreateRequest) (*backend.CreatedToken, error) {
	release, err := c.acquire("create")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.CreateToken(ctx, key, req)
}

func (c *limitedClient) GetToken(ctx context.Context, id string) (*backend.Token, error) {
	release, err := c.acquire("get")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.GetToken(ctx, id)
}

func (c *limitedClient) ListTokens(ctx context.Context, opts backend.ListOptions) ([]backend.Token, error) {
	release, err := c.acquire("list")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.ListTokens(ctx, opts)
}

func (c *limitedClient) DeactivateToken(ctx context.Context, id string) (*backend.Token, error) {
	release, err := c.acquire("deactivate")
	if err != nil {
		return nil, err
	}
	defer release()
	return c.inner.DeactivateToken(ctx, id)
}

func (c *limitedClient) Self(ctx context.Context) (*backend.Token, error) {
	release, err := c.acquire("self")
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
