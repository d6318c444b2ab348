package conformance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

var (
	valuePattern = regexp.MustCompile(`^sgt_[0-9A-Za-z]{40}$`)
	idPattern    = regexp.MustCompile(`^tok_[0-9A-Za-z]{20}$`)
)

// target is the server under test.
type target struct {
	base     string
	admin    string
	external bool
	inst     *servertest.Instance // nil for an external server
	clock    *servertest.Clock    // nil for an external server
	gate     *gate
	http     *http.Client
}

// gate holds creates inside the server's idempotency window when armed.
type gate struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) arm() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gate) hook(context.Context) {
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return
	}
	g.armed = false
	entered, release := g.entered, g.release
	g.mu.Unlock()
	close(entered)
	<-release
}

func newTarget(t *testing.T) *target {
	t.Helper()
	tg := &target{http: &http.Client{Timeout: 30 * time.Second}}
	if base := os.Getenv("CONFORMANCE_BASE_URL"); base != "" {
		tg.base = strings.TrimRight(base, "/")
		tg.admin = os.Getenv("CONFORMANCE_ADMIN_TOKEN")
		tg.external = true
		if tg.admin == "" {
			t.Fatal("CONFORMANCE_ADMIN_TOKEN is required with CONFORMANCE_BASE_URL")
		}
		return tg
	}
	tg.clock = servertest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	tg.gate = &gate{}
	tg.inst = servertest.Start(t, servertest.WithClock(tg.clock.Now), servertest.WithCreateHook(tg.gate.hook))
	tg.base, tg.admin = tg.inst.URL, tg.inst.AdminToken
	return tg
}

func (tg *target) needsInProcess(t *testing.T, why string) {
	t.Helper()
	if tg.external {
		t.Skipf("external server: %s", why)
	}
}

// now is the server's time: the manual clock in process, the wall clock otherwise.
func (tg *target) now() time.Time {
	if tg.clock != nil {
		return tg.clock.Now()
	}
	return time.Now()
}

// reply is a raw response with its envelope decoded.
type reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Env    envelope
}

type envelope struct {
	Success    *bool           `json:"success"`
	Data       json.RawMessage `json:"data"`
	Pagination *pagination     `json:"pagination"`
	Message    string          `json:"message"`
	Errors     []string        `json:"errors"`
}

type pagination struct {
	CurrentPage int  `json:"current_page"`
	PerPage     int  `json:"per_page"`
	TotalPages  int  `json:"total_pages"`
	TotalCount  int  `json:"total_count"`
	NextPage    *int `json:"next_page"`
}

// tokenObj is the token object, strictly decoded.
type tokenObj struct {
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
	Token         string            `json:"token"`
}

type boardObj struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// do sends a raw request. body is sent as is when it is a string, else JSON-encoded.
func (tg *target) do(t *testing.T, method, path, token string, body any, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encoding body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, tg.base+path, rd)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tg.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if method != http.MethodHead && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &r.Env); err != nil {
			t.Fatalf("%s %s: reply is not a JSON envelope: %v: %.200s", method, path, err, raw)
		}
	}
	return r
}

// expectEnvelope checks the envelope shape for the reply's status.
func expectEnvelope(g *WithT, r reply) {
	g.Expect(r.Env.Success).NotTo(BeNil(), "envelope lacks success: %s", r.Raw)
	if r.Status >= 200 && r.Status < 300 {
		g.Expect(*r.Env.Success).To(BeTrue(), "%s", r.Raw)
		return
	}
	g.Expect(*r.Env.Success).To(BeFalse(), "%s", r.Raw)
	g.Expect(r.Env.Message).NotTo(BeEmpty(), "error without message: %s", r.Raw)
	var probe map[string]json.RawMessage
	g.Expect(json.Unmarshal(r.Raw, &probe)).To(Succeed())
	g.Expect(probe).To(HaveKey("errors"), "error envelope lacks errors: %s", r.Raw)
}

var tokenKeys = []string{"id", "name", "description", "permission", "status", "expires_at",
	"last_used_at", "created_at", "deactivated_at", "last4", "external_id", "labels"}

// decodeToken decodes data as one token object, checking every documented key is present.
func decodeToken(g *WithT, data json.RawMessage, withValue bool) tokenObj {
	var keys map[string]json.RawMessage
	g.Expect(json.Unmarshal(data, &keys)).To(Succeed(), "token object: %s", data)
	for _, k := range tokenKeys {
		g.Expect(keys).To(HaveKey(k), "token object lacks %q: %s", k, data)
	}
	if withValue {
		g.Expect(keys).To(HaveKey("token"))
	} else {
		g.Expect(keys).NotTo(HaveKey("token"), "token value sent outside create: %s", data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var tok tokenObj
	g.Expect(dec.Decode(&tok)).To(Succeed(), "token object: %s", data)
	g.Expect(tok.ID).To(MatchRegexp(idPattern.String()))
	g.Expect(tok.Permission).To(BeElementOf("read_only", "full_access"))
	g.Expect(tok.Status).To(BeElementOf("active", "inactive"))
	g.Expect(tok.Labels).NotTo(BeNil())
	if withValue {
		g.Expect(valuePattern.MatchString(tok.Token)).To(BeTrue(), "value format")
		g.Expect(tok.Last4).To(Equal(tok.Token[len(tok.Token)-4:]))
	}
	return tok
}

func decodeTokens(g *WithT, data json.RawMessage) []tokenObj {
	var items []json.RawMessage
	g.Expect(json.Unmarshal(data, &items)).To(Succeed(), "token list: %s", data)
	out := make([]tokenObj, 0, len(items))
	for _, it := range items {
		out = append(out, decodeToken(g, it, false))
	}
	return out
}

// createToken issues a token with the admin token and returns it with its value.
func (tg *target) createToken(t *testing.T, body map[string]any, headers ...string) tokenObj {
	t.Helper()
	g := NewWithT(t)
	r := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, headers...)
	g.Expect(r.Status).To(Equal(http.StatusCreated), "%s", r.Raw)
	expectEnvelope(g, r)
	return decodeToken(g, r.Env.Data, true)
}

func (tg *target) getToken(t *testing.T, id string) tokenObj {
	t.Helper()
	g := NewWithT(t)
	r := tg.do(t, http.MethodGet, "/api_tokens/"+id, tg.admin, nil)
	g.Expect(r.Status).To(Equal(http.StatusOK), "%s", r.Raw)
	return decodeToken(g, r.Env.Data, false)
}

// uniq is a fresh suffix, so runs against an external server do not collide.
func uniq() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
