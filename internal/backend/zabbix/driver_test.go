package zabbix_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

func TestNewDriverNeedsBothUsers(t *testing.T) {
	base := backend.Config{URL: "http://127.0.0.1:1", Credential: "x"}
	cases := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"no read-only user", map[string]string{zabbix.SettingFullAccessUser: "fa"}, zabbix.SettingReadOnlyUser},
		{"no full-access user", map[string]string{zabbix.SettingReadOnlyUser: "ro"}, zabbix.SettingFullAccessUser},
		{"the same user twice", map[string]string{zabbix.SettingReadOnlyUser: "u", zabbix.SettingFullAccessUser: "u"}, "the same user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Settings = tc.settings
			_, err := zabbix.NewDriver(cfg)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
	t.Run("URL", func(t *testing.T) {
		g := NewWithT(t)
		cfg := base
		cfg.Settings = map[string]string{zabbix.SettingReadOnlyUser: "ro", zabbix.SettingFullAccessUser: "fa"}
		for _, u := range []string{"ftp://h", "http://", "http://u:p@h", "http://h/?q=1"} {
			cfg.URL = u
			_, err := zabbix.NewDriver(cfg)
			g.Expect(err).To(HaveOccurred(), u)
		}
	})
}

func TestSelf(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	self, err := newDriver(t, config(z, "c1"), nil).Self(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(self.Admin).To(BeTrue())
	g.Expect(self.ID).To(Equal(z.AdminTokenID))
	g.Expect(self.Status).To(Equal(backend.StatusActive))
	g.Expect(self.Owner).To(Equal(backend.Owner{}))
}

// TestSelfRefusesMisconfiguredUsers breaks one thing at a time on a server of its own and
// checks that the check names it; each row puts it back.
func TestSelfRefusesMisconfiguredUsers(t *testing.T) {
	z := zabbixtest.Start(t)
	ro, fa := z.ReadOnlyUser, z.FullAccessUser
	roRules := map[string]any{"api.access": 1, "api.mode": 1, "api": []string{"*.get"}}
	faRules := map[string]any{"api.access": 1, "api.mode": 0, "api": []string{"token.*", "user.*", "role.*", "usergroup.*"}}
	update := func(method string, params map[string]any) func(t *testing.T) {
		return func(t *testing.T) { mustCall(t, z, method, params, z.AdminToken, nil) }
	}
	cases := []struct {
		name         string
		breakIt, fix func(t *testing.T)
		readOnlyUser string
		want         string
	}{
		{
			name:    "read-only role allows host.create",
			breakIt: update("role.update", map[string]any{"roleid": ro.RoleID, "rules": map[string]any{"api.access": 1, "api.mode": 1, "api": []string{"*.get", "host.create"}}}),
			fix:     update("role.update", map[string]any{"roleid": ro.RoleID, "rules": roRules}),
			want:    `user "apitoken-readonly" has role "apitoken-readonly" whose API access allows "host.create"; the read-only role must allow only *.get methods`,
		},
		{
			name:    "read-only role is a deny list",
			breakIt: update("role.update", map[string]any{"roleid": ro.RoleID, "rules": map[string]any{"api.access": 1, "api.mode": 0, "api": []string{"host.create"}}}),
			fix:     update("role.update", map[string]any{"roleid": ro.RoleID, "rules": roRules}),
			want:    `user "apitoken-readonly" has role "apitoken-readonly" whose API access is a deny list`,
		},
		{
			name:    "read-only role of type Admin",
			breakIt: update("role.update", map[string]any{"roleid": ro.RoleID, "type": 2}),
			fix:     update("role.update", map[string]any{"roleid": ro.RoleID, "type": 1}),
			want:    `has role "apitoken-readonly" of type Admin; the read-only role must be of type User`,
		},
		{
			name:    "full-access role may manage tokens",
			breakIt: update("role.update", map[string]any{"roleid": fa.RoleID, "rules": map[string]any{"api.access": 1, "api.mode": 0, "api": []string{"user.*", "role.*", "usergroup.*"}}}),
			fix:     update("role.update", map[string]any{"roleid": fa.RoleID, "rules": faRules}),
			want:    `user "apitoken-fullaccess" has role "apitoken-fullaccess" whose API deny list lacks "token.*"; the full-access role must deny token.*, user.*, role.* and usergroup.*`,
		},
		{
			name:    "full-access role allow list with token methods",
			breakIt: update("role.update", map[string]any{"roleid": fa.RoleID, "rules": map[string]any{"api.access": 1, "api.mode": 1, "api": []string{"dashboard.*", "token.create"}}}),
			fix:     update("role.update", map[string]any{"roleid": fa.RoleID, "rules": faRules}),
			want:    `whose API allow list allows "token.create"`,
		},
		{
			name:    "full-access user's group disabled",
			breakIt: update("usergroup.update", map[string]any{"usrgrpid": fa.UserGroupID, "users_status": 1}),
			fix:     update("usergroup.update", map[string]any{"usrgrpid": fa.UserGroupID, "users_status": 0}),
			want:    `user "apitoken-fullaccess" is in user group "apitoken-fullaccess", which is disabled`,
		},
		{
			name:         "no such user",
			breakIt:      func(*testing.T) {},
			fix:          func(*testing.T) {},
			readOnlyUser: "nobody",
			want:         `user "nobody" (setting readOnlyUser) does not exist on Zabbix`,
		},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := config(z, "c1")
			if tc.readOnlyUser != "" {
				cfg.Settings[zabbix.SettingReadOnlyUser] = tc.readOnlyUser
			}
			d := newDriver(t, cfg, nil)
			tc.breakIt(t)
			_, err := d.Self(ctx)
			g.Expect(backend.IsMisconfigured(err)).To(BeTrue(), "%v", err)
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			// Nothing is minted for a misconfigured user.
			_, err = d.Create(ctx, backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}, backend.TokenSpec{Name: "ns/t", Permission: backend.PermissionReadOnly})
			g.Expect(backend.IsMisconfigured(err)).To(BeTrue(), "%v", err)
			g.Expect(err.(*backend.Error).Op).To(Equal("create"))
			tc.fix(t)
			// The next check sees the fix.
			_, err = d.Self(ctx)
			if tc.readOnlyUser == "" {
				g.Expect(err).NotTo(HaveOccurred())
			}
		})
	}
}

func TestSelfOfAnotherUsersTokenIsNotAdmin(t *testing.T) {
	z := zabbixtest.Shared(t)
	for _, u := range []zabbixtest.User{z.ReadOnlyUser, z.FullAccessUser} {
		t.Run(u.Name, func(t *testing.T) {
			g := NewWithT(t)
			_, value := handMadeToken(t, z, u.ID, "self-"+newUID()[:8])
			cfg := config(z, "c1")
			cfg.Credential = value
			self, err := newDriver(t, cfg, nil).Self(context.Background())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(self.Admin).To(BeFalse())
		})
	}
}

func TestCreateGetListDeactivate(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 3}
	expires := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	spec := backend.TokenSpec{Name: "team-a/grafana", Permission: backend.PermissionReadOnly, ExpiresAt: &expires, Description: "dashboards"}

	before := time.Now().Add(-time.Second)
	created, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.Replayed).To(BeFalse())
	g.Expect(created.Owner).To(Equal(owner))
	g.Expect(created.Permission).To(Equal(backend.PermissionReadOnly))
	g.Expect(created.Status).To(Equal(backend.StatusActive))
	g.Expect(created.Admin).To(BeFalse())
	g.Expect(*created.ExpiresAt).To(Equal(expires))
	g.Expect(created.CreatedAt).To(BeTemporally(">=", before.Truncate(time.Second)))
	g.Expect(created.Description).To(Equal("team-a/grafana: dashboards"))
	g.Expect(created.Name).To(MatchRegexp(`^k8s\.[0-9a-f]{8}\.` + owner.UID + `\.3\.[0-9a-f]{6}$`))
	g.Expect(created.Value.Reveal()).To(MatchRegexp(`^[0-9a-f]{64}$`))
	g.Expect(created.Last4).To(Equal(created.Value.Reveal()[60:]))
	g.Expect(created.LastUsedAt).To(BeNil())
	g.Expect(created.DeactivatedAt).To(BeNil())

	// The value reads, and may not write.
	ok, _ := hostGet(t, z, created.Value)
	g.Expect(ok).To(BeTrue())
	err = call(t, z, "host.create", map[string]any{"host": "ro-" + owner.UID[:8], "groups": []map[string]string{{"groupid": z.HostGroup.ID}}}, created.Value.Reveal(), nil)
	g.Expect(apiError(err)).NotTo(BeNil())
	g.Expect(apiError(err).Data).To(Equal(`No permissions to call "host.create".`))

	got, err := d.Get(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Owner).To(Equal(owner))
	g.Expect(got.Status).To(Equal(backend.StatusActive))
	g.Expect(got.LastUsedAt).NotTo(BeNil(), "lastaccess is stamped by the host.get")
	// Create builds its answer from what it asked for (no token.get): the server stored the same.
	g.Expect(got.Name).To(Equal(created.Name))
	g.Expect(got.Description).To(Equal(created.Description))
	g.Expect(got.Permission).To(Equal(created.Permission))
	g.Expect(*got.ExpiresAt).To(Equal(*created.ExpiresAt))
	// created_at: the driver's clock before token.create, the server's during it.
	g.Expect(got.CreatedAt).To(BeTemporally("~", created.CreatedAt, 2*time.Second))

	list, err := d.List(ctx, backend.ListOptions{Owner: owner.UID})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(HaveLen(1))
	g.Expect(list[0].ID).To(Equal(created.ID))

	deactivated, err := d.Deactivate(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(deactivated.Status).To(Equal(backend.StatusInactive))
	g.Expect(deactivated.DeactivatedAt).To(Equal(&zabbix.DeactivatedUnknown))
	ok, data := hostGet(t, z, created.Value)
	g.Expect(ok).To(BeFalse())
	g.Expect(data).To(Equal("Not authorized."))

	again, err := d.Deactivate(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred(), "deactivating again is harmless")
	g.Expect(again.Status).To(Equal(backend.StatusInactive))

	list, err = d.List(ctx, backend.ListOptions{Owner: owner.UID, Status: backend.StatusActive})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(BeEmpty())
	list, err = d.List(ctx, backend.ListOptions{Owner: owner.UID, Status: backend.StatusInactive, Keep: func(t backend.Token) backend.Token {
		t.Description = ""
		return t
	}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(HaveLen(1))
	g.Expect(list[0].Description).To(BeEmpty(), "Keep is applied")

	_, err = d.Deactivate(ctx, "999999999")
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)
	_, err = d.Get(ctx, "999999999")
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)
}

func TestFullAccessTokenWritesButCannotMintTokens(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
	created, err := d.Create(ctx, owner, backend.TokenSpec{Name: "team-a/writer", Permission: backend.PermissionFullAccess})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(created.ExpiresAt).To(BeNil())

	err = call(t, z, "dashboard.create", map[string]any{"name": "board-" + owner.UID[:8], "pages": []map[string]any{{}}}, created.Value.Reveal(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	err = call(t, z, "token.create", map[string]any{"name": "escalate"}, created.Value.Reveal(), nil)
	g.Expect(apiError(err)).NotTo(BeNil())
	g.Expect(apiError(err).Data).To(Equal(`No permissions to call "token.create".`))
}

func TestCreateRefusesExpiryBeyond2038(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	d := newDriver(t, config(z, "c1"), nil)
	late := time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC)
	_, err := d.Create(context.Background(), backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1},
		backend.TokenSpec{Name: "ns/late", Permission: backend.PermissionReadOnly, ExpiresAt: &late})
	g.Expect(err).To(MatchError(ContainSubstring("after 2038-01-19T03:14:07Z, the latest Zabbix can store")))
	var be *backend.Error
	g.Expect(err).To(BeAssignableToTypeOf(be))
	g.Expect(err.(*backend.Error).Kind).To(Equal(backend.KindInvalid))

	last := time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)
	created, err := d.Create(context.Background(), backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1},
		backend.TokenSpec{Name: "ns/last", Permission: backend.PermissionReadOnly, ExpiresAt: &last})
	g.Expect(err).NotTo(HaveOccurred(), "the last second Zabbix stores is fine")
	g.Expect(*created.ExpiresAt).To(Equal(last))
}

func TestCreateReplaysTheSameOwnerAndSpec(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
	spec := backend.TokenSpec{Name: "ns/replay", Permission: backend.PermissionReadOnly}

	first, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	second, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second.ID).To(Equal(first.ID))
	g.Expect(second.Replayed).To(BeTrue())
	// One live value: the replay's; the first was replaced.
	ok, _ := hostGet(t, z, second.Value)
	g.Expect(ok).To(BeTrue())
	ok, _ = hostGet(t, z, first.Value)
	g.Expect(ok).To(BeFalse())

	changed := spec
	changed.Description = "changed"
	third, err := d.Create(ctx, owner, changed)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(third.ID).NotTo(Equal(first.ID), "a changed spec under the same serial is a new token")
	next := owner
	next.Serial = 2
	fourth, err := d.Create(ctx, next, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fourth.ID).NotTo(Equal(first.ID))
	g.Expect(fourth.Replayed).To(BeFalse())
}

func TestCreateNeverRevivesADeactivatedToken(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
	spec := backend.TokenSpec{Name: "ns/dead", Permission: backend.PermissionFullAccess}
	created, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = d.Deactivate(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())

	_, err = d.Create(ctx, owner, spec)
	g.Expect(err).To(HaveOccurred())
	g.Expect(backend.IsSpent(err)).To(BeTrue(), "%v", err)
	g.Expect(err).To(MatchError(ContainSubstring("was deactivated since")))
	got, err := d.Get(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Status).To(Equal(backend.StatusInactive))
}

func TestGetMapsAnExpiredTokenAsInactiveButNotDeactivated(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	created, err := d.Create(ctx, backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1},
		backend.TokenSpec{Name: "ns/expired", Permission: backend.PermissionReadOnly, ExpiresAt: &past})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.Status).To(Equal(backend.StatusInactive))
	g.Expect(created.DeactivatedAt).To(BeNil(), "the operator still disables an expired token")
	ok, data := hostGet(t, z, created.Value)
	g.Expect(ok).To(BeFalse())
	g.Expect(data).To(Equal("API token expired."))
}

func TestIdentify(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	id, value := handMadeToken(t, z, z.ReadOnlyUser.ID, "identify-"+newUID()[:8])

	got, err := d.Identify(ctx, value)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.ID).To(Equal(id))
	g.Expect(got.Status).To(Equal(backend.StatusActive))
	g.Expect(got.Permission).To(Equal(backend.PermissionReadOnly))
	g.Expect(got.Owner).To(Equal(backend.Owner{}))
	g.Expect(got.LastUsedAt).To(BeNil(), "identifying is no use of the value")

	admin, err := d.Identify(ctx, backend.SecretValue(z.AdminToken))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(admin.Admin).To(BeTrue())

	for _, v := range []string{strings.Repeat("0", 64), "short", ""} {
		_, err = d.Identify(ctx, backend.SecretValue(v))
		g.Expect(backend.IsUnauthorized(err)).To(BeTrue(), "%q: %v", v, err)
	}
	_, err = d.Deactivate(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	got, err = d.Identify(ctx, value)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Status).To(Equal(backend.StatusInactive), "an inactive token is returned as such")
}

func TestClaim(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	id, value := handMadeToken(t, z, z.FullAccessUser.ID, "claim-"+newUID()[:8])
	owner := backend.Owner{UID: newUID(), Cluster: "c1"}

	claimed, err := d.Claim(ctx, id, owner)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claimed.ID).To(Equal(id))
	g.Expect(claimed.Owner).To(Equal(owner))
	g.Expect(claimed.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(claimed.Name).To(MatchRegexp(`^k8s\.[0-9a-f]{8}\.` + owner.UID + `\.0\.[0-9a-f]{6}$`))

	again, err := d.Claim(ctx, id, owner)
	g.Expect(err).NotTo(HaveOccurred(), "claiming again for the same owner is harmless")
	g.Expect(again.Owner).To(Equal(owner))
	identified, err := d.Identify(ctx, value)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(identified.Owner).To(Equal(owner))
	ok, _ := hostGet(t, z, value)
	g.Expect(ok).To(BeTrue(), "the value is unchanged")

	_, err = d.Claim(ctx, id, backend.Owner{UID: newUID(), Cluster: "c1"})
	g.Expect(backend.IsClaimed(err)).To(BeTrue(), "%v", err)
	_, err = d.Claim(ctx, id, backend.Owner{UID: owner.UID, Cluster: "c2"})
	g.Expect(backend.IsClaimed(err)).To(BeTrue(), "the same UID on another cluster is another owner: %v", err)

	_, err = d.Claim(ctx, z.AdminTokenID, owner)
	g.Expect(err).To(MatchError(ContainSubstring("only their tokens can be adopted")))
	g.Expect(err.(*backend.Error).Kind).To(Equal(backend.KindInvalid))
	_, err = d.Claim(ctx, "999999999", owner)
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)
}

func TestAnotherClustersToken(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	ours, theirs := newDriver(t, config(z, "cluster-a"), nil), newDriver(t, config(z, "cluster-b"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "cluster-b", Serial: 1}
	created, err := theirs.Create(ctx, owner, backend.TokenSpec{Name: "ns/b", Permission: backend.PermissionReadOnly})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.Owner.Cluster).To(Equal("cluster-b"))
	got, err := ours.Get(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Owner.UID).To(Equal(owner.UID))
	g.Expect(got.Owner.Cluster).To(HavePrefix(zabbix.OtherClusterPrefix))
	g.Expect(got.Owner.Cluster).NotTo(Equal("cluster-a"))
}

func TestListUpdatedSinceIsInvalid(t *testing.T) {
	g := NewWithT(t)
	c := &counter{}
	// No server: the driver refuses before sending anything.
	d := newDriver(t, backend.Config{URL: "http://127.0.0.1:1", Credential: "x", Settings: map[string]string{
		zabbix.SettingReadOnlyUser: "ro", zabbix.SettingFullAccessUser: "fa",
	}}, c)
	caps, err := d.Capabilities(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(caps).To(ConsistOf(backend.CapabilityClaim))
	_, err = d.List(context.Background(), backend.ListOptions{UpdatedSince: time.Now()})
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.(*backend.Error).Kind).To(Equal(backend.KindInvalid))
	g.Expect(c.take()).To(BeEmpty())
}

// TestRequestCounts measures what each operation costs in requests once the driver knows
// the server (version and users cached).
func TestRequestCounts(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	c := &counter{}
	d := newDriver(t, config(z, "c1"), c)
	_, err := d.Self(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"self": 5}))

	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
	spec := backend.TokenSpec{Name: "ns/count", Permission: backend.PermissionReadOnly}
	created, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"create": 2}), "token.create and token.generate")
	_, err = d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"create": 3}), "a replay: token.create refused, token.get by name, token.generate")
	_, err = d.List(ctx, backend.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"list": 1}))
	_, err = d.Get(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"get": 1}))
	_, err = d.Deactivate(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"deactivate": 2}))

	// A driver that starts with List learns the version and the users first.
	fresh := newDriver(t, config(z, "c1"), c)
	_, err = fresh.List(ctx, backend.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.take()).To(Equal(map[string]int{"list": 4}))
}

// TestConcurrentUse runs operations at once on a driver that knows nothing yet (run with
// -race): the version and the users are learnt under the driver's lock.
func TestConcurrentUse(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			switch i % 3 {
			case 0:
				_, err := d.List(ctx, backend.ListOptions{Status: backend.StatusActive})
				errs <- err
			case 1:
				_, err := d.Get(ctx, z.AdminTokenID)
				errs <- err
			default:
				_, err := d.Self(ctx)
				errs <- err
			}
		}()
	}
	for i := 0; i < cap(errs); i++ {
		g.Expect(<-errs).NotTo(HaveOccurred())
	}
}
