// Package statusserver is the reference status backend: a complete
// implementation of the protocol in shared/spec/backend-protocol.md on top of
// a bbolt store. It imports neither the operator's controllers nor its API
// types; it is a separate service the operator talks to over HTTP.
package statusserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// PathPrefix is where the API is mounted; base URLs end with it.
const PathPrefix = "/api/v3"

// DefaultMaxBodyBytes caps request bodies when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes int64 = 1 << 20

// Options configures New.
type Options struct {
	// Store holds tokens and boards; required. The caller closes it.
	Store *Store
	// Clock is the time source for expiry, timestamps and idempotency; default time.Now.
	Clock func() time.Time
	// Logger receives one structured line per request (never headers or bodies);
	// default slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps request bodies (413 beyond it); default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Latency is an artificial delay added to every request, for benchmarks
	// and timeout tests.
	Latency time.Duration
	// CreateHook, when set, runs while a create holds its Idempotency-Key and
	// before the token is stored. Tests use it to hold the in-flight window
	// open deterministically.
	CreateHook func(ctx context.Context)
}

// Stats are request counters since the server was built, for tests that
// assert how much the operator talked to the backend.
type Stats struct {
	// Requests counts every request, authenticated or not.
	Requests int64
	// WriteRequests counts authenticated requests with a method other than
	// GET, HEAD or OPTIONS, including ones refused as read-only.
	WriteRequests int64
	// TokensCreated counts new tokens (idempotent replays excluded).
	TokensCreated int64
	// Replays counts creates answered from the idempotency cache.
	Replays int64
	// Deactivations counts successful deactivate requests, repeats included.
	Deactivations int64
	// ListCalls counts GET /api_tokens.
	ListCalls int64
	// GetCalls counts GET /api_tokens/{id}.
	GetCalls int64
	// SelfCalls counts GET /api_tokens/self.
	SelfCalls int64
	// PingCalls counts GET /ping.
	PingCalls int64
	// Unauthorized counts 401 replies.
	Unauthorized int64
	// Forbidden counts 403 replies.
	Forbidden int64
}

type counters struct {
	requests, writeRequests, tokensCreated, replays, deactivations     atomic.Int64
	listCalls, getCalls, selfCalls, pingCalls, unauthorized, forbidden atomic.Int64
}

// Server serves the protocol. It is an http.Handler expecting full paths
// (with PathPrefix).
type Server struct {
	store    *Store
	clock    func() time.Time
	log      *slog.Logger
	maxBody  int64
	latency  time.Duration
	hook     func(ctx context.Context)
	idem     idempotencyCache
	counters counters
}

// New builds a server over o.Store.
func New(o Options) *Server {
	s := &Server{
		store:   o.Store,
		clock:   o.Clock,
		log:     o.Logger,
		maxBody: o.MaxBodyBytes,
		latency: o.Latency,
		hook:    o.CreateHook,
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	return s
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	return Stats{
		Requests:      c.requests.Load(),
		WriteRequests: c.writeRequests.Load(),
		TokensCreated: c.tokensCreated.Load(),
		Replays:       c.replays.Load(),
		Deactivations: c.deactivations.Load(),
		ListCalls:     c.listCalls.Load(),
		GetCalls:      c.getCalls.Load(),
		SelfCalls:     c.selfCalls.Load(),
		PingCalls:     c.pingCalls.Load(),
		Unauthorized:  c.unauthorized.Load(),
		Forbidden:     c.forbidden.Load(),
	}
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status.
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// ServeHTTP implements http.Handler and logs one line per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.counters.requests.Add(1)
	rec := &statusRecorder{ResponseWriter: w}
	s.serve(rec, r)
	path := r.URL.Path
	if len(path) > 200 {
		path = path[:200]
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "Served request",
		slog.String("method", r.Method),
		slog.String("path", path),
		slog.Int("status", rec.status),
		slog.Duration("duration", time.Since(start)))
}

// route is what a path resolves to.
type route struct {
	// methods maps allowed methods to handlers (HEAD is implied by GET).
	methods map[string]http.HandlerFunc
	// management routes need full_access even for reads.
	management bool
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	path, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok || (path != "" && path[0] != '/') {
		s.writeError(w, http.StatusNotFound, "not found")
		return
	}
	caller, status := s.authenticate(r)
	if status != 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="status-backend"`)
		s.counters.unauthorized.Add(1)
		msg := "token is invalid, deactivated or expired"
		if status == 1 {
			msg = "missing bearer token"
		}
		s.writeError(w, http.StatusUnauthorized, msg)
		return
	}
	if !safeMethod(r.Method) {
		s.counters.writeRequests.Add(1)
		// Read-only enforcement comes before routing, so a read-only token
		// gets 403 on every non-read method, never 404 or 405.
		if caller.Permission != permFullAccess {
			s.counters.forbidden.Add(1)
			s.writeError(w, http.StatusForbidden, "token is read-only")
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	rt, ok := s.resolve(path)
	if !ok {
		s.writeError(w, http.StatusNotFound, "not found")
		return
	}
	if rt.management && caller.Permission != permFullAccess {
		s.counters.forbidden.Add(1)
		s.writeError(w, http.StatusForbidden, "token management requires a full_access token")
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if method == http.MethodOptions {
		w.Header().Set("Allow", allowHeader(rt))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h, ok := rt.methods[method]
	if !ok {
		w.Header().Set("Allow", allowHeader(rt))
		s.writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func allowHeader(rt route) string {
	out := []string{}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if _, ok := rt.methods[m]; ok {
			out = append(out, m)
			if m == http.MethodGet {
				out = append(out, http.MethodHead)
			}
		}
	}
	return strings.Join(append(out, http.MethodOptions), ", ")
}

// resolve maps a path (without prefix) to its route.
// Unknown methods on known routes get 405; read-only callers never get that
// far (serve refuses every non-read method first).
func (s *Server) resolve(path string) (route, bool) {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(seg) == 1 && seg[0] == "ping":
		return route{methods: map[string]http.HandlerFunc{http.MethodGet: s.handlePing}}, true
	case len(seg) == 1 && seg[0] == "api_tokens":
		return route{management: true, methods: map[string]http.HandlerFunc{
			http.MethodGet:  s.handleListTokens,
			http.MethodPost: s.handleCreateToken,
		}}, true
	case len(seg) == 2 && seg[0] == "api_tokens" && seg[1] == "self":
		return route{methods: map[string]http.HandlerFunc{http.MethodGet: s.handleSelf}}, true
	case len(seg) == 2 && seg[0] == "api_tokens" && seg[1] != "":
		id := seg[1]
		return route{management: true, methods: map[string]http.HandlerFunc{
			http.MethodGet: func(w http.ResponseWriter, r *http.Request) { s.handleGetToken(w, r, id) },
		}}, true
	case len(seg) == 3 && seg[0] == "api_tokens" && seg[1] != "" && seg[2] == "deactivate":
		id := seg[1]
		return route{management: true, methods: map[string]http.HandlerFunc{
			http.MethodPost: func(w http.ResponseWriter, r *http.Request) { s.handleDeactivate(w, r, id) },
		}}, true
	case len(seg) == 1 && seg[0] == "boards":
		return route{methods: map[string]http.HandlerFunc{
			http.MethodGet:  s.handleListBoards,
			http.MethodPost: s.handleCreateBoard,
		}}, true
	case len(seg) == 2 && seg[0] == "boards" && seg[1] != "":
		id := seg[1]
		return route{methods: map[string]http.HandlerFunc{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleGetBoard(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleDeleteBoard(w, r, id) },
		}}, true
	}
	return route{}, false
}

type callerKey struct{}

func callerFrom(ctx context.Context) tokenRecord {
	c, _ := ctx.Value(callerKey{}).(tokenRecord)
	return c
}

// authenticate returns the caller, or status 1 (no credential) / 2 (bad credential).
func (s *Server) authenticate(r *http.Request) (tokenRecord, int) {
	h := r.Header.Get("Authorization")
	scheme, value, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return tokenRecord{}, 1
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return tokenRecord{}, 1
	}
	t, ok := s.store.authenticate(value, s.clock())
	if !ok {
		return tokenRecord{}, 2
	}
	return t, 0
}

// Wire types.

type tokenJSON struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Permission    string            `json:"permission"`
	Status        string            `json:"status"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	LastUsedAt    *time.Time        `json:"last_used_at"`
	CreatedAt     time.Time         `json:"created_at"`
	DeactivatedAt *time.Time        `json:"deactivated_at"`
	Last4         string            `json:"last4"`
	ExternalID    *string           `json:"external_id"`
	Labels        map[string]string `json:"labels"`
	Role          *string           `json:"role"`
	Token         string            `json:"token,omitempty"`
}

func toTokenJSON(r tokenRecord, now time.Time) tokenJSON {
	j := tokenJSON{
		ID:            r.ID,
		Name:          r.Name,
		Description:   r.Description,
		Permission:    r.Permission,
		Status:        statusInactive,
		ExpiresAt:     r.ExpiresAt,
		LastUsedAt:    r.LastUsedAt,
		CreatedAt:     r.CreatedAt,
		DeactivatedAt: r.DeactivatedAt,
		Last4:         r.Last4,
		Labels:        r.Labels,
	}
	if r.active(now) {
		j.Status = statusActive
	}
	if r.ExternalID != "" {
		ext := r.ExternalID
		j.ExternalID = &ext
	}
	if j.Labels == nil {
		j.Labels = map[string]string{}
	}
	return j
}

type boardJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type paginationJSON struct {
	CurrentPage int  `json:"current_page"`
	PerPage     int  `json:"per_page"`
	TotalPages  int  `json:"total_pages"`
	TotalCount  int  `json:"total_count"`
	NextPage    *int `json:"next_page"`
}

type successEnvelope struct {
	Success    bool            `json:"success"`
	Data       any             `json:"data"`
	Pagination *paginationJSON `json:"pagination,omitempty"`
}

type errorEnvelope struct {
	Success bool     `json:"success"`
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
}

func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own wire types are encoded; they always marshal.
		panic(err)
	}
	return b
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) writeData(w http.ResponseWriter, status int, data any, p *paginationJSON) {
	writeRaw(w, status, encodeJSON(successEnvelope{Success: true, Data: data, Pagination: p}))
}

func (s *Server) writeError(w http.ResponseWriter, status int, msg string, errs ...string) {
	if errs == nil {
		errs = []string{}
	}
	writeRaw(w, status, encodeJSON(errorEnvelope{Message: msg, Errors: errs}))
}

// writeAPIError writes err as an apiError, or a 500 without details.
func (s *Server) writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	if ae, ok := err.(*apiError); ok {
		s.writeError(w, ae.Status, ae.Message, ae.Errors...)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "Failed request", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	s.writeError(w, http.StatusInternalServerError, "internal error")
}

// drainBody reads a small request body that the route ignores, so keep-alive works.
func drainBody(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }
