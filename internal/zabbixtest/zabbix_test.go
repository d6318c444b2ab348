package zabbixtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

// These tests check, against a real Zabbix 6.0, what the design page (backends.md, "Zabbix
// mapping") and so the driver rely on. hack/zabbix/README.md lists the exact answers.

func TestMain(m *testing.M) {
	code := m.Run()
	if err := zabbixtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// The answers Zabbix 6.0 gives, as (code, message, data).
var (
	errNotAuthorized = zabbixtest.Error{Code: -32602, Message: "Invalid params.", Data: "Not authorized."}
	errTokenExpired  = zabbixtest.Error{Code: -32500, Message: "Application error.", Data: "API token expired."}
)

func errNoPermissions(method string) zabbixtest.Error {
	return zabbixtest.Error{Code: -32602, Message: "Invalid params.", Data: fmt.Sprintf("No permissions to call %q.", method)}
}

// zabbix wraps the shared server for one test.
type zabbix struct {
	*zabbixtest.Server
	t *testing.T
	g *WithT
}

func setup(t *testing.T) *zabbix {
	t.Helper()
	return &zabbix{Server: zabbixtest.Shared(t), t: t, g: NewWithT(t)}
}

// call calls method with auth and expects success.
func (z *zabbix) call(auth, method string, params any) json.RawMessage {
	z.t.Helper()
	result, err := z.Call(context.Background(), method, params, auth)
	z.g.Expect(err).NotTo(HaveOccurred(), "%s", method)
	return result
}

// callInto calls method and decodes the result into out.
func (z *zabbix) callInto(auth, method string, params, out any) {
	z.t.Helper()
	z.g.Expect(json.Unmarshal(z.call(auth, method, params), out)).To(Succeed(), "%s", method)
}

// refused calls method with auth and expects Zabbix's error answer.
func (z *zabbix) refused(auth, method string, params any) zabbixtest.Error {
	z.t.Helper()
	_, err := z.Call(context.Background(), method, params, auth)
	var zerr *zabbixtest.Error
	z.g.Expect(errors.As(err, &zerr)).To(BeTrue(), "%s: want a Zabbix error answer, got %v", method, err)
	return *zerr
}

var nameSeq atomic.Int64

// uniqueName is a token name no other test uses (Zabbix names are unique per user).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), nameSeq.Add(1))
}

// createToken makes a token for userID (with extra fields) and returns its id.
func (z *zabbix) createToken(userID, name string, extra map[string]any) string {
	z.t.Helper()
	params := map[string]any{"name": name, "userid": userID}
	for k, v := range extra {
		params[k] = v
	}
	var created struct {
		TokenIDs []string `json:"tokenids"`
	}
	z.callInto(z.AdminToken, "token.create", params, &created)
	z.g.Expect(created.TokenIDs).To(HaveLen(1))
	return created.TokenIDs[0]
}

// generate returns a new value for the token.
func (z *zabbix) generate(tokenID string) string {
	z.t.Helper()
	var generated []struct {
		TokenID string `json:"tokenid"`
		Token   string `json:"token"`
	}
	z.callInto(z.AdminToken, "token.generate", []string{tokenID}, &generated)
	z.g.Expect(generated).To(HaveLen(1))
	z.g.Expect(generated[0].TokenID).To(Equal(tokenID))
	return generated[0].Token
}

// issue creates a token for userID and returns its id and value.
func (z *zabbix) issue(userID, prefix string) (id, value string) {
	z.t.Helper()
	id = z.createToken(userID, uniqueName(prefix), nil)
	return id, z.generate(id)
}

// token is a token.get record; Zabbix returns every number as a string.
type token struct {
	TokenID       string `json:"tokenid"`
	Name          string `json:"name"`
	Description   string `json:"description"`
	UserID        string `json:"userid"`
	LastAccess    string `json:"lastaccess"`
	Status        string `json:"status"`
	ExpiresAt     string `json:"expires_at"`
	CreatedAt     string `json:"created_at"`
	CreatorUserID string `json:"creator_userid"`
}

func (z *zabbix) getToken(tokenID string) token {
	z.t.Helper()
	var tokens []token
	z.callInto(z.AdminToken, "token.get", map[string]any{"tokenids": []string{tokenID}}, &tokens)
	z.g.Expect(tokens).To(HaveLen(1))
	return tokens[0]
}

func unix(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// nextSecond sleeps into the next wall-clock second, so that a Unix-seconds stamp written
// afterwards differs from one written before.
func nextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
}

func TestAPIInfoVersionNeedsNoAuth(t *testing.T) {
	z := setup(t)
	var version string
	z.callInto("", "apiinfo.version", nil, &version)
	z.g.Expect(version).To(HavePrefix("6.0."))
	z.g.Expect(version).To(Equal(z.Version))

	z.g.Expect(z.refused(z.AdminToken, "apiinfo.version", nil)).To(Equal(zabbixtest.Error{
		Code: -32602, Message: "Invalid params.",
		Data: `The "apiinfo.version" method must be called without the "auth" parameter.`,
	}))
}

// TestAuthInBodyNotBearer: 6.0 reads the token from the body's "auth" only; an
// Authorization: Bearer header is ignored, so the call is unauthenticated.
func TestAuthInBodyNotBearer(t *testing.T) {
	z := setup(t)
	z.call(z.AdminToken, "host.get", map[string]any{"output": []string{"hostid"}, "limit": 1})

	bearer := func(withAuthInBody bool) (json.RawMessage, error) {
		body := `{"jsonrpc":"2.0","method":"host.get","params":{"output":["hostid"],"limit":1},"id":1}`
		if withAuthInBody {
			body = strings.Replace(body, `"id":1`, `"auth":"`+z.AdminToken+`","id":1`, 1)
		}
		req, err := http.NewRequest(http.MethodPost, z.APIURL, strings.NewReader(body))
		z.g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json-rpc")
		req.Header.Set("Authorization", "Bearer "+z.AdminToken)
		return z.Do(req)
	}
	_, err := bearer(false)
	var zerr *zabbixtest.Error
	z.g.Expect(errors.As(err, &zerr)).To(BeTrue(), "got %v", err)
	z.g.Expect(*zerr).To(Equal(errNotAuthorized))
	_, err = bearer(true)
	z.g.Expect(err).NotTo(HaveOccurred(), "the header is ignored next to auth in the body")

	z.g.Expect(z.refused("", "host.get", nil)).To(Equal(errNotAuthorized))
}

// TestTokenCreateReturnsOnlyIDsAndGenerateTheValue: the value exists only in token.generate's
// answer, as 64 hex digits.
func TestTokenCreateReturnsOnlyIDsAndGenerateTheValue(t *testing.T) {
	z := setup(t)
	raw := z.call(z.AdminToken, "token.create", map[string]any{"name": uniqueName("create"), "userid": z.ReadOnlyUser.ID})
	var created map[string][]string
	z.g.Expect(json.Unmarshal(raw, &created)).To(Succeed(), "%s", raw)
	z.g.Expect(created).To(HaveLen(1))
	z.g.Expect(created).To(HaveKeyWithValue("tokenids", HaveLen(1)))
	id := created["tokenids"][0]

	var generated []map[string]string
	z.callInto(z.AdminToken, "token.generate", []string{id}, &generated)
	z.g.Expect(generated).To(HaveLen(1))
	z.g.Expect(generated[0]).To(HaveLen(2))
	z.g.Expect(generated[0]).To(HaveKeyWithValue("tokenid", id))
	z.g.Expect(generated[0]["token"]).To(MatchRegexp(`^[0-9a-f]{64}$`))

	// token.get never returns the value (nor its hash).
	var tokens []map[string]any
	z.callInto(z.AdminToken, "token.get", map[string]any{"tokenids": []string{id}, "output": "extend"}, &tokens)
	z.g.Expect(tokens).To(HaveLen(1))
	z.g.Expect(tokens[0]).NotTo(HaveKey("token"))
}

func TestTokenNames(t *testing.T) {
	z := setup(t)
	name := uniqueName("dup")
	z.createToken(z.ReadOnlyUser.ID, name, nil)
	z.g.Expect(z.refused(z.AdminToken, "token.create", map[string]any{"name": name, "userid": z.ReadOnlyUser.ID})).To(Equal(zabbixtest.Error{
		Code: -32602, Message: "Invalid params.",
		Data: fmt.Sprintf("API token %q already exists for userid %q.", name, z.ReadOnlyUser.ID),
	}))
	// Unique per user, not globally.
	z.createToken(z.FullAccessUser.ID, name, nil)

	long := uniqueName("len")
	long += strings.Repeat("x", 64-len(long))
	z.createToken(z.ReadOnlyUser.ID, long, nil)
	z.g.Expect(z.refused(z.AdminToken, "token.create", map[string]any{"name": long + "y", "userid": z.ReadOnlyUser.ID})).To(Equal(zabbixtest.Error{
		Code: -32602, Message: "Invalid params.", Data: `Invalid parameter "/1/name": value is too long.`,
	}))
}

// TestPermissionsOfTheTwoUsers: what the roles bootstrap.php made allow and refuse.
func TestPermissionsOfTheTwoUsers(t *testing.T) {
	z := setup(t)
	_, readOnly := z.issue(z.ReadOnlyUser.ID, "perm-ro")
	_, fullAccess := z.issue(z.FullAccessUser.ID, "perm-fa")
	inGroup := func(name string) map[string]any {
		return map[string]any{"host": uniqueName(name), "groups": []map[string]string{{"groupid": z.HostGroup.ID}}}
	}

	cases := []struct {
		name    string
		auth    string
		method  string
		params  any
		refusal *zabbixtest.Error // nil: the call succeeds
	}{
		{"read-only gets hosts", readOnly, "host.get", map[string]any{"output": []string{"hostid"}}, nil},
		{"read-only lists its own tokens", readOnly, "token.get", map[string]any{"output": []string{"tokenid"}}, nil},
		{"read-only cannot create a host", readOnly, "host.create", inGroup("ro"), ptr(errNoPermissions("host.create"))},
		{"read-only cannot create a token", readOnly, "token.create", map[string]any{"name": uniqueName("ro")}, ptr(errNoPermissions("token.create"))},
		{"full access creates a dashboard", fullAccess, "dashboard.create", map[string]any{"name": uniqueName("dash"), "pages": []map[string]any{{"widgets": []any{}}}}, nil},
		{"full access creates a host in its group", fullAccess, "host.create", inGroup("fa"), nil},
		{"full access cannot write a group it has no rights on", fullAccess, "host.create",
			map[string]any{"host": uniqueName("fa"), "groups": []map[string]string{{"groupid": "2"}}}, // Linux servers
			&zabbixtest.Error{Code: -32500, Message: "Application error.", Data: "No permissions to referred object or it does not exist!"}},
		{"full access cannot create a token", fullAccess, "token.create", map[string]any{"name": uniqueName("fa")}, ptr(errNoPermissions("token.create"))},
		{"full access cannot list tokens", fullAccess, "token.get", nil, ptr(errNoPermissions("token.get"))},
		{"full access cannot list users", fullAccess, "user.get", nil, ptr(errNoPermissions("user.get"))},
		{"full access cannot list roles", fullAccess, "role.get", nil, ptr(errNoPermissions("role.get"))},
		{"full access cannot list user groups", fullAccess, "usergroup.get", nil, ptr(errNoPermissions("usergroup.get"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			z := &zabbix{Server: z.Server, t: t, g: NewWithT(t)}
			if tc.refusal == nil {
				z.call(tc.auth, tc.method, tc.params)
				return
			}
			z.g.Expect(z.refused(tc.auth, tc.method, tc.params)).To(Equal(*tc.refusal))
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestTokenLifecycle: disable and re-enable, expire and extend, regenerate, delete.
func TestTokenLifecycle(t *testing.T) {
	z := setup(t)
	id, value := z.issue(z.FullAccessUser.ID, "life")
	use := func(auth string) error {
		_, err := z.Call(context.Background(), "host.get", map[string]any{"output": []string{"hostid"}, "limit": 1}, auth)
		return err
	}
	refusal := func(auth string) zabbixtest.Error {
		t.Helper()
		return z.refused(auth, "host.get", map[string]any{"output": []string{"hostid"}, "limit": 1})
	}
	update := func(fields map[string]any) {
		t.Helper()
		fields["tokenid"] = id
		z.call(z.AdminToken, "token.update", fields)
	}
	z.g.Expect(use(value)).To(Succeed())

	update(map[string]any{"status": 1})
	z.g.Expect(z.getToken(id).Status).To(Equal("1"))
	z.g.Expect(refusal(value)).To(Equal(errNotAuthorized))
	update(map[string]any{"status": 0})
	z.g.Expect(use(value)).To(Succeed())

	update(map[string]any{"expires_at": time.Now().Add(-time.Minute).Unix()})
	z.g.Expect(refusal(value)).To(Equal(errTokenExpired))
	later := time.Now().Add(time.Hour).Unix()
	update(map[string]any{"expires_at": later})
	z.g.Expect(z.getToken(id).ExpiresAt).To(Equal(strconv.FormatInt(later, 10)))
	z.g.Expect(use(value)).To(Succeed())
	update(map[string]any{"expires_at": 0})
	z.g.Expect(z.getToken(id).ExpiresAt).To(Equal("0"))

	// Generating again kills the value it replaces.
	regenerated := z.generate(id)
	z.g.Expect(regenerated).NotTo(Equal(value))
	z.g.Expect(refusal(value)).To(Equal(errNotAuthorized))
	z.g.Expect(use(regenerated)).To(Succeed())

	// A disabled token can be regenerated; it stays disabled.
	update(map[string]any{"status": 1})
	disabledValue := z.generate(id)
	z.g.Expect(z.getToken(id).Status).To(Equal("1"))
	z.g.Expect(refusal(disabledValue)).To(Equal(errNotAuthorized))
	update(map[string]any{"status": 0})
	z.g.Expect(use(disabledValue)).To(Succeed())

	z.call(z.AdminToken, "token.delete", []string{id})
	z.g.Expect(refusal(disabledValue)).To(Equal(errNotAuthorized))

	// A token may be created already expired or disabled.
	expiredID := z.createToken(z.ReadOnlyUser.ID, uniqueName("born-expired"), map[string]any{"expires_at": 1000})
	z.g.Expect(refusal(z.generate(expiredID))).To(Equal(errTokenExpired))
	disabledID := z.createToken(z.ReadOnlyUser.ID, uniqueName("born-disabled"), map[string]any{"status": 1})
	z.g.Expect(refusal(z.generate(disabledID))).To(Equal(errNotAuthorized))
}

// TestTokenGetInventory: one token.get filtered by the two users' ids returns what the
// inventory reads.
func TestTokenGetInventory(t *testing.T) {
	z := setup(t)
	before := time.Now().Unix()
	expires := time.Now().Add(24 * time.Hour).Unix()
	roName, faName := uniqueName("inv-ro"), uniqueName("inv-fa")
	roID := z.createToken(z.ReadOnlyUser.ID, roName, map[string]any{"description": "ns/reader", "expires_at": expires})
	faID := z.createToken(z.FullAccessUser.ID, faName, map[string]any{"description": "ns/writer"})
	after := time.Now().Unix()

	var tokens []token
	z.callInto(z.AdminToken, "token.get", map[string]any{
		"output":  []string{"tokenid", "name", "description", "userid", "lastaccess", "status", "expires_at", "created_at", "creator_userid"},
		"userids": []string{z.ReadOnlyUser.ID, z.FullAccessUser.ID},
	}, &tokens)
	byID := map[string]token{}
	for _, tk := range tokens {
		z.g.Expect([]string{z.ReadOnlyUser.ID, z.FullAccessUser.ID}).To(ContainElement(tk.UserID))
		byID[tk.TokenID] = tk
	}
	z.g.Expect(byID).To(HaveKey(roID))
	z.g.Expect(byID).To(HaveKey(faID))
	ro, fa := byID[roID], byID[faID]
	z.g.Expect(ro).To(Equal(token{
		TokenID: roID, Name: roName, Description: "ns/reader", UserID: z.ReadOnlyUser.ID, LastAccess: "0",
		Status: "0", ExpiresAt: strconv.FormatInt(expires, 10), CreatedAt: ro.CreatedAt, CreatorUserID: z.AdminUser.ID,
	}))
	z.g.Expect(unix(ro.CreatedAt)).To(BeNumerically("~", before, after-before+1))
	z.g.Expect(fa.Name).To(Equal(faName))
	z.g.Expect(fa.UserID).To(Equal(z.FullAccessUser.ID))
	z.g.Expect(fa.ExpiresAt).To(Equal("0"))
	z.g.Expect(fa.LastAccess).To(Equal("0"))

	// The same through "filter", as the design's wording has it.
	var filtered []token
	z.callInto(z.AdminToken, "token.get", map[string]any{"filter": map[string]any{"userid": []string{z.ReadOnlyUser.ID}}}, &filtered)
	z.g.Expect(filtered).To(ContainElement(HaveField("TokenID", roID)))
	z.g.Expect(filtered).NotTo(ContainElement(HaveField("TokenID", faID)))
}

// TestLastAccess: lastaccess (Unix seconds) is written on every authenticated call, also a
// call the role then refuses, and by user.checkAuthentication; looking a value up with the
// admin's token.get {"token": value} leaves it alone.
func TestLastAccess(t *testing.T) {
	z := setup(t)
	id, value := z.issue(z.ReadOnlyUser.ID, "lastaccess")
	z.g.Expect(z.getToken(id).LastAccess).To(Equal("0"))

	stampOf := func(action func()) int64 {
		t.Helper()
		nextSecond()
		before := time.Now().Unix()
		action()
		after := time.Now().Unix()
		stamp := unix(z.getToken(id).LastAccess)
		z.g.Expect(stamp).To(BeNumerically(">=", before))
		z.g.Expect(stamp).To(BeNumerically("<=", after))
		return stamp
	}
	first := stampOf(func() { z.call(value, "host.get", map[string]any{"limit": 1}) })
	second := stampOf(func() { z.call(value, "host.get", map[string]any{"limit": 1}) })
	z.g.Expect(second).To(BeNumerically(">", first), "every call writes lastaccess")
	third := stampOf(func() { z.refused(value, "host.create", map[string]any{"host": uniqueName("la")}) })
	z.g.Expect(third).To(BeNumerically(">", second), "a refused call writes it too")
	fourth := stampOf(func() { z.call("", "user.checkAuthentication", map[string]any{"token": value}) })
	z.g.Expect(fourth).To(BeNumerically(">", third), "user.checkAuthentication writes it")

	nextSecond()
	var found []token
	z.callInto(z.AdminToken, "token.get", map[string]any{"token": value}, &found)
	z.g.Expect(found).To(HaveLen(1))
	z.g.Expect(unix(z.getToken(id).LastAccess)).To(Equal(fourth), "token.get by value does not")
}

// TestVerifyTokenValue: two ways to learn whose a value is (adoption). The admin's
// token.get {"token": value} gives the tokenid, the owner, status and expiry without using the
// value; user.checkAuthentication {"token": value} (no auth) authenticates with it, gives the
// user (not the tokenid) and stamps lastaccess.
func TestVerifyTokenValue(t *testing.T) {
	z := setup(t)
	id, value := z.issue(z.FullAccessUser.ID, "verify")

	var found []token
	z.callInto(z.AdminToken, "token.get", map[string]any{"token": value}, &found)
	z.g.Expect(found).To(HaveLen(1))
	z.g.Expect(found[0].TokenID).To(Equal(id))
	z.g.Expect(found[0].UserID).To(Equal(z.FullAccessUser.ID))
	var none []token
	z.callInto(z.AdminToken, "token.get", map[string]any{"token": strings.Repeat("0", 64)}, &none)
	z.g.Expect(none).To(BeEmpty())

	var user map[string]any
	z.callInto("", "user.checkAuthentication", map[string]any{"token": value}, &user)
	z.g.Expect(user).To(HaveKeyWithValue("userid", z.FullAccessUser.ID))
	z.g.Expect(user).To(HaveKeyWithValue("username", z.FullAccessUser.Name))
	z.g.Expect(user).To(HaveKeyWithValue("roleid", z.FullAccessUser.RoleID))
	z.g.Expect(user).To(HaveKeyWithValue("type", BeNumerically("==", 2)))
	z.g.Expect(user).NotTo(HaveKey("tokenid"))

	z.g.Expect(z.refused(value, "user.checkAuthentication", map[string]any{"token": value})).To(Equal(zabbixtest.Error{
		Code: -32602, Message: "Invalid params.",
		Data: `The "user.checkAuthentication" method must be called without the "auth" parameter.`,
	}))
	z.g.Expect(z.refused("", "user.checkAuthentication", map[string]any{"token": strings.Repeat("0", 64)})).To(Equal(errNotAuthorized))
	z.call(z.AdminToken, "token.update", map[string]any{"tokenid": id, "status": 1})
	z.g.Expect(z.refused("", "user.checkAuthentication", map[string]any{"token": value})).To(Equal(errNotAuthorized))
	z.call(z.AdminToken, "token.update", map[string]any{"tokenid": id, "status": 0, "expires_at": 1000})
	z.g.Expect(z.refused("", "user.checkAuthentication", map[string]any{"token": value})).To(Equal(errTokenExpired))
	// token.get finds disabled and expired tokens all the same: the caller checks them.
	z.callInto(z.AdminToken, "token.get", map[string]any{"token": value}, &found)
	z.g.Expect(found).To(HaveLen(1))
	z.g.Expect(found[0].ExpiresAt).To(Equal("1000"))
}

// TestRoles: the roles and groups as the backend check will read them.
func TestRoles(t *testing.T) {
	z := setup(t)
	type rules struct {
		APIAccess string   `json:"api.access"`
		APIMode   string   `json:"api.mode"`
		API       []string `json:"api"`
	}
	type role struct {
		RoleID string `json:"roleid"`
		Name   string `json:"name"`
		Type   string `json:"type"`
		Rules  rules  `json:"rules"`
	}
	var roles []role
	z.callInto(z.AdminToken, "role.get", map[string]any{
		"roleids":     []string{z.ReadOnlyUser.RoleID, z.FullAccessUser.RoleID},
		"output":      []string{"roleid", "name", "type"},
		"selectRules": []string{"api.access", "api.mode", "api"},
	}, &roles)
	z.g.Expect(roles).To(ConsistOf(
		role{RoleID: z.ReadOnlyUser.RoleID, Name: "apitoken-readonly", Type: "1", Rules: rules{APIAccess: "1", APIMode: "1", API: []string{"*.get"}}},
		role{RoleID: z.FullAccessUser.RoleID, Name: "apitoken-fullaccess", Type: "2", Rules: rules{APIAccess: "1", APIMode: "0", API: []string{"token.*", "user.*", "role.*", "usergroup.*"}}},
	))

	type user struct {
		UserID string `json:"userid"`
		RoleID string `json:"roleid"`
		Groups []struct {
			ID string `json:"usrgrpid"`
		} `json:"usrgrps"`
	}
	var users []user
	z.callInto(z.AdminToken, "user.get", map[string]any{
		"userids": []string{z.ReadOnlyUser.ID, z.FullAccessUser.ID}, "output": []string{"userid", "roleid"}, "selectUsrgrps": []string{"usrgrpid"},
	}, &users)
	z.g.Expect(users).To(HaveLen(2))
	for _, u := range users {
		want := map[string]zabbixtest.User{z.ReadOnlyUser.ID: z.ReadOnlyUser, z.FullAccessUser.ID: z.FullAccessUser}[u.UserID]
		z.g.Expect(u.RoleID).To(Equal(want.RoleID))
		z.g.Expect(u.Groups).To(HaveLen(1))
		z.g.Expect(u.Groups[0].ID).To(Equal(want.UserGroupID))
	}

	type group struct {
		ID     string `json:"usrgrpid"`
		Rights []struct {
			ID         string `json:"id"`
			Permission string `json:"permission"`
		} `json:"rights"`
	}
	var groups []group
	z.callInto(z.AdminToken, "usergroup.get", map[string]any{
		"usrgrpids": []string{z.ReadOnlyUser.UserGroupID, z.FullAccessUser.UserGroupID}, "output": []string{"usrgrpid"}, "selectRights": "extend",
	}, &groups)
	z.g.Expect(groups).To(HaveLen(2))
	for _, g := range groups {
		z.g.Expect(g.Rights).To(HaveLen(1))
		z.g.Expect(g.Rights[0].ID).To(Equal(z.HostGroup.ID))
		permission := map[string]string{z.ReadOnlyUser.UserGroupID: "2", z.FullAccessUser.UserGroupID: "3"}[g.ID] // read, read-write
		z.g.Expect(g.Rights[0].Permission).To(Equal(permission))
	}

	// The operator's credential is a Super admin's.
	var admin map[string]any
	z.callInto("", "user.checkAuthentication", map[string]any{"token": z.AdminToken}, &admin)
	z.g.Expect(admin).To(HaveKeyWithValue("type", BeNumerically("==", 3)))
}

// TestStartIsolatedAndStops: a server of its own has a database of its own, and Stop ends
// every process and removes its directory; a second Stop is harmless.
func TestStartIsolatedAndStops(t *testing.T) {
	shared := setup(t)
	own := zabbixtest.Start(t)
	g := NewWithT(t)
	g.Expect(own.URL).NotTo(Equal(shared.URL))
	g.Expect(own.URL).To(MatchRegexp(`^http://127\.0\.0\.1:\d+$`))

	name := uniqueName("only-here")
	_, err := own.Call(context.Background(), "hostgroup.create", map[string]any{"name": name}, own.AdminToken)
	g.Expect(err).NotTo(HaveOccurred())
	var groups []map[string]any
	shared.callInto(shared.AdminToken, "hostgroup.get", map[string]any{"filter": map[string]any{"name": name}}, &groups)
	g.Expect(groups).To(BeEmpty())

	pids := []int{readPID(t, filepath.Join(own.Dir, "php.pid")), readPID(t, filepath.Join(own.Dir, "pg", "data", "postmaster.pid"))}
	for _, pid := range pids {
		g.Expect(running(pid)).To(BeTrue(), "pid %d", pid)
	}
	g.Expect(own.Stop()).To(Succeed())
	for _, pid := range pids {
		g.Expect(running(pid)).To(BeFalse(), "pid %d still runs after Stop", pid)
	}
	_, err = os.Stat(own.Dir)
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "%s remains: %v", own.Dir, err)
	host := strings.TrimPrefix(own.URL, "http://")
	conn, err := net.DialTimeout("tcp", host, time.Second)
	if err == nil {
		_ = conn.Close()
	}
	g.Expect(err).To(HaveOccurred(), "%s still accepts connections", host)
	g.Expect(own.Stop()).To(Succeed())
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// running: the process exists and is not a zombie (which the machine's init reaps late).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
