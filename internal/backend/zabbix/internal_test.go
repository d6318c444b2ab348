package zabbix

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
)

const uid = "0b5e6f9a-3c1d-4e2f-8a7b-9c0d1e2f3a4b"

func TestOwnerNameRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		owner  backend.Owner
		reader string // the cluster of the driver that reads the name back
		want   backend.Owner
	}{
		{"own cluster", backend.Owner{UID: uid, Cluster: "c1", Serial: 7}, "c1", backend.Owner{UID: uid, Cluster: "c1", Serial: 7}},
		{"serial 0 (claimed)", backend.Owner{UID: uid, Cluster: "c1"}, "c1", backend.Owner{UID: uid, Cluster: "c1"}},
		{"longest serial", backend.Owner{UID: uid, Cluster: "c1", Serial: 9999999}, "c1", backend.Owner{UID: uid, Cluster: "c1", Serial: 9999999}},
		{"another cluster", backend.Owner{UID: uid, Cluster: "c2", Serial: 1}, "c1", backend.Owner{UID: uid, Cluster: OtherClusterPrefix + clusterDigest("c2"), Serial: 1}},
		{"no cluster identity", backend.Owner{UID: uid, Serial: 1}, "", backend.Owner{UID: uid, Serial: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			name, err := tokenName("create", tc.owner, "abcdef")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(len(name)).To(BeNumerically("<=", maxNameLen))
			got, ok := decodeOwner(name, tc.reader)
			g.Expect(ok).To(BeTrue())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestOwnerNamesNotOurs(t *testing.T) {
	d8 := clusterDigest("c1")
	for _, name := range []string{
		"",
		"grafana",
		"apitoken-operator",
		"k8s." + d8 + "." + uid + ".1",         // no spec digest
		"k8s." + d8 + "." + uid + ".01.abcdef", // leading zero
		"k8s." + d8 + "." + uid + ".-1.abcdef", // negative
		"k8s." + d8 + "." + strings.ToUpper(uid) + ".1.abcdef",
		"k8s." + d8 + ".not-a-uid.1.abcdef",
		"k8s." + d8 + "." + uid + ".1.abcdef.x",   // suffix
		"x8s." + d8 + "." + uid + ".1.abcdef",     // prefix
		"k8s." + d8[:7] + "." + uid + ".1.abcdef", // short digest
		"k8s." + d8 + "." + uid + ".1.ABCDEF",     // upper-case digest
	} {
		got, ok := decodeOwner(name, "c1")
		NewWithT(t).Expect(ok).To(BeFalse(), name)
		NewWithT(t).Expect(got).To(Equal(backend.Owner{}), name)
	}
}

func TestTokenNameRefuses(t *testing.T) {
	for name, owner := range map[string]backend.Owner{
		"serial too long": {UID: uid, Cluster: "c1", Serial: 10000000},
		"negative serial": {UID: uid, Cluster: "c1", Serial: -1},
		"not a UID":       {UID: "apitoken-1", Cluster: "c1", Serial: 1},
		"no UID":          {Cluster: "c1", Serial: 1},
	} {
		_, err := tokenName("create", owner, "abcdef")
		NewWithT(t).Expect(err).To(HaveOccurred(), name)
		NewWithT(t).Expect(err.(*backend.Error).Kind).To(Equal(backend.KindInvalid), name)
	}
}

func TestSpecDigest(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	base := backend.TokenSpec{Name: "ns/a", Permission: backend.PermissionReadOnly, ExpiresAt: &at, Description: "d"}
	d := specDigest(base)
	g.Expect(d).To(MatchRegexp(`^[0-9a-f]{6}$`))
	g.Expect(specDigest(base)).To(Equal(d), "deterministic")
	subSecond := at.Add(300 * time.Millisecond)
	same := base
	same.ExpiresAt = &subSecond
	g.Expect(specDigest(same)).To(Equal(d), "Zabbix keeps seconds")

	later := at.Add(time.Second)
	for name, spec := range map[string]backend.TokenSpec{
		"name":        {Name: "ns/b", Permission: base.Permission, ExpiresAt: &at, Description: "d"},
		"permission":  {Name: "ns/a", Permission: backend.PermissionFullAccess, ExpiresAt: &at, Description: "d"},
		"expiry":      {Name: "ns/a", Permission: base.Permission, ExpiresAt: &later, Description: "d"},
		"no expiry":   {Name: "ns/a", Permission: base.Permission, Description: "d"},
		"description": {Name: "ns/a", Permission: base.Permission, ExpiresAt: &at, Description: "e"},
	} {
		g.Expect(specDigest(spec)).NotTo(Equal(d), name)
	}
	g.Expect(claimDigest("12")).NotTo(Equal(claimDigest("13")))
}

func TestDescription(t *testing.T) {
	g := NewWithT(t)
	g.Expect(description(backend.TokenSpec{Name: "ns/a", Description: "for grafana"})).To(Equal("ns/a: for grafana"))
	g.Expect(description(backend.TokenSpec{Name: "ns/a"})).To(Equal("ns/a"))
	g.Expect(description(backend.TokenSpec{Description: "only"})).To(Equal("only"))
	long := description(backend.TokenSpec{Name: "ns/a", Description: strings.Repeat("é", 5000)})
	g.Expect([]rune(long)).To(HaveLen(maxDescriptionRunes))
	g.Expect(long).To(HaveSuffix("…"))
}

func TestAuthInHeader(t *testing.T) {
	cases := []struct {
		version string
		header  bool
		bad     bool
	}{
		{"5.4.12", false, false},
		{"6.0.14", false, false},
		{"6.2.9", false, false},
		{"6.4.0", true, false},
		{"7.0.5", true, false},
		{"7.2.0", true, false},
		{"10.0", true, false},
		{"6", false, true},
		{"", false, true},
		{"six.zero", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			g := NewWithT(t)
			header, err := authInHeader(tc.version)
			if tc.bad {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(header).To(Equal(tc.header))
		})
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://z.example":                            "http://z.example/api_jsonrpc.php",
		"https://z.example/zabbix/":                   "https://z.example/zabbix/api_jsonrpc.php",
		"https://z.example/zabbix/api_jsonrpc.php":    "https://z.example/zabbix/api_jsonrpc.php",
		"https://z.example/zabbix/api_jsonrpc.php///": "https://z.example/zabbix/api_jsonrpc.php",
	} {
		got, err := endpointURL(in)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		NewWithT(t).Expect(got).To(Equal(want), in)
	}
}

// fakeAPI answers JSON-RPC requests with reply(method), echoing the request id, and records
// every request.
type fakeAPI struct {
	mu       sync.Mutex
	requests []recorded
	reply    func(method string) (status int, header http.Header, body string)
}

type recorded struct {
	Method string
	Auth   string
	Header string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
		Auth   string          `json:"auth"`
	}
	_ = json.Unmarshal(raw, &req)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{Method: req.Method, Auth: req.Auth, Header: r.Header.Get("Authorization")})
	f.mu.Unlock()
	status, header, body := f.reply(req.Method)
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, strings.ReplaceAll(body, "$ID", string(req.ID)))
}

func (f *fakeAPI) calls() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

func result(v string) string { return `{"jsonrpc":"2.0","result":` + v + `,"id":$ID}` }

func errorReply(code int, message, data string) string {
	b, _ := json.Marshal(map[string]any{"code": code, "message": message, "data": data})
	return `{"jsonrpc":"2.0","error":` + string(b) + `,"id":$ID}`
}

const credential = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testClient(t *testing.T, f *fakeAPI) *rpcClient {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := newRPCClient(backend.Config{URL: srv.URL, Credential: credential, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAuthMethodOnTheWire: before 6.4 the credential goes in the body, from 6.4 in the
// header; apiinfo.version never carries it and is asked once, then again after an
// Unauthorized.
func TestAuthMethodOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		version string
		header  bool
	}{{"6.0.14", false}, {"7.0.0", true}} {
		t.Run(tc.version, func(t *testing.T) {
			g := NewWithT(t)
			unauthorized := false
			f := &fakeAPI{reply: func(method string) (int, http.Header, string) {
				switch {
				case method == "apiinfo.version":
					return 200, nil, result(`"` + tc.version + `"`)
				case unauthorized:
					return 200, nil, errorReply(codeInvalidParams, "Invalid params.", dataNotAuthorized)
				}
				return 200, nil, result(`[]`)
			}}
			c := testClient(t, f)
			ctx := context.Background()
			g.Expect(c.call(ctx, "list", "token.get", map[string]any{}, nil)).To(Succeed())
			g.Expect(c.call(ctx, "list", "token.get", map[string]any{}, nil)).To(Succeed())
			unauthorized = true
			g.Expect(backend.IsUnauthorized(c.call(ctx, "list", "token.get", map[string]any{}, nil))).To(BeTrue())
			unauthorized = false
			g.Expect(c.call(ctx, "list", "token.get", map[string]any{}, nil)).To(Succeed())

			calls := f.calls()
			g.Expect(calls).To(HaveLen(6))
			methods := []string{}
			for _, r := range calls {
				methods = append(methods, r.Method)
			}
			g.Expect(methods).To(Equal([]string{"apiinfo.version", "token.get", "token.get", "token.get", "apiinfo.version", "token.get"}))
			for _, r := range calls {
				if r.Method == "apiinfo.version" {
					g.Expect(r).To(Equal(recorded{Method: r.Method}), "apiinfo.version refuses auth")
					continue
				}
				if tc.header {
					g.Expect(r).To(Equal(recorded{Method: r.Method, Header: "Bearer " + credential}))
				} else {
					g.Expect(r).To(Equal(recorded{Method: r.Method, Auth: credential}))
				}
			}
		})
	}
}

// TestErrorMapping runs recorded replies (Zabbix 6.0.14's, and a proxy's) through the client.
func TestErrorMapping(t *testing.T) {
	value := strings.Repeat("9f", 32)
	cases := []struct {
		name       string
		method     string
		status     int
		header     http.Header
		body       string
		kind       backend.ErrorKind
		message    string
		retryAfter time.Duration
	}{
		{"bad token", "token.get", 200, nil, errorReply(-32602, "Invalid params.", "Not authorized."), backend.KindUnauthorized, "token.get: Not authorized.", 0},
		{"expired token", "token.get", 200, nil, errorReply(-32500, "Application error.", "API token expired."), backend.KindUnauthorized, "token.get: API token expired.", 0},
		{"session terminated", "token.get", 200, nil, errorReply(-32602, "Invalid params.", "Session terminated, re-login, please."), backend.KindUnauthorized, "Session terminated", 0},
		{"role forbids", "token.get", 200, nil, errorReply(-32602, "Invalid params.", `No permissions to call "token.get".`), backend.KindForbidden, `No permissions to call "token.get".`, 0},
		{"token gone", "token.update", 200, nil, errorReply(-32500, "Application error.", "No permissions to referred object or it does not exist!"), backend.KindNotFound, "token.update: No permissions to referred object", 0},
		{"token gone on generate", "token.generate", 200, nil, errorReply(-32500, "Application error.", "No permissions to referred object or it does not exist!"), backend.KindNotFound, "", 0},
		{"other object", "host.create", 200, nil, errorReply(-32500, "Application error.", "No permissions to referred object or it does not exist!"), backend.KindForbidden, "", 0},
		{"duplicate name", "token.create", 200, nil, errorReply(-32602, "Invalid params.", `API token "k8s.x" already exists for userid "3".`), backend.KindConflict, "already exists", 0},
		{"name too long", "token.create", 200, nil, errorReply(-32602, "Invalid params.", `Invalid parameter "/1/name": value is too long.`), backend.KindInvalid, `Invalid parameter "/1/name": value is too long.`, 0},
		{"auth on apiinfo.version", "apiinfo.version", 200, nil, errorReply(-32602, "Invalid params.", `The "apiinfo.version" method must be called without the "auth" parameter.`), backend.KindInvalid, "must be called without", 0},
		{"database down", "token.get", 200, nil, errorReply(-32500, "Application error.", "SQL statement execution has failed \"SELECT ...\""), backend.KindTransient, "SQL statement", 0},
		{"internal error", "token.get", 200, nil, errorReply(-32603, "Internal error.", ""), backend.KindTransient, "Internal error.", 0},
		{"no such method", "token.get", 200, nil, errorReply(-32601, "Method not found.", `Incorrect API "token".`), backend.KindMisconfigured, "", 0},
		{"echoed value", "token.get", 200, nil, errorReply(-32602, "Invalid params.", `Invalid parameter "/1/name": `+value+` is wrong.`), backend.KindInvalid, `"/1/name": [redacted] is wrong`, 0},
		{"echoed truncated value", "token.get", 200, nil, errorReply(-32602, "Invalid params.", `Invalid parameter "/1/name": `+value[:20]+`...`), backend.KindInvalid, `"/1/name": [redacted]...`, 0},
		{"echoed credential", "token.get", 200, nil, errorReply(-32602, "Invalid params.", `auth `+credential), backend.KindInvalid, "auth [redacted]", 0},
		{"HTML page", "token.get", 200, http.Header{"Content-Type": {"text/html"}}, "<html>Zabbix maintenance</html>", backend.KindProtocol, "reply is not JSON-RPC", 0},
		{"neither result nor error", "token.get", 200, nil, `{"jsonrpc":"2.0","id":$ID}`, backend.KindProtocol, "neither result nor error", 0},
		{"another id", "token.get", 200, nil, `{"jsonrpc":"2.0","result":[],"id":987654}`, backend.KindProtocol, "not the JSON-RPC 2.0 answer", 0},
		{"wrong result type", "token.get", 200, nil, result(`{"a":1}`), backend.KindProtocol, "unexpected result", 0},
		{"bad gateway", "token.get", 502, nil, "<html>502</html>", backend.KindTransient, "token.get", 0},
		{"rate limited", "token.get", 429, http.Header{"Retry-After": {"7"}}, "", backend.KindTransient, "", 7 * time.Second},
		{"wrong URL", "token.get", 404, nil, "<html>Not Found</html>", backend.KindProtocol, "", 0},
		{"auth proxy", "token.get", 401, nil, "", backend.KindUnauthorized, "", 0},
		{"too big", "token.get", 200, nil, result(`"` + strings.Repeat("a", int(MaxResponseBytes)) + `"`), backend.KindProtocol, "exceeds", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := &fakeAPI{reply: func(method string) (int, http.Header, string) {
				if method == "apiinfo.version" && tc.method != "apiinfo.version" {
					return 200, nil, result(`"6.0.14"`)
				}
				return tc.status, tc.header, tc.body
			}}
			c := testClient(t, f)
			var out []any
			err := c.send(context.Background(), "get", tc.method, map[string]any{}, tc.method != "apiinfo.version", &out)
			var be *backend.Error
			g.Expect(err).To(BeAssignableToTypeOf(be))
			be = err.(*backend.Error)
			g.Expect(be.Kind).To(Equal(tc.kind))
			g.Expect(be.Op).To(Equal("get"))
			g.Expect(be.StatusCode).To(Equal(tc.status))
			g.Expect(be.RetryAfter).To(Equal(tc.retryAfter))
			g.Expect(be.Message).To(ContainSubstring(tc.message))
			g.Expect(be.Error()).NotTo(ContainSubstring(value))
			g.Expect(be.Error()).NotTo(ContainSubstring(credential))
			g.Expect(be.Error()).NotTo(ContainSubstring("<html>"))
		})
	}
}

func TestTransportErrorIsTransient(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c, err := newRPCClient(backend.Config{URL: srv.URL, Credential: credential})
	g.Expect(err).NotTo(HaveOccurred())
	err = c.callAnon(context.Background(), "self", "apiinfo.version", []any{}, nil)
	g.Expect(backend.IsTransient(err)).To(BeTrue(), "%v", err)
	g.Expect(err.(*backend.Error).StatusCode).To(Equal(0))
}

func TestRedirectsAreRefused(t *testing.T) {
	g := NewWithT(t)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed, with Authorization %q", r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusTemporaryRedirect))
	defer srv.Close()
	c, err := newRPCClient(backend.Config{URL: srv.URL, Credential: credential})
	g.Expect(err).NotTo(HaveOccurred())
	err = c.callAnon(context.Background(), "self", "apiinfo.version", []any{}, nil)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.(*backend.Error).Kind).To(Equal(backend.KindProtocol))
}

func role(typ int, access, mode int, api ...string) *roleWire {
	r := &roleWire{Name: "r", Type: zint(typ)}
	r.Rules.Access, r.Rules.Mode, r.Rules.API = zint(access), zint(mode), api
	return r
}

func TestRoleChecks(t *testing.T) {
	readOnly := []struct {
		role *roleWire
		want string // "" when fine
	}{
		{role(1, 1, 1, "*.get"), ""},
		{role(1, 1, 1, "host.get", "problem.get"), ""},
		{role(1, 1, 1, "*.get", "host.create"), `allows "host.create"`},
		{role(1, 1, 1, "*.*"), `allows "*.*"`},
		{role(1, 1, 1, "token.*"), `allows "token.*"`},
		{role(1, 1, 1), "allow list is empty"},
		{role(1, 1, 0, "host.create"), "is a deny list"},
		{role(1, 0, 1, "*.get"), "API access is disabled"},
		{role(2, 1, 1, "*.get"), "of type Admin"},
		{role(3, 1, 1, "*.get"), "of type Super admin"},
	}
	for _, tc := range readOnly {
		NewWithT(t).Expect(readOnlyRoleProblem(tc.role)).To(ContainSubstring(tc.want), "%+v", tc.role)
		if tc.want == "" {
			NewWithT(t).Expect(readOnlyRoleProblem(tc.role)).To(BeEmpty(), "%+v", tc.role)
		}
	}
	fullAccess := []struct {
		role *roleWire
		want string
	}{
		{role(2, 1, 0, "token.*", "user.*", "role.*", "usergroup.*"), ""},
		{role(1, 1, 0, "usergroup.*", "role.*", "user.*", "token.*", "host.delete"), ""},
		{role(2, 1, 1, "dashboard.*", "host.*"), ""},
		{role(2, 1, 0, "token.*", "user.*"), `lacks "role.*", "usergroup.*"`},
		{role(2, 1, 0), `lacks "token.*", "user.*", "role.*", "usergroup.*"`},
		{role(2, 1, 0, "token.create", "user.*", "role.*", "usergroup.*"), `lacks "token.*"`},
		{role(2, 1, 1, "*.get"), `allows "*.get"`},
		{role(2, 1, 1, "host.*", "user.get"), `allows "user.get"`},
		{role(2, 0, 0, "token.*", "user.*", "role.*", "usergroup.*"), "API access is disabled"},
		{role(3, 1, 0, "token.*", "user.*", "role.*", "usergroup.*"), "of type Super admin"},
	}
	for _, tc := range fullAccess {
		NewWithT(t).Expect(fullAccessRoleProblem(tc.role)).To(ContainSubstring(tc.want), "%+v", tc.role)
		if tc.want == "" {
			NewWithT(t).Expect(fullAccessRoleProblem(tc.role)).To(BeEmpty(), "%+v", tc.role)
		}
	}
}

func TestToTokenStatus(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	d := &Driver{cluster: "c1", now: func() time.Time { return now }}
	acc := &accounts{readOnly: account{id: "3"}, fullAccess: account{id: "4"}, superAdmins: map[string]bool{"1": true}}
	name, _ := tokenName("get", backend.Owner{UID: uid, Cluster: "c1", Serial: 2}, "abcdef")
	cases := []struct {
		name        string
		w           tokenWire
		status      backend.TokenStatus
		deactivated bool
	}{
		{"enabled, no expiry", tokenWire{Status: 0}, backend.StatusActive, false},
		{"enabled, expires later", tokenWire{Status: 0, ExpiresAt: zint(now.Unix() + 1)}, backend.StatusActive, false},
		{"enabled, expires this second", tokenWire{Status: 0, ExpiresAt: zint(now.Unix())}, backend.StatusActive, false},
		{"enabled, expired", tokenWire{Status: 0, ExpiresAt: zint(now.Unix() - 1)}, backend.StatusInactive, false},
		{"disabled", tokenWire{Status: 1}, backend.StatusInactive, true},
		{"disabled and expired", tokenWire{Status: 1, ExpiresAt: 5}, backend.StatusInactive, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			w := tc.w
			w.TokenID, w.UserID, w.Name, w.CreatedAt = "10", "3", name, 1_900_000_000
			got, err := d.toToken("get", &w, acc)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Status).To(Equal(tc.status))
			g.Expect(got.DeactivatedAt != nil).To(Equal(tc.deactivated))
			g.Expect(got.Permission).To(Equal(backend.PermissionReadOnly))
			g.Expect(got.Owner).To(Equal(backend.Owner{UID: uid, Cluster: "c1", Serial: 2}))
			g.Expect(got.LastUsedAt).To(BeNil())
			g.Expect(got.CreatedAt).To(Equal(time.Unix(1_900_000_000, 0).UTC()))
		})
	}
	t.Run("another user's token is nobody's", func(t *testing.T) {
		g := NewWithT(t)
		got, err := d.toToken("get", &tokenWire{TokenID: "11", UserID: "1", Name: name}, acc)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Owner).To(Equal(backend.Owner{}))
		g.Expect(got.Admin).To(BeTrue())
		got, err = d.toToken("get", &tokenWire{TokenID: "12", UserID: "9", Name: name}, acc)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Owner).To(Equal(backend.Owner{}))
		g.Expect(got.Permission).To(BeEmpty(), "never claimed without knowing")
		g.Expect(got.Admin).To(BeFalse())
	})
	t.Run("no valid id or status", func(t *testing.T) {
		for _, w := range []tokenWire{{TokenID: "", Status: 0}, {TokenID: "x1"}, {TokenID: "1", Status: 2}} {
			_, err := d.toToken("get", &w, acc)
			NewWithT(t).Expect(err).To(HaveOccurred())
			NewWithT(t).Expect(err.(*backend.Error).Kind).To(Equal(backend.KindProtocol))
		}
	})
}
