// Package servertest runs the reference status backend over real HTTP on
// loopback for tests: a temp data file, a bootstrapped admin token, a
// controllable clock, and restart on the same data file.
package servertest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver"
)

// Clock is a manual clock for WithClock: it only moves when told to.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts a manual clock at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time; pass c.Now to WithClock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Option customises Start.
type Option func(*config)

type config struct {
	clock      func() time.Time
	latency    time.Duration
	logger     *slog.Logger
	createHook func(context.Context)
	disabled   []string
}

// WithClock makes the server use clock for expiry, timestamps and idempotency.
func WithClock(clock func() time.Time) Option { return func(c *config) { c.clock = clock } }

// WithLatency adds an artificial delay to every request.
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithLogger sends request logs to l (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithCreateHook runs hook inside each token create while its Idempotency-Key
// is held, e.g. to block on a channel and observe the 409 in-flight answer.
func WithCreateHook(hook func(context.Context)) Option {
	return func(c *config) { c.createHook = hook }
}

// WithoutFeatures switches protocol extensions off (statusserver.FeatureUsage,
// FeatureClaim, FeatureUpdatedSince), to check behaviour without them.
func WithoutFeatures(names ...string) Option {
	return func(c *config) { c.disabled = append(c.disabled, names...) }
}

// Instance is a running reference server.
type Instance struct {
	// URL is the base URL, ending in /api/v3.
	URL string
	// AdminToken is the value of the full_access token with the admin role
	// bootstrapped at the first start: the only credential that manages tokens.
	AdminToken string
	// Server is the handler; its Stats count requests since the last (re)start.
	Server *statusserver.Server
	// Store is the open data store.
	Store *statusserver.Store
	// DataPath is the bbolt file, e.g. to check that no token value is stored.
	DataPath string

	cfg      config
	addr     string
	mu       sync.Mutex
	httpSrv  *http.Server
	serveErr chan error
	closed   bool
}

// Start runs a server on 127.0.0.1:0 with a fresh data file in tb.TempDir();
// it is closed by tb.Cleanup.
func Start(tb testing.TB, opts ...Option) *Instance {
	tb.Helper()
	in := &Instance{DataPath: filepath.Join(tb.TempDir(), "status-backend.db")}
	in.cfg.clock = time.Now
	in.cfg.logger = slog.New(slog.DiscardHandler)
	for _, o := range opts {
		o(&in.cfg)
	}
	store, err := statusserver.OpenStore(in.DataPath)
	if err != nil {
		tb.Fatalf("servertest: %v", err)
	}
	_, value, err := store.CreateAdminToken(statusserver.AdminTokenName, in.cfg.clock())
	if err != nil {
		_ = store.Close()
		tb.Fatalf("servertest: bootstrapping admin token: %v", err)
	}
	in.AdminToken = value
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = store.Close()
		tb.Fatalf("servertest: %v", err)
	}
	in.serve(store, ln)
	tb.Cleanup(in.Close)
	return in
}

func (in *Instance) serve(store *statusserver.Store, ln net.Listener) {
	in.Store = store
	in.Server = statusserver.New(statusserver.Options{
		Store:            store,
		Clock:            in.cfg.clock,
		Logger:           in.cfg.logger,
		Latency:          in.cfg.latency,
		CreateHook:       in.cfg.createHook,
		DisabledFeatures: in.cfg.disabled,
	})
	in.addr = ln.Addr().String()
	in.URL = "http://" + in.addr + statusserver.PathPrefix
	in.httpSrv = &http.Server{Handler: in.Server, ReadHeaderTimeout: 10 * time.Second}
	in.serveErr = make(chan error, 1)
	srv, errc := in.httpSrv, in.serveErr
	go func() { errc <- srv.Serve(ln) }()
	in.closed = false
}

// stop shuts the HTTP server down and closes the store.
func (in *Instance) stop() error {
	if in.closed {
		return nil
	}
	in.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := in.httpSrv.Shutdown(ctx)
	if serr := <-in.serveErr; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, in.Store.Close())
}

// Restart closes the server and store and reopens them on the same data file,
// on the same port if it is still free (otherwise URL changes). The new
// Server's Stats start from zero; the idempotency cache (memory only) is lost.
func (in *Instance) Restart(tb testing.TB) {
	tb.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.stop(); err != nil {
		tb.Fatalf("servertest: stopping: %v", err)
	}
	store, err := statusserver.OpenStore(in.DataPath)
	if err != nil {
		tb.Fatalf("servertest: reopening store: %v", err)
	}
	ln, err := net.Listen("tcp", in.addr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			_ = store.Close()
			tb.Fatalf("servertest: %v", err)
		}
	}
	in.serve(store, ln)
}

// Close stops the server and closes the store; calling it again is harmless.
func (in *Instance) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	// Errors at teardown cannot fail a finished test; the store flushes anyway.
	_ = in.stop()
}

// Client returns a protocol client authenticated with the admin token.
func (in *Instance) Client(tb testing.TB) *native.Client {
	tb.Helper()
	return in.ClientFor(tb, backend.SecretValue(in.AdminToken))
}

// ClientFor returns a protocol client authenticated with token.
func (in *Instance) ClientFor(tb testing.TB, token backend.SecretValue) *native.Client {
	tb.Helper()
	c, err := native.New(native.Options{BaseURL: in.URL, Token: token})
	if err != nil {
		tb.Fatalf("servertest: building client: %v", err)
	}
	return c
}

// IssueToken creates a token through the API with the admin token and returns it with its value.
func (in *Instance) IssueToken(tb testing.TB, req native.CreateRequest) *native.CreatedToken {
	tb.Helper()
	t, err := in.Client(tb).CreateToken(context.Background(), "", req)
	if err != nil {
		tb.Fatalf("servertest: issuing token: %v", err)
	}
	return t
}
