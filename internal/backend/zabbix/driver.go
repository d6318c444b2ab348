package zabbix

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
)

// DriverName is the name backend objects give this driver.
const DriverName = "zabbix"

// The driver's settings (backend.Config.Settings): the Zabbix usernames tokens are minted for.
const (
	SettingReadOnlyUser   = "readOnlyUser"
	SettingFullAccessUser = "fullAccessUser"
)

// Zabbix token statuses.
const (
	statusEnabled  = 0
	statusDisabled = 1
)

// DeactivatedUnknown is Token.DeactivatedAt of a disabled token: Zabbix keeps no time of it, and
// the operator needs a non-nil value to know the token was deactivated (not only expired).
var DeactivatedUnknown = time.Unix(0, 0).UTC()

// maxExpiry is the latest expires_at Zabbix stores (a signed 32-bit integer).
var maxExpiry = time.Unix(math.MaxInt32, 0).UTC()

// Driver is the Zabbix driver: a backend.Driver, a backend.Claimer and a backend.Identifier.
type Driver struct {
	rpc            *rpcClient
	cluster        string
	readOnlyUser   string
	fullAccessUser string
	now            func() time.Time

	mu  sync.Mutex
	acc *accounts // learnt by Self (or the first operation), nil before
}

var (
	_ backend.Driver     = (*Driver)(nil)
	_ backend.Claimer    = (*Driver)(nil)
	_ backend.Identifier = (*Driver)(nil)
)

// NewDriver builds the Zabbix driver from a backend.Config; both settings are required.
func NewDriver(cfg backend.Config) (backend.Driver, error) {
	d, err := newDriver(cfg)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func newDriver(cfg backend.Config) (*Driver, error) {
	ro, fa := cfg.Settings[SettingReadOnlyUser], cfg.Settings[SettingFullAccessUser]
	for _, s := range []struct{ key, value string }{{SettingReadOnlyUser, ro}, {SettingFullAccessUser, fa}} {
		if s.value == "" {
			return nil, fmt.Errorf("zabbix: setting %s (the Zabbix username %s tokens are minted for) is required", s.key, permissionOfSetting(s.key))
		}
	}
	if ro == fa {
		return nil, fmt.Errorf("zabbix: settings %s and %s name the same user %q; they must be two users with different roles", SettingReadOnlyUser, SettingFullAccessUser, ro)
	}
	rpc, err := newRPCClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Driver{rpc: rpc, cluster: cfg.Cluster, readOnlyUser: ro, fullAccessUser: fa, now: time.Now}, nil
}

func permissionOfSetting(key string) backend.Permission {
	if key == SettingReadOnlyUser {
		return backend.PermissionReadOnly
	}
	return backend.PermissionFullAccess
}

// Capabilities implements backend.Driver: claim only (no usage counts, no updated_since).
func (d *Driver) Capabilities(context.Context) (backend.Capabilities, error) {
	return backend.Capabilities{backend.CapabilityClaim}, nil
}

// Create implements backend.Driver; the package documentation walks its steps.
func (d *Driver) Create(ctx context.Context, owner backend.Owner, spec backend.TokenSpec) (*backend.CreatedToken, error) {
	const op = "create"
	acc, err := d.accountsFor(ctx, op)
	if err != nil {
		return nil, err
	}
	if acc.problem != nil {
		// Nothing is minted for a user whose role grants too much (or that is missing).
		e := *acc.problem
		e.Op = op
		return nil, &e
	}
	var user account
	switch spec.Permission {
	case backend.PermissionReadOnly:
		user = acc.readOnly
	case backend.PermissionFullAccess:
		user = acc.fullAccess
	default:
		return nil, backend.NewError(op, backend.KindInvalid, 0, "permission %q is neither %s nor %s", spec.Permission, backend.PermissionReadOnly, backend.PermissionFullAccess)
	}
	expiresAt := int64(0)
	if spec.ExpiresAt != nil {
		if spec.ExpiresAt.After(maxExpiry) {
			return nil, backend.NewError(op, backend.KindInvalid, 0, "expiry %s is after %s, the latest Zabbix can store (expires_at is a 32-bit number); ask for an earlier expiry",
				spec.ExpiresAt.UTC().Format(time.RFC3339), maxExpiry.Format(time.RFC3339))
		}
		if expiresAt = spec.ExpiresAt.Unix(); expiresAt <= 0 {
			return nil, backend.NewError(op, backend.KindInvalid, 0, "expiry %s is not after 1970 (Zabbix reads 0 as no expiry)", spec.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	name, err := tokenName(op, owner, specDigest(spec))
	if err != nil {
		return nil, err
	}

	// 1. The token, without a value yet (or the one an earlier try made).
	w, replayed, err := d.createOrFind(ctx, op, user.id, name, description(spec), expiresAt)
	if err != nil {
		return nil, err
	}
	// 2. The value; generating again kills a value whose reply was lost.
	value, err := d.generate(ctx, op, w.TokenID)
	if err != nil {
		return nil, err
	}
	t, err := d.toToken(op, w, acc)
	if err != nil {
		return nil, err
	}
	t.Last4 = string(value[len(value)-4:])
	return &backend.CreatedToken{Token: *t, Value: value, Replayed: replayed}, nil
}

// createOrFind makes the user's token called name, enabled and without a value yet, and
// returns it as token.create stored it. Names are unique per user (a unique index on userid
// and name), so when an earlier try of the same create got as far as token.create, this one
// is refused as a conflict and that token is found by its name instead (replayed). A token of
// that name that was deactivated since is never enabled again.
func (d *Driver) createOrFind(ctx context.Context, op, userID, name, desc string, expiresAt int64) (*tokenWire, bool, error) {
	createdAt := d.now().Unix()
	var created struct {
		TokenIDs []string `json:"tokenids"`
	}
	params := map[string]any{"name": name, "userid": userID, "description": desc, "expires_at": expiresAt, "status": statusEnabled}
	err := d.rpc.call(ctx, op, "token.create", params, &created)
	switch {
	case backend.IsConflict(err):
		w, err := d.findByName(ctx, op, userID, name)
		switch {
		case err != nil:
			return nil, false, err
		case w == nil:
			// Deleted between the two calls: the next try creates it again.
			return nil, false, backend.NewError(op, backend.KindTransient, 0, "token.create refused name %s as taken, but token.get found no such token", name)
		case w.Status != statusEnabled:
			// Never enabled again: the caller advances the serial and asks for a new name.
			return nil, false, backend.NewError(op, backend.KindSpent, 0, "token %s, made for this owner, serial and spec, was deactivated since", w.TokenID)
		}
		return w, true, nil
	case err != nil:
		return nil, false, err
	case len(created.TokenIDs) != 1 || !validID(created.TokenIDs[0]):
		return nil, false, backend.NewError(op, backend.KindProtocol, 200, "token.create answered %d token ids, not one", len(created.TokenIDs))
	}
	// What was asked, enabled and never used; created_at is this side's clock (at most the
	// skew between the two clocks away from the server's, which the inventory reads later).
	return &tokenWire{TokenID: created.TokenIDs[0], Name: name, Description: desc, UserID: userID,
		Status: statusEnabled, ExpiresAt: zint(expiresAt), CreatedAt: zint(createdAt)}, false, nil
}

// findByName returns the user's token with that name, or nil.
func (d *Driver) findByName(ctx context.Context, op, userID, name string) (*tokenWire, error) {
	var found []tokenWire
	params := map[string]any{"output": "extend", "userids": []string{userID}, "filter": map[string]any{"name": name}}
	if err := d.rpc.call(ctx, op, "token.get", params, &found); err != nil {
		return nil, err
	}
	switch {
	case len(found) == 0:
		return nil, nil
	case len(found) > 1 || found[0].Name != name || found[0].UserID != userID:
		return nil, backend.NewError(op, backend.KindProtocol, 200, "token.get by name answered %d tokens that are not the one asked for", len(found))
	}
	return &found[0], nil
}

// valuePattern is a Zabbix token value: 64 lower-case hex digits (bin2hex of 32 random bytes).
var valuePattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// generate sets a new value on token id and returns it.
func (d *Driver) generate(ctx context.Context, op, id string) (backend.SecretValue, error) {
	var gen []struct {
		TokenID string `json:"tokenid"`
		Token   string `json:"token"`
	}
	if err := d.rpc.call(ctx, op, "token.generate", []string{id}, &gen); err != nil {
		return "", err
	}
	// Never quote the reply: it holds the value.
	if len(gen) != 1 || gen[0].TokenID != id || !valuePattern.MatchString(gen[0].Token) {
		return "", backend.NewError(op, backend.KindProtocol, 200, "token.generate did not answer one 64-hex value for token %s", id)
	}
	return backend.SecretValue(gen[0].Token), nil
}

// Get implements backend.Driver.
func (d *Driver) Get(ctx context.Context, id string) (*backend.Token, error) {
	const op = "get"
	w, err := d.getWire(ctx, op, id)
	if err != nil {
		return nil, err
	}
	return d.mapToken(ctx, op, w)
}

// getWire reads token id; KindNotFound when there is none.
func (d *Driver) getWire(ctx context.Context, op, id string) (*tokenWire, error) {
	if err := checkID(op, id); err != nil {
		return nil, err
	}
	var found []tokenWire
	if err := d.rpc.call(ctx, op, "token.get", map[string]any{"output": "extend", "tokenids": []string{id}}, &found); err != nil {
		return nil, err
	}
	switch {
	case len(found) == 0:
		return nil, backend.NewError(op, backend.KindNotFound, 200, "token %s does not exist", id)
	case len(found) > 1 || found[0].TokenID != id:
		return nil, backend.NewError(op, backend.KindProtocol, 200, "token.get of token %s answered another token", id)
	}
	return &found[0], nil
}

// mapToken converts w with the cached accounts.
func (d *Driver) mapToken(ctx context.Context, op string, w *tokenWire) (*backend.Token, error) {
	acc, err := d.accountsFor(ctx, op)
	if err != nil {
		return nil, err
	}
	return d.toToken(op, w, acc)
}

// List implements backend.Driver: one token.get (of the two users' tokens whose name holds
// the owner's UID, when opts.Owner is set), filtered in process.
func (d *Driver) List(ctx context.Context, opts backend.ListOptions) ([]backend.Token, error) {
	const op = "list"
	if !opts.UpdatedSince.IsZero() {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "Zabbix has no updated_since; list without it")
	}
	acc, err := d.accountsFor(ctx, op)
	if err != nil {
		return nil, err
	}
	params := map[string]any{"output": "extend"}
	if opts.Owner != "" {
		var users []string
		for _, a := range []account{acc.readOnly, acc.fullAccess} {
			if a.id != "" {
				users = append(users, a.id)
			}
		}
		if len(users) == 0 {
			return nil, nil
		}
		params["userids"] = users
		params["search"] = map[string]any{"name": opts.Owner}
	}
	var items []tokenWire
	if err := d.rpc.call(ctx, op, "token.get", params, &items); err != nil {
		return nil, err
	}
	var out []backend.Token
	for i := range items {
		t, err := d.toToken(op, &items[i], acc)
		if err != nil {
			return nil, err
		}
		if (opts.Owner != "" && t.Owner.UID != opts.Owner) || (opts.Status != "" && t.Status != opts.Status) {
			continue
		}
		if opts.Keep != nil {
			*t = opts.Keep(*t)
		}
		out = append(out, *t)
	}
	return out, nil
}

// Deactivate implements backend.Driver: token.update status 1, then the token as it is now.
func (d *Driver) Deactivate(ctx context.Context, id string) (*backend.Token, error) {
	const op = "deactivate"
	if err := checkID(op, id); err != nil {
		return nil, err
	}
	if err := d.rpc.call(ctx, op, "token.update", map[string]any{"tokenid": id, "status": statusDisabled}, nil); err != nil {
		return nil, err
	}
	w, err := d.getWire(ctx, op, id)
	if err != nil {
		return nil, err
	}
	return d.mapToken(ctx, op, w)
}

// Claim implements backend.Claimer: the token is renamed to owner's name with serial 0.
func (d *Driver) Claim(ctx context.Context, id string, owner backend.Owner) (*backend.Token, error) {
	const op = "claim"
	w, err := d.getWire(ctx, op, id)
	if err != nil {
		return nil, err
	}
	acc, err := d.accountsFor(ctx, op)
	if err != nil {
		return nil, err
	}
	if !acc.owns(w.UserID) {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "token %s belongs to neither %q (%s) nor %q (%s); only their tokens can be adopted",
			id, acc.readOnly.username, SettingReadOnlyUser, acc.fullAccess.username, SettingFullAccessUser)
	}
	if held, ok := decodeOwner(w.Name, owner.Cluster); ok {
		if held.UID == owner.UID && held.Cluster == owner.Cluster {
			return d.toToken(op, w, acc)
		}
		return nil, backend.NewError(op, backend.KindClaimed, 0, "token %s is named for another owner", id)
	}
	name, err := tokenName(op, backend.Owner{UID: owner.UID, Cluster: owner.Cluster}, claimDigest(id))
	if err != nil {
		return nil, err
	}
	if err := d.rpc.call(ctx, op, "token.update", map[string]any{"tokenid": id, "name": name}, nil); err != nil {
		return nil, err
	}
	w.Name = name
	return d.toToken(op, w, acc)
}

// Identify implements backend.Identifier: the admin's token.get {token: value}, which finds a
// token by its value without using it (lastaccess stays as it was).
func (d *Driver) Identify(ctx context.Context, value backend.SecretValue) (*backend.Token, error) {
	const op = "self"
	v := value.Reveal()
	if !printable(v) || len(v) > 64 {
		return nil, backend.NewError(op, backend.KindUnauthorized, 0, "the value cannot be a Zabbix API token")
	}
	var found []tokenWire
	if err := d.rpc.call(ctx, op, "token.get", map[string]any{"output": "extend", "token": v}, &found); err != nil {
		return nil, err
	}
	switch {
	case len(found) == 0:
		return nil, backend.NewError(op, backend.KindUnauthorized, 200, "the value is no token of this Zabbix")
	case len(found) > 1:
		return nil, backend.NewError(op, backend.KindProtocol, 200, "token.get by value answered %d tokens", len(found))
	}
	return d.mapToken(ctx, op, &found[0])
}

// printable reports a non-empty string of printable ASCII without spaces.
func printable(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return s != ""
}

// idPattern is a Zabbix object id (an unsigned 64-bit number).
var idPattern = regexp.MustCompile(`^[1-9][0-9]{0,19}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

// checkID refuses, before sending, an id Zabbix cannot hold. The id is not quoted: a caller
// that mixed up fields might have passed a value.
func checkID(op, id string) error {
	if !validID(id) {
		return backend.NewError(op, backend.KindInvalid, 0, "a Zabbix token id is a positive decimal number")
	}
	return nil
}

// tokenWire is a token.get item. Zabbix sends every number as a string.
type tokenWire struct {
	TokenID     string `json:"tokenid"`
	Name        string `json:"name"`
	Description string `json:"description"`
	UserID      string `json:"userid"`
	LastAccess  zint   `json:"lastaccess"`
	Status      zint   `json:"status"`
	ExpiresAt   zint   `json:"expires_at"`
	CreatedAt   zint   `json:"created_at"`
}

// toToken is the port's view of w: the owner from the name (tokens of the two users only),
// the permission from the user, active when enabled and not expired.
func (d *Driver) toToken(op string, w *tokenWire, acc *accounts) (*backend.Token, error) {
	if !validID(w.TokenID) || (w.Status != statusEnabled && w.Status != statusDisabled) {
		return nil, backend.NewError(op, backend.KindProtocol, 200, "token.get answered a token without a valid id or status")
	}
	t := &backend.Token{
		ID:          w.TokenID,
		Name:        w.Name,
		Description: w.Description,
		Permission:  acc.permission(w.UserID),
		Status:      backend.StatusInactive,
		CreatedAt:   time.Unix(int64(w.CreatedAt), 0).UTC(),
		ExpiresAt:   unixPtr(w.ExpiresAt),
		LastUsedAt:  unixPtr(w.LastAccess),
		Admin:       acc.superAdmins[w.UserID],
	}
	// Zabbix refuses a token only after expires_at (CUser::tokenAuthentication).
	if w.Status == statusEnabled && (w.ExpiresAt == 0 || d.now().Unix() <= int64(w.ExpiresAt)) {
		t.Status = backend.StatusActive
	}
	if w.Status == statusDisabled {
		at := DeactivatedUnknown
		t.DeactivatedAt = &at
	}
	if acc.owns(w.UserID) {
		t.Owner, _ = decodeOwner(w.Name, d.cluster)
	}
	return t, nil
}

func unixPtr(s zint) *time.Time {
	if s == 0 {
		return nil
	}
	t := time.Unix(int64(s), 0).UTC()
	return &t
}

// zint is a number Zabbix sends as a string ("0") or, in places, as a JSON number.
type zint int64

func (z *zint) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*z = zint(n)
	return nil
}

// Endpoint implements backend.Endpointer: workloads call the JSON-RPC endpoint itself, as
// Grafana's Zabbix data source asks for it.
func (d *Driver) Endpoint() string { return d.rpc.endpoint }
