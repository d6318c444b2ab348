// Package faultproxy is an HTTP reverse proxy that sits between the operator and a status
// backend on 127.0.0.1 and misbehaves on command: error statuses, 429 with Retry-After,
// hanging requests, connection resets, added latency, hostile bodies and a full outage
// (the listener is closed, so connections are refused). It counts every request by method
// and path class, and remembers every token value the backend handed out, so that the
// oracle can check that none of them leaked and that every superseded one is dead.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a Fault does to a request.
type Kind int

const (
	// Pass forwards the request (after Fault.Latency, if any).
	Pass Kind = iota
	// Status answers Fault.Status with Fault.Body (a JSON error envelope by default).
	Status
	// RateLimit answers 429 with Retry-After: Fault.RetryAfter seconds.
	RateLimit
	// Hang holds the request without answering until the client gives up or the fault is cleared.
	Hang
	// Reset closes the connection without an answer.
	Reset
	// Body forwards the request to the backend (so its effect happens) and replaces the
	// answer with Fault.Status (default 200), Fault.ContentType and Fault.Body.
	Body
	// LoseReply forwards the request to the backend (so its effect happens) and closes the
	// connection without the answer: a reply lost in transit.
	LoseReply
)

// Fault is one scripted misbehaviour.
type Fault struct {
	Kind Kind
	// Match selects the requests it applies to; nil matches all.
	Match func(r *http.Request) bool
	// Status and Body are the answer for Status and Body faults.
	Status      int
	Body        []byte
	ContentType string
	// RetryAfter is the Retry-After header of RateLimit, in seconds.
	RetryAfter int
	// Latency is added before anything else happens.
	Latency time.Duration
	// Times limits how many requests it applies to; 0 means no limit.
	Times int
}

// Request is one request the proxy saw.
type Request struct {
	At     time.Time
	Method string
	Class  string
	// Path is the request's URL path (a stream of retries is one class and path, or one key).
	Path string
	// Code is the status answered; 0 when the connection was reset or the request hung.
	Code int
	// Faulted is true when a fault (other than pure latency) decided the answer.
	Faulted bool
	// Key is the Idempotency-Key header of a create.
	Key string
}

// Proxy is a running fault proxy.
type Proxy struct {
	// URL is the proxy's base URL: the target's path on the proxy's address.
	URL string

	target atomic.Pointer[url.URL]
	rp     *httputil.ReverseProxy
	addr   string

	mu       sync.Mutex
	faults   []*Fault
	used     map[*Fault]int
	requests []Request
	values   map[string]string // token value -> external_id, from create replies
	ids      map[string]string // token value -> the backend's token id, from create replies
	hangs    chan struct{}     // closed to release hanging requests
	ln       net.Listener
	srv      *http.Server
	down     bool
	closed   bool
	hook     func(r *http.Request, code int)
	strip    []string
}

// OnResponse sets a function called with every forwarded request and the backend's status,
// after the backend has answered and before the answer reaches the client. A test uses it
// to kill the operator at a precise point (e.g. after the backend created a token, before
// the operator has read the reply). nil removes it.
func (p *Proxy) OnResponse(hook func(r *http.Request, code int)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = hook
}

// StripHeaders removes these request headers before forwarding, e.g. Idempotency-Key to
// show what the kill scenarios detect when the crash-safety mechanism is broken.
func (p *Proxy) StripHeaders(names ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strip = names
}

// Start listens on 127.0.0.1:0 and forwards to targetBase (a backend base URL such as
// http://127.0.0.1:1234/api/v3).
func Start(targetBase string) (*Proxy, error) {
	target, err := url.Parse(targetBase)
	if err != nil {
		return nil, err
	}
	p := &Proxy{used: map[*Fault]int{}, values: map[string]string{}, hangs: make(chan struct{})}
	p.target.Store(target)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := p.target.Load()
			pr.Out.URL.Scheme = t.Scheme
			pr.Out.URL.Host = t.Host
			pr.Out.Host = t.Host
			p.mu.Lock()
			for _, h := range p.strip {
				pr.Out.Header.Del(h)
			}
			p.mu.Unlock()
		},
		Transport:      &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second},
		ModifyResponse: p.captureValues,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.addr = ln.Addr().String()
	p.URL = "http://" + p.addr + strings.TrimSuffix(target.Path, "/")
	p.serve(ln)
	return p, nil
}

func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(p.srv)
}

// SetTarget points the proxy at another backend base URL (e.g. after a backend restart on
// a new port).
func (p *Proxy) SetTarget(targetBase string) error {
	t, err := url.Parse(targetBase)
	if err != nil {
		return err
	}
	p.target.Store(t)
	return nil
}

// Add appends faults; the first matching fault with uses left decides each request.
func (p *Proxy) Add(faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range faults {
		f := faults[i]
		p.faults = append(p.faults, &f)
	}
}

// Clear removes every fault and releases hanging requests.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
	close(p.hangs)
	p.hangs = make(chan struct{})
}

// Down closes the listener: new connections are refused and open ones are closed, as when
// the backend host is gone.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down || p.closed {
		return
	}
	p.down = true
	p.closeServer()
}

// Up listens again on the same address after Down.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.down || p.closed {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("faultproxy: listening again on %s: %w", p.addr, err)
	}
	p.down = false
	p.serve(ln)
	return nil
}

// Close stops the proxy and releases hanging requests.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.hangs)
	p.hangs = make(chan struct{})
	p.closeServer()
}

// closeServer closes the server and its listener. The listener is closed here too: a
// server closed before its Serve goroutine has started never learns of the listener, which
// would stay open and accept connections that nobody serves.
func (p *Proxy) closeServer() {
	_ = p.srv.Close()
	_ = p.ln.Close()
}

// Requests returns a copy of every request seen so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Counts returns the number of requests per "METHOD class".
func (p *Proxy) Counts() map[string]int {
	out := map[string]int{}
	for _, r := range p.Requests() {
		out[r.Method+" "+r.Class]++
	}
	return out
}

// Writes counts forwarded requests that may change backend state (methods other than GET,
// HEAD and OPTIONS), whatever their answer.
func (p *Proxy) Writes() int {
	n := 0
	for _, r := range p.Requests() {
		if IsWrite(r.Method) && !r.Faulted {
			n++
		}
	}
	return n
}

// IssuedValues returns every token value the backend sent through the proxy (creates and
// replays), mapped to the external_id it was created for.
func (p *Proxy) IssuedValues() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.values)
}

// IssuedIDs returns the backend's token id of every value IssuedValues returns.
func (p *Proxy) IssuedIDs() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.ids)
}

// IsWrite reports whether method may change state.
func IsWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Class names the protocol operation of a path: ping, create, list, get, self, deactivate,
// or other.
func Class(method, path string) string {
	i := strings.Index(path, "/api_tokens")
	switch {
	case strings.HasSuffix(path, "/ping"):
		return "ping"
	case i < 0:
		return "other"
	}
	rest := strings.Trim(path[i+len("/api_tokens"):], "/")
	switch {
	case rest == "" && method == http.MethodPost:
		return "create"
	case rest == "":
		return "list"
	case rest == "self":
		return "self"
	case strings.HasSuffix(rest, "/deactivate"):
		return "deactivate"
	default:
		return "get"
	}
}

func (p *Proxy) pick(r *http.Request) (*Fault, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.Match != nil && !f.Match(r) {
			continue
		}
		if f.Times > 0 && p.used[f] >= f.Times {
			continue
		}
		p.used[f]++
		return f, p.hangs
	}
	return nil, p.hangs
}

func (p *Proxy) record(r *http.Request, code int, faulted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, Request{At: time.Now(), Method: r.Method, Class: Class(r.Method, r.URL.Path), Path: r.URL.Path, Code: code, Faulted: faulted, Key: r.Header.Get("Idempotency-Key")})
}

// ServeHTTP applies the first matching fault, or forwards.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, hangs := p.pick(r)
	if f != nil && f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			p.record(r, 0, true)
			return
		}
	}
	kind := Pass
	if f != nil {
		kind = f.Kind
	}
	switch kind {
	case Status:
		code := f.Status
		if code == 0 {
			code = http.StatusInternalServerError
		}
		body := f.Body
		if body == nil {
			body = []byte(fmt.Sprintf(`{"success":false,"message":"injected %d","errors":[]}`, code))
		}
		writeBody(w, code, f.ContentType, body)
		p.record(r, code, true)
	case RateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		writeBody(w, http.StatusTooManyRequests, "", []byte(`{"success":false,"message":"rate limited","errors":[]}`))
		p.record(r, http.StatusTooManyRequests, true)
	case Hang:
		select {
		case <-r.Context().Done():
		case <-hangs:
		}
		p.record(r, 0, true)
		resetConn(w)
	case Reset:
		p.record(r, 0, true)
		resetConn(w)
	case Body:
		rec := &bufferedWriter{header: http.Header{}}
		p.rp.ServeHTTP(rec, r)
		code := f.Status
		if code == 0 {
			code = http.StatusOK
		}
		writeBody(w, code, f.ContentType, f.Body)
		p.record(r, code, true)
	case LoseReply:
		rec := &bufferedWriter{header: http.Header{}}
		p.rp.ServeHTTP(rec, r)
		p.record(r, rec.code, true)
		resetConn(w)
	default:
		sw := &statusWriter{ResponseWriter: w}
		p.rp.ServeHTTP(sw, r)
		p.record(r, sw.code, false)
	}
}

func writeBody(w http.ResponseWriter, code int, contentType string, body []byte) {
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// resetConn closes the client connection without an HTTP answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN
	}
	_ = conn.Close()
}

// captureValues records the token values of create replies (the only replies that carry one).
func (p *Proxy) captureValues(resp *http.Response) error {
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		defer hook(resp.Request, resp.StatusCode)
	}
	if resp.Request.Method != http.MethodPost || Class(resp.Request.Method, resp.Request.URL.Path) != "create" || resp.StatusCode/100 != 2 {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if err != nil {
		return err
	}
	var env struct {
		Data struct {
			Token      string `json:"token"`
			ID         string `json:"id"`
			ExternalID string `json:"external_id"`
		} `json:"data"`
	}
	if json.Unmarshal(data, &env) == nil && env.Data.Token != "" {
		p.mu.Lock()
		p.values[env.Data.Token] = env.Data.ExternalID
		if p.ids == nil {
			p.ids = map[string]string{}
		}
		p.ids[env.Data.Token] = env.Data.ID
		p.mu.Unlock()
	}
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufferedWriter swallows a forwarded answer that a Body fault replaces.
type bufferedWriter struct {
	header http.Header
	buf    bytes.Buffer
	code   int
}

func (b *bufferedWriter) Header() http.Header         { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferedWriter) WriteHeader(code int)        { b.code = code }

// MatchClass matches requests of one protocol operation (see Class).
func MatchClass(class string) func(*http.Request) bool {
	return func(r *http.Request) bool { return Class(r.Method, r.URL.Path) == class }
}

// MatchJSONRPC matches JSON-RPC requests (Zabbix's API) of method. It reads the body and puts
// it back for the proxy to forward.
func MatchJSONRPC(method string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		body, err := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			Method string `json:"method"`
		}
		return err == nil && json.Unmarshal(body, &req) == nil && req.Method == method
	}
}

// MatchWrites matches requests whose method may change state.
func MatchWrites(r *http.Request) bool { return IsWrite(r.Method) }

// WaitIdle waits until no request has been seen for quiet, or ctx ends.
func (p *Proxy) WaitIdle(ctx context.Context, quiet time.Duration) error {
	for {
		reqs := p.Requests()
		last := time.Time{}
		if len(reqs) > 0 {
			last = reqs[len(reqs)-1].At
		}
		if time.Since(last) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("faultproxy: backend traffic did not stop")
		case <-time.After(quiet / 4):
		}
	}
}
