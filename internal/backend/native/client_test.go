package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

var valueFormat = regexp.MustCompile(`^sgt_[0-9A-Za-z]{40}$`)

func kindOf(err error) backend.ErrorKind {
	var e *backend.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

func TestClientAgainstReferenceServer(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	srv := servertest.Start(t)
	c := srv.Client(t)

	g.Expect(c.Ping(ctx)).To(Succeed())

	self, err := c.Self(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(self.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(self.LastUsedAt).NotTo(BeNil())
	g.Expect(self.IsAdmin()).To(BeTrue(), "the bootstrap credential has the admin role")

	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	req := native.CreateRequest{
		Name:        "monitoring/grafana",
		Permission:  backend.PermissionReadOnly,
		ExpiresAt:   &exp,
		Description: "panel",
		ExternalID:  "uid-1",
		Labels:      map[string]string{"team": "sre", "env": "prod"},
	}
	created, err := c.CreateToken(ctx, "key-1", req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.Replayed).To(BeFalse())
	g.Expect(created.ID).To(HavePrefix("tok_"))
	g.Expect(valueFormat.MatchString(created.Value.Reveal())).To(BeTrue())
	g.Expect(created.Last4).To(Equal(created.Value.Reveal()[40:]))
	g.Expect(created.Status).To(Equal(backend.StatusActive))
	g.Expect(created.ExternalID).To(Equal("uid-1"))
	g.Expect(created.Labels).To(Equal(req.Labels))
	g.Expect(created.ExpiresAt.Equal(exp)).To(BeTrue())
	g.Expect(created.IsAdmin()).To(BeFalse())

	replay, err := c.CreateToken(ctx, "key-1", req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(replay.Replayed).To(BeTrue())
	g.Expect(replay.ID).To(Equal(created.ID))
	g.Expect(replay.Value).To(Equal(created.Value))

	other := req
	other.Name = "another"
	_, err = c.CreateToken(ctx, "key-1", other)
	g.Expect(kindOf(err)).To(Equal(backend.KindInvalid))
	g.Expect(err.(*backend.Error).StatusCode).To(Equal(http.StatusUnprocessableEntity))

	got, err := c.GetToken(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Name).To(Equal(req.Name))

	_, err = c.GetToken(ctx, "tok_doesnotexist")
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)

	for i := range 4 {
		_, err := c.CreateToken(ctx, "", native.CreateRequest{
			Name: fmt.Sprintf("extra-%d", i), Permission: backend.PermissionReadOnly,
			Labels: map[string]string{"team": "sre"},
		})
		g.Expect(err).NotTo(HaveOccurred())
	}
	all, err := c.ListTokens(ctx, native.ListOptions{Labels: map[string]string{"team": "sre"}, PerPage: 2})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).To(HaveLen(5))
	g.Expect(all[0].Name).To(Equal("extra-3"), "newest first")
	byExt, err := c.ListTokens(ctx, native.ListOptions{ExternalID: "uid-1"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(byExt).To(HaveLen(1))

	ro := srv.ClientFor(t, created.Value)
	g.Expect(ro.Ping(ctx)).To(Succeed())
	_, err = ro.CreateToken(ctx, "", req)
	g.Expect(backend.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(Equal("backend create: 403 Forbidden: token is read-only"))
	g.Expect(backend.IsAdminRequired(err)).To(BeFalse(), "read-only is another refusal")
	roSelf, err := ro.Self(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(roSelf.ID).To(Equal(created.ID))

	for range 2 { // repeatable
		d, err := c.DeactivateToken(ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status).To(Equal(backend.StatusInactive))
		g.Expect(d.DeactivatedAt).NotTo(BeNil())
	}
	err = ro.Ping(ctx)
	g.Expect(backend.IsUnauthorized(err)).To(BeTrue(), "%v", err)
	g.Expect(backend.IsTransient(err)).To(BeFalse())
	inactive, err := c.ListTokens(ctx, native.ListOptions{Status: backend.StatusInactive})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(inactive).To(HaveLen(1))

	_, err = c.DeactivateToken(ctx, "tok_doesnotexist")
	g.Expect(backend.IsNotFound(err)).To(BeTrue())
	_, err = c.GetToken(ctx, "")
	g.Expect(kindOf(err)).To(Equal(backend.KindInvalid))
}

// TestClientAdminRole shows that a full_access token made through the API is
// no admin: it reads itself but every token management call is refused.
func TestClientAdminRole(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	srv := servertest.Start(t)
	victim := srv.IssueToken(t, native.CreateRequest{Name: "victim", Permission: backend.PermissionReadOnly})
	fa := srv.IssueToken(t, native.CreateRequest{Name: "workload", Permission: backend.PermissionFullAccess})
	c := srv.ClientFor(t, fa.Value)

	self, err := c.Self(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(self.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(self.IsAdmin()).To(BeFalse())
	g.Expect(self.Role).To(BeEmpty())

	calls := map[string]func() error{
		"list": func() error { _, err := c.ListTokens(ctx, native.ListOptions{}); return err },
		"get":  func() error { _, err := c.GetToken(ctx, victim.ID); return err },
		"deactivate": func() error {
			_, err := c.DeactivateToken(ctx, victim.ID)
			return err
		},
		"create": func() error {
			_, err := c.CreateToken(ctx, "", native.CreateRequest{Name: "x", Permission: backend.PermissionFullAccess})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		g.Expect(backend.IsForbidden(err)).To(BeTrue(), "%s: %v", name, err)
		g.Expect(backend.IsAdminRequired(err)).To(BeTrue(), "%s: %v", name, err)
	}
	got, err := srv.Client(t).GetToken(ctx, victim.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Status).To(Equal(backend.StatusActive))
}

func TestIsAdminRequired(t *testing.T) {
	cases := map[string]struct {
		err  error
		want bool
	}{
		"403 admin role": {&backend.Error{Kind: backend.KindForbidden, StatusCode: 403, Message: "token management needs the admin role"}, true},
		"wrapped":        {fmt.Errorf("listing: %w", &backend.Error{Kind: backend.KindForbidden, StatusCode: 403, Message: "token management needs the admin role"}), true},
		"403 read-only":  {&backend.Error{Kind: backend.KindForbidden, StatusCode: 403, Message: "token is read-only"}, false},
		"401":            {&backend.Error{Kind: backend.KindUnauthorized, StatusCode: 401, Message: "needs the admin role"}, false},
		"plain error":    {errors.New("token management needs the admin role"), false},
		"nil":            {nil, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(backend.IsAdminRequired(tc.err)).To(Equal(tc.want))
		})
	}
}

func TestClientIdempotencyInFlightIsConflict(t *testing.T) {
	g := NewWithT(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := servertest.Start(t, servertest.WithCreateHook(func(ctx context.Context) {
		once.Do(func() {
			close(entered)
			<-release
		})
	}))
	c := srv.Client(t)
	req := native.CreateRequest{Name: "x", Permission: backend.PermissionReadOnly}
	done := make(chan error, 1)
	go func() { _, err := c.CreateToken(context.Background(), "k", req); done <- err }()
	<-entered
	_, err := c.CreateToken(context.Background(), "k", req)
	close(release)
	g.Expect(backend.IsConflict(err)).To(BeTrue(), "%v", err)
	g.Expect(backend.IsTransient(err)).To(BeTrue())
	g.Expect(backend.RetryAfter(err)).To(Equal(time.Second))
	g.Expect(<-done).To(Succeed())
}

// hostileCase is a server reply the client must turn into a typed, clean error.
type hostileCase struct {
	handler  http.HandlerFunc
	call     func(c *native.Client) error
	kind     backend.ErrorKind
	status   int
	retry    time.Duration
	contains string
}

const clientToken = "sgt_CLIENTSECRETclientsecretCLIENTSECRET00"

func createCall(c *native.Client) error {
	_, err := c.CreateToken(context.Background(), "k", native.CreateRequest{Name: "n", Permission: backend.PermissionReadOnly})
	return err
}

func getCall(c *native.Client) error {
	_, err := c.GetToken(context.Background(), "tok_1")
	return err
}

func deactivateCall(c *native.Client) error {
	_, err := c.DeactivateToken(context.Background(), "tok_1")
	return err
}

func selfCall(c *native.Client) error {
	_, err := c.Self(context.Background())
	return err
}

// withID is goodToken with another id, JSON-quoted.
func withID(id string) string {
	q, _ := json.Marshal(id)
	return strings.Replace(goodToken, `"tok_1"`, string(q), 1)
}

func listCall(c *native.Client) error {
	_, err := c.ListTokens(context.Background(), native.ListOptions{})
	return err
}

func reply(status int, contentType, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

const goodToken = `{"id":"tok_1","name":"n","permission":"read_only","status":"active","created_at":"2025-01-01T00:00:00Z","last4":"abcd","external_id":null,"labels":{}}`

func TestClientHostileReplies(t *testing.T) {
	leaked := "sgt_LEAKEDleakedLEAKEDleakedLEAKEDleaked00"
	cases := map[string]hostileCase{
		"oversized": {
			handler: reply(200, "application/json", `{"success":true,"data":`+goodToken+`,"pad":"`+strings.Repeat("x", 4096)+`"}`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: "exceeds",
		},
		"malformed JSON": {
			handler: reply(200, "application/json", `{"success":true,"data":{"id":`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: "malformed",
		},
		"wrong types": {
			handler: reply(200, "application/json", `{"success":true,"data":{"id":"tok_1","name":5,"status":"active"}}`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: `"name"`,
		},
		"token without id": {
			handler: reply(200, "application/json", `{"success":true,"data":{"name":"n","status":"active"}}`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: "no id",
		},
		"data is null": {
			handler: reply(200, "application/json", `{"success":true,"data":null}`),
			call:    getCall, kind: backend.KindProtocol, status: 200,
		},
		"success false in a 200": {
			handler: reply(200, "application/json", `{"success":false,"message":"huh"}`),
			call:    getCall, kind: backend.KindProtocol, status: 200,
		},
		"created token without value": {
			handler: reply(201, "application/json", `{"success":true,"data":`+goodToken+`}`),
			call:    createCall, kind: backend.KindProtocol, status: 201, contains: "no value",
		},
		"HTML error page": {
			handler: reply(502, "text/html", "<html><body><h1>502 Bad Gateway</h1>"+leaked+"</body></html>"),
			call:    getCall, kind: backend.KindTransient, status: 502, contains: "non-JSON",
		},
		"HTML success page": {
			handler: reply(200, "text/html", "<html>captive portal</html>"),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: "not JSON",
		},
		"429 with Retry-After seconds": {
			handler: reply(429, "application/json", `{"success":false,"message":"slow down"}`, "Retry-After", "7"),
			call:    createCall, kind: backend.KindTransient, status: 429, retry: 7 * time.Second, contains: "slow down",
		},
		"503 with Retry-After date": {
			handler: reply(503, "application/json", `{"success":false,"message":"maintenance"}`,
				"Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat)),
			call: getCall, kind: backend.KindTransient, status: 503, retry: 90 * time.Second,
		},
		"500": {
			handler: reply(500, "application/json", `{"success":false,"message":"boom","errors":["db down"]}`),
			call:    listCall, kind: backend.KindTransient, status: 500, contains: "boom (db down)",
		},
		"408": {
			handler: reply(408, "", ""),
			call:    getCall, kind: backend.KindTransient, status: 408,
		},
		"404": {
			handler: reply(404, "application/json", `{"success":false,"message":"token not found"}`),
			call:    getCall, kind: backend.KindNotFound, status: 404, contains: "token not found",
		},
		"422": {
			handler: reply(422, "application/json", `{"success":false,"message":"invalid token request","errors":["name must not be empty"]}`),
			call:    createCall, kind: backend.KindInvalid, status: 422, contains: "name must not be empty",
		},
		"redirect is not followed": {
			handler: reply(302, "", "", "Location", "http://example.invalid/steal"),
			call:    getCall, kind: backend.KindProtocol, status: 302,
		},
		"connection reset": {
			handler: func(w http.ResponseWriter, _ *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = conn.Close()
				}
			},
			call: getCall, kind: backend.KindTransient,
		},
		"timeout": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			call: getCall, kind: backend.KindTransient,
		},
		"server echoes Authorization header": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				reply(401, "application/json", fmt.Sprintf(`{"success":false,"message":"bad credential, Authorization: %s","errors":["got %s"]}`,
					r.Header.Get("Authorization"), r.Header.Get("Authorization")))(w, r)
			},
			call: getCall, kind: backend.KindUnauthorized, status: 401, contains: "bad credential",
		},
		"server echoes token values": {
			handler: reply(400, "application/json", `{"success":false,"message":"value `+leaked+` rejected, yours was `+clientToken[:30]+`","errors":["token=`+leaked+`"]}`),
			call:    createCall, kind: backend.KindInvalid, status: 400, contains: "rejected",
		},
		"list next_page does not advance": {
			handler: reply(200, "application/json", `{"success":true,"data":[`+goodToken+`],"pagination":{"current_page":1,"per_page":1,"total_pages":9,"total_count":9,"next_page":1}}`),
			call:    listCall, kind: backend.KindProtocol, status: 200, contains: "does not advance",
		},
		"created id with a space": {
			handler: reply(201, "application/json", `{"success":true,"data":`+strings.TrimSuffix(withID("tok 1"), "}")+`,"token":"sgt_x"}}`),
			call:    createCall, kind: backend.KindProtocol, status: 201, contains: "id is not",
		},
		"get id with a slash": {
			handler: reply(200, "application/json", `{"success":true,"data":`+withID("../admin")+`}`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: "id is not",
		},
		"deactivate id with a percent": {
			handler: reply(200, "application/json", `{"success":true,"data":`+withID("tok%2F1")+`}`),
			call:    deactivateCall, kind: backend.KindProtocol, status: 200, contains: "id is not",
		},
		"self id not ASCII": {
			handler: reply(200, "application/json", `{"success":true,"data":`+withID("tök_1")+`}`),
			call:    selfCall, kind: backend.KindProtocol, status: 200, contains: "id is not",
		},
		"list item id too long": {
			handler: reply(200, "application/json", `{"success":true,"data":[`+goodToken+`,`+withID(strings.Repeat("a", 129))+`]}`),
			call:    listCall, kind: backend.KindProtocol, status: 200, contains: "item 1: token object id is not",
		},
		"created_at before 2000": {
			handler: reply(200, "application/json", `{"success":true,"data":`+strings.Replace(goodToken, "2025-01-01", "1999-12-31", 1)+`}`),
			call:    getCall, kind: backend.KindProtocol, status: 200, contains: `"created_at" is outside`,
		},
		"created_at missing": {
			handler: reply(200, "application/json", `{"success":true,"data":{"id":"tok_1","status":"active"}}`),
			call:    selfCall, kind: backend.KindProtocol, status: 200, contains: "no created_at",
		},
		"list item expires in the year 9000": {
			handler: reply(200, "application/json", `{"success":true,"data":[`+strings.Replace(goodToken, `"last4"`, `"expires_at":"9000-01-01T00:00:00Z","last4"`, 1)+`]}`),
			call:    listCall, kind: backend.KindProtocol, status: 200, contains: `item 0: token object field "expires_at"`,
		},
		"list item without id": {
			handler: reply(200, "application/json", `{"success":true,"data":[{"name":"x","status":"active"}]}`),
			call:    listCall, kind: backend.KindProtocol, status: 200, contains: "no id",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			var observed []string
			c, err := native.New(native.Options{
				BaseURL:          hs.URL + "/api/v3",
				Token:            clientToken,
				Timeout:          3 * time.Second, // generous: a loaded CI machine must not turn a reply into a timeout
				MaxResponseBytes: 2048,
				Observer: func(op string, code int, _ time.Duration, err error) {
					observed = append(observed, fmt.Sprintf("%s %d %v", op, code, err != nil))
				},
			})
			g.Expect(err).NotTo(HaveOccurred())
			err = tc.call(c)
			g.Expect(err).To(HaveOccurred())
			var be *backend.Error
			g.Expect(errors.As(err, &be)).To(BeTrue())
			g.Expect(be.Kind).To(Equal(tc.kind), "%v", err)
			g.Expect(be.StatusCode).To(Equal(tc.status))
			// A date-based Retry-After is relative to the moment of parsing: allow for a loaded
			// machine between the handler and the parse, far below what a misparse would give.
			g.Expect(backend.RetryAfter(err)).To(BeNumerically("~", tc.retry, 5*time.Second))
			msg := err.Error()
			g.Expect(msg).To(ContainSubstring(tc.contains))
			g.Expect(msg).NotTo(ContainSubstring(clientToken[:30]))
			g.Expect(msg).NotTo(ContainSubstring(leaked[:12]))
			g.Expect(msg).NotTo(ContainSubstring("sgt_"))
			g.Expect(len(be.Message)).To(BeNumerically("<=", 210*3))
			g.Expect(observed).To(HaveLen(1))
			g.Expect(observed[0]).To(HaveSuffix(fmt.Sprintf(" %d true", tc.status)))
		})
	}
}

// TestClientRefusesBadIDs checks that ids outside the protocol's charset are
// refused before anything is sent, without quoting them.
func TestClientRefusesBadIDs(t *testing.T) {
	var hits atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reply(200, "application/json", `{"success":true,"data":`+withID(strings.TrimPrefix(r.URL.Path, "/api_tokens/"))+`}`)(w, r)
	}))
	defer hs.Close()
	c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	bad := []string{"", "tok 1", "tok/1", "..", ".", "self", "tok%201", "tök", "tok\n1", strings.Repeat("a", 129), "sgt_SECRETsecret?x=1"}
	for _, id := range bad {
		t.Run(id, func(t *testing.T) {
			g := NewWithT(t)
			before := hits.Load()
			_, gerr := c.GetToken(context.Background(), id)
			_, derr := c.DeactivateToken(context.Background(), id)
			for _, err := range []error{gerr, derr} {
				g.Expect(kindOf(err)).To(Equal(backend.KindInvalid), "%v", err)
				g.Expect(err.(*backend.Error).StatusCode).To(BeZero())
				if id != "" {
					g.Expect(err.Error()).NotTo(ContainSubstring(id))
				}
			}
			g.Expect(hits.Load()).To(Equal(before), "nothing was sent")
		})
	}
	g := NewWithT(t)
	longest := strings.Repeat("a", 128)
	got, err := c.GetToken(context.Background(), longest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.ID).To(Equal(longest))
	_, err = c.GetToken(context.Background(), "Tok_-9")
	g.Expect(err).NotTo(HaveOccurred())
}

// TestClientPathOnTheWire checks the exact request URI of each call, with a
// base path that carries escapes of its own.
func TestClientPathOnTheWire(t *testing.T) {
	g := NewWithT(t)
	var uris []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uris = append(uris, r.Method+" "+r.RequestURI)
		reply(200, "application/json", `{"success":true,"data":`+goodToken+`}`)(w, r)
	}))
	defer hs.Close()
	c, err := native.New(native.Options{BaseURL: hs.URL + "/tenant%2Fa/api%20v3", Token: clientToken})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.GetToken(context.Background(), "tok_1")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.DeactivateToken(context.Background(), "tok_1")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Self(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(uris).To(Equal([]string{
		"GET /tenant%2Fa/api%20v3/api_tokens/tok_1",
		"POST /tenant%2Fa/api%20v3/api_tokens/tok_1/deactivate",
		"GET /tenant%2Fa/api%20v3/api_tokens/self",
	}))
}

func TestClientTransientClassification(t *testing.T) {
	cases := map[int]bool{400: false, 401: false, 403: false, 404: false, 408: true, 409: true, 413: false, 422: false, 429: true, 500: true, 502: true, 503: true}
	for code, transient := range cases {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			g := NewWithT(t)
			hs := httptest.NewServer(reply(code, "application/json", `{"success":false,"message":"m"}`))
			defer hs.Close()
			c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
			g.Expect(err).NotTo(HaveOccurred())
			err = c.Ping(context.Background())
			g.Expect(backend.IsTransient(err)).To(Equal(transient), "%v", err)
		})
	}
}

func TestClientSendsHeaders(t *testing.T) {
	g := NewWithT(t)
	var got *http.Request
	var body []byte
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		body = make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		reply(201, "application/json", `{"success":true,"data":`+strings.TrimSuffix(goodToken, "}")+`,"token":"sgt_x"}}`, "Idempotent-Replayed", "true")(w, r)
	}))
	defer hs.Close()
	c, err := native.New(native.Options{BaseURL: hs.URL + "/api/v3/", Token: clientToken, UserAgent: "ua-test"})
	g.Expect(err).NotTo(HaveOccurred())
	ct, err := c.CreateToken(context.Background(), "idem-1", native.CreateRequest{Name: "n", Permission: backend.PermissionFullAccess, ExternalID: "e"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ct.Replayed).To(BeTrue())
	g.Expect(got.URL.Path).To(Equal("/api/v3/api_tokens"))
	g.Expect(got.Header.Get("Authorization")).To(Equal("Bearer " + clientToken))
	g.Expect(got.Header.Get("Idempotency-Key")).To(Equal("idem-1"))
	g.Expect(got.Header.Get("User-Agent")).To(Equal("ua-test"))
	g.Expect(json.Valid(body)).To(BeTrue())
	g.Expect(string(body)).To(And(ContainSubstring(`"external_id":"e"`), ContainSubstring(`"permission":"full_access"`)))
}

func TestClientCABundle(t *testing.T) {
	g := NewWithT(t)
	hs := httptest.NewTLSServer(reply(200, "application/json", `{"success":true,"data":{"message":"pong"}}`))
	defer hs.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})

	trusted, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken, CABundle: caPEM})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(trusted.Ping(context.Background())).To(Succeed())

	untrusted, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
	g.Expect(err).NotTo(HaveOccurred())
	err = untrusted.Ping(context.Background())
	g.Expect(err).To(HaveOccurred())
	g.Expect(backend.IsTransient(err)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("certificate"))
}

func TestNewValidatesOptions(t *testing.T) {
	cases := map[string]native.Options{
		"ftp scheme":     {BaseURL: "ftp://x/api/v3", Token: clientToken},
		"no host":        {BaseURL: "http:///api/v3", Token: clientToken},
		"user info":      {BaseURL: "http://u:p@x/api/v3", Token: clientToken},
		"empty token":    {BaseURL: "http://x/api/v3"},
		"token with eol": {BaseURL: "http://x/api/v3", Token: "abc\r\nX-Evil: 1"},
		"bad CA bundle":  {BaseURL: "https://x/api/v3", Token: clientToken, CABundle: []byte("not pem")},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := native.New(o)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).NotTo(ContainSubstring(string(o.Token)[:max(0, min(len(o.Token), 8))] + "x"))
			g.Expect(err.Error()).NotTo(ContainSubstring("CLIENTSECRET"))
			g.Expect(err.Error()).NotTo(ContainSubstring("X-Evil"))
		})
	}
}

func TestSecretValueRedacts(t *testing.T) {
	g := NewWithT(t)
	const v = backend.SecretValue("sgt_SUPERSECRETsupersecretSUPERSECRET0000")
	ct := native.CreatedToken{Token: native.Token{ID: "tok_1"}, Value: v}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		outs = append(outs, fmt.Sprintf(verb, v), fmt.Sprintf(verb, ct), fmt.Sprintf(verb, &ct))
	}
	outs = append(outs, fmt.Sprint(v), v.String())
	j, err := json.Marshal(ct)
	g.Expect(err).NotTo(HaveOccurred())
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "value", v, "created", ct)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "value", v, "created", ct)
	outs = append(outs, buf.String())
	for _, o := range outs {
		g.Expect(o).NotTo(ContainSubstring("SUPERSECRET"))
	}
	g.Expect(string(j)).To(ContainSubstring(`"Value":"[redacted]"`))
	g.Expect(v.Reveal()).To(Equal("sgt_SUPERSECRETsupersecretSUPERSECRET0000"))
	g.Expect(string(v)).To(Equal(v.Reveal()))
}

// TestIdempotencyKeyIsDeterministic: the same owner, serial and request give the same key (a
// retry replays); another serial or request gives another.
func TestIdempotencyKeyIsDeterministic(t *testing.T) {
	g := NewWithT(t)
	owner := backend.Owner{UID: "uid", Serial: 1}
	req := native.CreateRequest{Name: "ns/t", Permission: backend.PermissionReadOnly, ExternalID: "uid"}
	g.Expect(native.IdempotencyKey(owner, req)).To(Equal(native.IdempotencyKey(owner, req)))
	g.Expect(native.IdempotencyKey(backend.Owner{UID: "uid", Serial: 2}, req)).NotTo(Equal(native.IdempotencyKey(owner, req)))
	other := req
	other.Permission = backend.PermissionFullAccess
	g.Expect(native.IdempotencyKey(owner, other)).NotTo(Equal(native.IdempotencyKey(owner, req)))
	// The key of the operator before the port (UID-serial-hash of the same request body), so
	// a create interrupted by the upgrade replays (computed with the old backend.CreateRequest).
	g.Expect(native.IdempotencyKey(owner, req)).To(Equal("uid-1-a043e39c324be48b"))
}
