package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Each fault is planted in front of a plain httptest backend and observed by a plain HTTP
// client: what the client gets, and whether the backend saw the request at all. A fault that
// silently forwarded (or never forwarded) would make the scenarios that rely on it test
// nothing.

// backendStub counts the requests that reach it and answers a create with a token value.
type backendStub struct {
	srv  *httptest.Server
	hits atomic.Int32
}

func startBackend(t *testing.T) *backendStub {
	t.Helper()
	b := &backendStub{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"success":true,"data":{"id":"7","token":"sgt_stubVALUE","external_id":"uid-1"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"success":true,"data":{"id":"7"}}`)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func startProxy(t *testing.T, b *backendStub) *Proxy {
	t.Helper()
	p, err := Start(b.srv.URL + "/api/v3")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// call sends one request through the proxy with a plain client (no keep-alive, so a reset
// connection cannot be mistaken for a stale pooled one) and reads the whole answer.
func call(t *testing.T, p *Proxy, method, path string, timeout time.Duration) (*http.Response, string, error) {
	t.Helper()
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{}`)
	}
	req, err := http.NewRequest(method, p.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(resp.Body)
	return resp, string(reply), err
}

func TestPassForwards(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	resp, reply, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusCreated))
	g.Expect(reply).To(ContainSubstring("sgt_stubVALUE"))
	g.Expect(b.hits.Load()).To(Equal(int32(1)))
	g.Expect(p.IssuedValues()).To(Equal(map[string]string{"sgt_stubVALUE": "uid-1"}), "the create reply's value is captured")
	g.Expect(p.IssuedIDs()).To(Equal(map[string]string{"sgt_stubVALUE": "7"}), "and its token id")
	g.Expect(p.Counts()).To(Equal(map[string]int{"POST create": 1}))
}

func TestHangHoldsUntilTheClientGivesUp(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: Hang})
	start := time.Now()
	_, _, err := call(t, p, http.MethodGet, "/api_tokens/self", 400*time.Millisecond)
	g.Expect(err).To(HaveOccurred(), "a hanging request gets no answer")
	var ne interface{ Timeout() bool }
	g.Expect(errors.As(err, &ne) && ne.Timeout()).To(BeTrue(), "the client timed out: %v", err)
	g.Expect(time.Since(start)).To(BeNumerically(">=", 400*time.Millisecond))
	g.Expect(b.hits.Load()).To(BeZero(), "a hanging request never reaches the backend")
}

func TestClearReleasesHangingRequests(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: Hang})
	errc := make(chan error, 1)
	go func() {
		_, _, err := call(t, p, http.MethodGet, "/api_tokens/self", 10*time.Second)
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("the request returned before Clear: %v", err)
	default:
	}
	p.Clear()
	select {
	case err := <-errc:
		g.Expect(err).To(HaveOccurred(), "a released hang ends without an answer")
	case <-time.After(5 * time.Second):
		t.Fatal("Clear did not release the hanging request")
	}
	resp, _, err := call(t, p, http.MethodGet, "/api_tokens/self", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "after Clear requests pass")
	g.Expect(b.hits.Load()).To(Equal(int32(1)))
}

func TestResetClosesWithoutAnswer(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: Reset, Match: MatchClass("create")})
	start := time.Now()
	_, _, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).To(HaveOccurred(), "a reset connection gives no answer")
	g.Expect(err.Error()).To(Or(ContainSubstring("connection reset"), ContainSubstring("EOF")))
	g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second), "a reset is immediate, not a hang")
	g.Expect(b.hits.Load()).To(BeZero(), "a reset request never reaches the backend")
	// The fault matches creates only.
	resp, _, err := call(t, p, http.MethodGet, "/api_tokens/self", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	reqs := p.Requests()
	g.Expect(reqs).To(HaveLen(2))
	g.Expect(reqs[0].Faulted).To(BeTrue())
	g.Expect(reqs[0].Code).To(BeZero())
}

func TestLatencyDelaysThenForwards(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	const delay = 500 * time.Millisecond
	p.Add(Fault{Kind: Pass, Latency: delay})
	start := time.Now()
	resp, _, err := call(t, p, http.MethodGet, "/api_tokens/self", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(time.Since(start)).To(BeNumerically(">=", delay))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(b.hits.Load()).To(Equal(int32(1)), "a delayed request still reaches the backend")
	g.Expect(p.Writes()).To(BeZero())

	// A client that gives up during the delay: the request is not forwarded. (A GET: the
	// server notices a client gone only once the request body was read, so a POST whose
	// client gave up is forwarded after the delay, as on a real network.)
	_, _, err = call(t, p, http.MethodGet, "/api_tokens/self", 200*time.Millisecond)
	g.Expect(err).To(HaveOccurred())
	time.Sleep(delay) // past the delay: the proxy would have forwarded by now
	g.Expect(b.hits.Load()).To(Equal(int32(1)), "a request abandoned during the delay is not forwarded")
}

func TestStatus503(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: Status, Status: http.StatusServiceUnavailable, Times: 2})
	for i := 0; i < 2; i++ {
		resp, body, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
		g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
		g.Expect(body).To(MatchJSON(`{"success":false,"message":"injected 503","errors":[]}`))
	}
	g.Expect(b.hits.Load()).To(BeZero(), "an injected 503 never reaches the backend")
	// Times: the third request passes.
	resp, _, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusCreated))
	g.Expect(b.hits.Load()).To(Equal(int32(1)))
	g.Expect(p.Writes()).To(Equal(1), "faulted writes are not counted as writes")
}

func TestRateLimitWithRetryAfter(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: RateLimit, RetryAfter: 7})
	resp, body, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))
	g.Expect(resp.Header.Get("Retry-After")).To(Equal("7"))
	g.Expect(body).To(ContainSubstring("rate limited"))
	g.Expect(b.hits.Load()).To(BeZero(), "a 429 never reaches the backend")
	reqs := p.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0].Code).To(Equal(http.StatusTooManyRequests))
	g.Expect(reqs[0].Class).To(Equal("create"))
}

func TestBodyRewritesAfterTheBackendActed(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: Body, Match: MatchClass("create"), Status: http.StatusOK, ContentType: "text/html", Body: []byte("<html>nope</html>")})
	resp, body, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/html"))
	g.Expect(body).To(Equal("<html>nope</html>"))
	g.Expect(b.hits.Load()).To(Equal(int32(1)), "a rewritten request did reach the backend")
	g.Expect(p.IssuedValues()).To(HaveKey("sgt_stubVALUE"), "the value the backend created is captured though the client never saw it")
}

func TestLoseReplyActsThenDropsTheAnswer(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Add(Fault{Kind: LoseReply, Times: 1, Match: MatchClass("create")})
	_, _, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).To(HaveOccurred(), "no answer reaches the client")
	g.Expect(b.hits.Load()).To(Equal(int32(1)), "the backend did the work")
	reqs := p.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0].Faulted).To(BeTrue())
	resp, _, err := call(t, p, http.MethodPost, "/api_tokens", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred(), "once only")
	g.Expect(resp.StatusCode).To(BeNumerically("<", 300))
}

func TestMatchJSONRPCKeepsTheBody(t *testing.T) {
	g := NewWithT(t)
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/api_jsonrpc.php", strings.NewReader(`{"jsonrpc":"2.0","method":"token.create","params":{},"id":1}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(MatchJSONRPC("token.generate")(r)).To(BeFalse())
	g.Expect(MatchJSONRPC("token.create")(r)).To(BeTrue(), "the body was put back for the next reader")
}

func TestDownRefusesAndUpServesOnTheSamePort(t *testing.T) {
	g := NewWithT(t)
	b := startBackend(t)
	p := startProxy(t, b)
	p.Down()
	_, _, err := call(t, p, http.MethodGet, "/ping", 2*time.Second)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("connection refused"))
	g.Expect(p.Up()).To(Succeed())
	resp, _, err := call(t, p, http.MethodGet, "/ping", 2*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Expect(p.WaitIdle(ctx, 100*time.Millisecond)).To(Succeed())
}
