package zabbix

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/statusops/apitoken-operator/internal/backend"
)

// Zabbix role (user) types.
const (
	roleTypeUser       = 1
	roleTypeAdmin      = 2
	roleTypeSuperAdmin = 3
)

// minMajor.minMinor is the first Zabbix with API tokens.
const minMajor, minMinor = 5, 4

// managementObjects are the API objects a full-access token must never call: with them a
// workload's token could mint tokens or grant itself rights.
var managementObjects = []string{"token", "user", "role", "usergroup"}

// readMethod is an API access rule that only reads: "*.get" or "<object>.get".
var readMethod = regexp.MustCompile(`^(\*|[a-z0-9]+)\.get$`)

// roleWire is a role.get item with its API rules and users.
type roleWire struct {
	RoleID string `json:"roleid"`
	Name   string `json:"name"`
	Type   zint   `json:"type"`
	Rules  struct {
		Access zint     `json:"api.access"`
		Mode   zint     `json:"api.mode"`
		API    []string `json:"api"`
	} `json:"rules"`
	Users []struct {
		UserID   string `json:"userid"`
		Username string `json:"username"`
	} `json:"users"`
}

// account is one of the two users tokens are minted for, with its role.
type account struct {
	setting  string // the setting that names it
	username string
	id       string // "" when no such user exists
	role     *roleWire
}

// accounts is what the driver learns of the users, cached until the next check.
type accounts struct {
	readOnly, fullAccess account
	// superAdmins are the ids of users whose role is of type Super admin: their tokens are
	// admin credentials.
	superAdmins map[string]bool
	// problem is the misconfiguration the last load found (KindMisconfigured), or nil.
	problem *backend.Error
}

// permission is what a token of userID may do; "" when the driver cannot tell.
func (a *accounts) permission(userID string) backend.Permission {
	switch {
	case userID == "":
		return ""
	case userID == a.readOnly.id:
		return backend.PermissionReadOnly
	case userID == a.fullAccess.id, a.superAdmins[userID]:
		return backend.PermissionFullAccess
	}
	return ""
}

// owns reports whether tokens of userID can be the operator's: only the two users' tokens.
func (a *accounts) owns(userID string) bool {
	return userID != "" && (userID == a.readOnly.id || userID == a.fullAccess.id)
}

// Self implements backend.Driver; it is the backend check:
//  1. apiinfo.version (read again at every check): 5.4 or later;
//  2. user.checkAuthentication with the credential: which user it is, and its type; a user
//     that is not a Super admin gets Admin false and nothing more is checked;
//  3. token.get {token: credential}: the credential's own token object;
//  4. role.get with rules and users: the Super admins, the two users and their roles;
//  5. user.get of the two users' groups: none may be disabled.
//
// A wrong user or role is a KindMisconfigured error that says what to fix.
func (d *Driver) Self(ctx context.Context) (*backend.Token, error) {
	const op = "self"
	version, err := d.rpc.readVersion(ctx, op)
	if err != nil {
		return nil, err
	}
	if major, minor, _ := parseVersion(version); major < minMajor || (major == minMajor && minor < minMinor) {
		return nil, backend.NewError(op, backend.KindMisconfigured, 0, "Zabbix %s has no API tokens; use Zabbix %d.%d or later", backend.Sanitize(version, ""), minMajor, minMinor)
	}
	var me struct {
		UserID   string `json:"userid"`
		Username string `json:"username"`
		Type     zint   `json:"type"`
	}
	// It must be called without "auth", and with the token as its parameter.
	if err := d.rpc.callAnon(ctx, op, "user.checkAuthentication", map[string]any{"token": d.rpc.credential.Reveal()}, &me); err != nil {
		return nil, err
	}
	if me.Type != roleTypeSuperAdmin {
		// Only a Super admin may manage other users' tokens; the operator reports Admin false.
		// Such a user may not read its own token object (the full-access role cannot call
		// token.get), so the answer has no id.
		var p backend.Permission
		switch me.Username {
		case d.readOnlyUser:
			p = backend.PermissionReadOnly
		case d.fullAccessUser:
			p = backend.PermissionFullAccess
		}
		return &backend.Token{Permission: p, Status: backend.StatusActive, Admin: false}, nil
	}
	var own []tokenWire
	if err := d.rpc.call(ctx, op, "token.get", map[string]any{"output": "extend", "token": d.rpc.credential.Reveal()}, &own); err != nil {
		return nil, err
	}
	if len(own) != 1 {
		return nil, backend.NewError(op, backend.KindMisconfigured, 0, "the credential authenticates as Super admin %s but is not one of its API tokens (a session id?); create an API token for that user and use its value", quote(me.Username))
	}
	acc, err := d.loadAccounts(ctx, op)
	if err != nil {
		return nil, err
	}
	if acc.problem != nil {
		return nil, acc.problem
	}
	t, err := d.toToken(op, &own[0], acc)
	if err != nil {
		return nil, err
	}
	t.Admin = true
	return t, nil
}

// accountsFor returns the cached accounts, loading them when there are none yet.
func (d *Driver) accountsFor(ctx context.Context, op string) (*accounts, error) {
	d.mu.Lock()
	acc := d.acc
	d.mu.Unlock()
	if acc != nil {
		return acc, nil
	}
	return d.loadAccounts(ctx, op)
}

// loadAccounts reads the roles with their users (one role.get), finds the two users and the
// Super admins, checks the roles and the users' groups, and caches the result.
func (d *Driver) loadAccounts(ctx context.Context, op string) (*accounts, error) {
	var roles []roleWire
	params := map[string]any{
		"output":      []string{"roleid", "name", "type"},
		"selectRules": []string{"api.access", "api.mode", "api"},
		"selectUsers": []string{"userid", "username"},
	}
	if err := d.rpc.call(ctx, op, "role.get", params, &roles); err != nil {
		return nil, err
	}
	acc := &accounts{
		readOnly:    account{setting: SettingReadOnlyUser, username: d.readOnlyUser},
		fullAccess:  account{setting: SettingFullAccessUser, username: d.fullAccessUser},
		superAdmins: map[string]bool{},
	}
	for i := range roles {
		r := &roles[i]
		for _, u := range r.Users {
			if r.Type == roleTypeSuperAdmin {
				acc.superAdmins[u.UserID] = true
			}
			for _, a := range []*account{&acc.readOnly, &acc.fullAccess} {
				if u.Username == a.username {
					a.id, a.role = u.UserID, r
				}
			}
		}
	}
	acc.problem = checkAccounts(op, &acc.readOnly, &acc.fullAccess)
	if acc.problem == nil {
		problem, err := d.checkGroups(ctx, op, acc)
		if err != nil {
			return nil, err
		}
		acc.problem = problem
	}
	d.mu.Lock()
	d.acc = acc
	d.mu.Unlock()
	return acc, nil
}

// checkGroups refuses a user in a disabled user group: Zabbix refuses its tokens.
func (d *Driver) checkGroups(ctx context.Context, op string, acc *accounts) (*backend.Error, error) {
	var users []struct {
		UserID   string `json:"userid"`
		Username string `json:"username"`
		Groups   []struct {
			Name   string `json:"name"`
			Status zint   `json:"users_status"`
		} `json:"usrgrps"`
	}
	params := map[string]any{
		"output":        []string{"userid", "username"},
		"userids":       []string{acc.readOnly.id, acc.fullAccess.id},
		"selectUsrgrps": []string{"name", "users_status"},
	}
	if err := d.rpc.call(ctx, op, "user.get", params, &users); err != nil {
		return nil, err
	}
	for _, u := range users {
		for _, g := range u.Groups {
			if g.Status != 0 {
				return backend.NewError(op, backend.KindMisconfigured, 0, "user %s is in user group %s, which is disabled, so Zabbix refuses its tokens; enable the group or take the user out of it", quote(u.Username), quote(g.Name)), nil
			}
		}
	}
	return nil, nil
}

// checkAccounts says what is wrong with the two users and their roles, or nil: each must
// exist; the read-only role must be of type User with API access limited to *.get methods
// (an allow list); the full-access role must not be Super admin and must keep token.*,
// user.*, role.* and usergroup.* out of reach.
func checkAccounts(op string, ro, fa *account) *backend.Error {
	for _, a := range []*account{ro, fa} {
		if a.id == "" {
			return backend.NewError(op, backend.KindMisconfigured, 0, "user %q (setting %s) does not exist on Zabbix; create it, or name an existing user (docs/backends/zabbix.md)", a.username, a.setting)
		}
	}
	if msg := readOnlyRoleProblem(ro.role); msg != "" {
		return backend.NewError(op, backend.KindMisconfigured, 0, "user %q has role %s %s", ro.username, quote(ro.role.Name), msg)
	}
	if msg := fullAccessRoleProblem(fa.role); msg != "" {
		return backend.NewError(op, backend.KindMisconfigured, 0, "user %q has role %s %s", fa.username, quote(fa.role.Name), msg)
	}
	return nil
}

// readOnlyRoleProblem completes "user X has role Y ..." when the role is not read-only.
func readOnlyRoleProblem(r *roleWire) string {
	const want = "the read-only role must be of type User with API access enabled as an allow list of *.get methods only"
	switch {
	case r.Type != roleTypeUser:
		return fmt.Sprintf("of type %s; %s", roleTypeName(r.Type), want)
	case r.Rules.Access != 1:
		return "whose API access is disabled; " + want
	case r.Rules.Mode != 1:
		return "whose API access is a deny list; " + want
	case len(r.Rules.API) == 0:
		return "whose API allow list is empty; " + want
	}
	for _, m := range r.Rules.API {
		if !readMethod.MatchString(m) {
			return fmt.Sprintf("whose API access allows %s; the read-only role must allow only *.get methods", quote(m))
		}
	}
	return ""
}

// fullAccessRoleProblem completes "user X has role Y ..." when the role may manage tokens,
// users or roles.
func fullAccessRoleProblem(r *roleWire) string {
	const want = "the full-access role must deny token.*, user.*, role.* and usergroup.* (a deny list holding them, or an allow list without them)"
	switch {
	case r.Type == roleTypeSuperAdmin:
		return "of type Super admin, whose tokens would be admin credentials; use a role of type Admin or User: " + want
	case r.Rules.Access != 1:
		return "whose API access is disabled; enable it, and " + want
	case r.Rules.Mode == 0:
		var missing []string
		for _, o := range managementObjects {
			if !slices.Contains(r.Rules.API, o+".*") {
				missing = append(missing, fmt.Sprintf("%q", o+".*"))
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("whose API deny list lacks %s; %s", strings.Join(missing, ", "), want)
		}
	default:
		for _, m := range r.Rules.API {
			obj, _, _ := strings.Cut(m, ".")
			if obj == "*" || slices.Contains(managementObjects, obj) {
				return fmt.Sprintf("whose API allow list allows %s; %s", quote(m), want)
			}
		}
	}
	return ""
}

// quote quotes a name the server sent, made safe for a message (and short).
func quote(s string) string {
	const maxLen = 64
	s = backend.Sanitize(hexRun.ReplaceAllString(s, "[redacted]"), "")
	if r := []rune(s); len(r) > maxLen {
		s = string(r[:maxLen]) + "…"
	}
	return strconv.Quote(s)
}

func roleTypeName(t zint) string {
	switch t {
	case roleTypeUser:
		return "User"
	case roleTypeAdmin:
		return "Admin"
	case roleTypeSuperAdmin:
		return "Super admin"
	}
	return fmt.Sprintf("%d", int64(t))
}
