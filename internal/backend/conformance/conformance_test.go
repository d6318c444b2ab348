package conformance_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	_ = zabbixtest.StopShared()
	os.Exit(code)
}

// cluster is the identity of the operator's cluster in every behaviour.
const cluster = "c1"

// server is one driver on a running server, as the behaviours need it.
type server struct {
	// driver builds the driver for clusterID with credential.
	driver func(t *testing.T, clusterID string, credential backend.SecretValue) backend.Driver
	// admin is the server's admin credential; bad is a credential it does not know.
	admin, bad backend.SecretValue
	// capabilities are what the driver must list.
	capabilities []backend.Capability
	// authenticates reports whether a value is accepted by the server's API.
	authenticates func(t *testing.T, value backend.SecretValue) bool
	// handMade makes a token as a person would (no owner), returning its id and value.
	handMade func(t *testing.T) (string, backend.SecretValue)
	// unknownValue is a value of the server's format that is no token.
	unknownValue backend.SecretValue
	// createdAtClock is how far Create's created_at may be from the server's: 0 when Create
	// answers the server's own; a second for Zabbix, whose token.create returns only the id,
	// so the driver answers its clock from just before the call (one second earlier when the
	// call crosses a second's boundary; the inventory reads the server's later).
	createdAtClock time.Duration
}

// servers are the drivers under test, each on a real server.
var servers = []struct {
	name  string
	start func(t *testing.T) *server
}{
	{"native", startNative},
	{"zabbix", startZabbix},
}

func startNative(t *testing.T) *server {
	inst := servertest.Start(t)
	return &server{
		driver: func(t *testing.T, clusterID string, credential backend.SecretValue) backend.Driver {
			d, err := native.NewDriver(backend.Config{URL: inst.URL, Credential: credential, Cluster: clusterID})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		admin:        backend.SecretValue(inst.AdminToken),
		bad:          "sgt_" + backend.SecretValue(randomHex(20)),
		capabilities: []backend.Capability{backend.CapabilityUsage, backend.CapabilityClaim, backend.CapabilityUpdatedSince},
		authenticates: func(t *testing.T, value backend.SecretValue) bool {
			_, err := inst.ClientFor(t, value).Self(context.Background())
			return err == nil
		},
		handMade: func(t *testing.T) (string, backend.SecretValue) {
			c := inst.IssueToken(t, native.CreateRequest{Name: "made by hand", Permission: backend.PermissionReadOnly})
			return c.ID, c.Value
		},
		unknownValue: "sgt_" + backend.SecretValue(randomHex(20)),
	}
}

func startZabbix(t *testing.T) *server {
	z := zabbixtest.Shared(t)
	return &server{
		driver: func(t *testing.T, clusterID string, credential backend.SecretValue) backend.Driver {
			d, err := zabbix.NewDriver(backend.Config{URL: z.URL, Credential: credential, Cluster: clusterID, Settings: map[string]string{
				zabbix.SettingReadOnlyUser:   z.ReadOnlyUser.Name,
				zabbix.SettingFullAccessUser: z.FullAccessUser.Name,
			}})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		admin:          backend.SecretValue(z.AdminToken),
		bad:            backend.SecretValue(randomHex(32)),
		createdAtClock: time.Second,
		capabilities:   []backend.Capability{backend.CapabilityClaim},
		authenticates: func(t *testing.T, value backend.SecretValue) bool {
			_, err := z.Call(context.Background(), "host.get", map[string]any{"output": []string{"hostid"}, "limit": 1}, value.Reveal())
			return err == nil
		},
		handMade: func(t *testing.T) (string, backend.SecretValue) {
			ctx := context.Background()
			raw, err := z.Call(ctx, "token.create", map[string]any{"name": "made by hand " + randomHex(4), "userid": z.ReadOnlyUser.ID}, z.AdminToken)
			if err != nil {
				t.Fatal(err)
			}
			var created struct {
				TokenIDs []string `json:"tokenids"`
			}
			mustUnmarshal(t, raw, &created)
			raw, err = z.Call(ctx, "token.generate", created.TokenIDs, z.AdminToken)
			if err != nil {
				t.Fatal(err)
			}
			var gen []struct {
				Token string `json:"token"`
			}
			mustUnmarshal(t, raw, &gen)
			return created.TokenIDs[0], backend.SecretValue(gen[0].Token)
		},
		unknownValue: backend.SecretValue(randomHex(32)),
	}
}

// env is what a behaviour runs with: the server, and the driver with its admin credential.
type env struct {
	*server
	d     backend.Driver
	ctx   context.Context
	owner backend.Owner
}

// spec is a token spec with an expiry in whole seconds.
func spec(p backend.Permission) backend.TokenSpec {
	at := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second).UTC()
	return backend.TokenSpec{Name: "team-a/app", Permission: p, ExpiresAt: &at, Description: "conformance"}
}

var behaviours = []struct {
	name string
	// needs is a capability the behaviour needs; "" for the core.
	needs backend.Capability
	run   func(t *testing.T, g Gomega, e *env)
}{
	{"Self is the admin credential", "", func(t *testing.T, g Gomega, e *env) {
		self, err := e.d.Self(e.ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(self.IsAdmin()).To(BeTrue())
		g.Expect(self.Status).To(Equal(backend.StatusActive))
		g.Expect(self.ID).NotTo(BeEmpty())
	}},
	{"Capabilities lists what the driver offers", "", func(t *testing.T, g Gomega, e *env) {
		caps, err := e.d.Capabilities(e.ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(caps).To(ConsistOf(e.capabilities))
	}},
	{"Create gives an active token of the owner with the permission and expiry asked", "", func(t *testing.T, g Gomega, e *env) {
		for _, p := range []backend.Permission{backend.PermissionReadOnly, backend.PermissionFullAccess} {
			s := spec(p)
			created, err := e.d.Create(e.ctx, e.owner, s)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(created.Replayed).To(BeFalse())
			g.Expect(created.Status).To(Equal(backend.StatusActive))
			g.Expect(created.Permission).To(Equal(p))
			g.Expect(created.Owner.UID).To(Equal(e.owner.UID))
			g.Expect(created.Owner.Cluster).To(Equal(cluster))
			g.Expect(created.IsAdmin()).To(BeFalse())
			g.Expect(created.ExpiresAt).NotTo(BeNil())
			g.Expect(created.ExpiresAt.Equal(*s.ExpiresAt)).To(BeTrue(), "expiry %s, asked %s", created.ExpiresAt, s.ExpiresAt)
			g.Expect(e.authenticates(t, created.Value)).To(BeTrue())
			e.owner.Serial++
		}
	}},
	{"Create again with the same owner and spec replays", "", func(t *testing.T, g Gomega, e *env) {
		s := spec(backend.PermissionReadOnly)
		first, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		again, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again.ID).To(Equal(first.ID))
		g.Expect(again.Replayed).To(BeTrue())
		g.Expect(e.authenticates(t, again.Value)).To(BeTrue())
		active, err := e.d.List(e.ctx, backend.ListOptions{Owner: e.owner.UID, Status: backend.StatusActive})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(active).To(HaveLen(1))
	}},
	{"Create again after the token was deactivated is Spent, and makes nothing", "", func(t *testing.T, g Gomega, e *env) {
		s := spec(backend.PermissionReadOnly)
		first, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.d.Deactivate(e.ctx, first.ID)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.d.Create(e.ctx, e.owner, s)
		g.Expect(backend.IsSpent(err)).To(BeTrue(), "%v", err)
		g.Expect(e.authenticates(t, first.Value)).To(BeFalse(), "never revived")
		all, err := e.d.List(e.ctx, backend.ListOptions{Owner: e.owner.UID})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ids(all)).To(ConsistOf(first.ID), "no second token")
		e.owner.Serial++
		next, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred(), "the next serial issues")
		g.Expect(next.Replayed).To(BeFalse())
		g.Expect(e.authenticates(t, next.Value)).To(BeTrue())
	}},
	{"Create for another serial is another token", "", func(t *testing.T, g Gomega, e *env) {
		s := spec(backend.PermissionReadOnly)
		first, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		e.owner.Serial++
		second, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(second.ID).NotTo(Equal(first.ID))
		g.Expect(second.Replayed).To(BeFalse())
	}},
	{"Get reads the token Create made", "", func(t *testing.T, g Gomega, e *env) {
		created, err := e.d.Create(e.ctx, e.owner, spec(backend.PermissionFullAccess))
		g.Expect(err).NotTo(HaveOccurred())
		got, err := e.d.Get(e.ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.ID).To(Equal(created.ID))
		g.Expect(got.Permission).To(Equal(backend.PermissionFullAccess))
		g.Expect(got.Status).To(Equal(backend.StatusActive))
		g.Expect(got.Owner.UID).To(Equal(e.owner.UID))
		g.Expect(got.Owner.Cluster).To(Equal(cluster))
		g.Expect(got.ExpiresAt.Equal(*created.ExpiresAt)).To(BeTrue())
		g.Expect(got.CreatedAt).To(BeTemporally("~", created.CreatedAt, e.createdAtClock), "created_at as Create answered it")
		g.Expect(got.CreatedAt).NotTo(BeTemporally("<", created.CreatedAt), "the server stamps it after the call began")
		g.Expect(got.DeactivatedAt).To(BeNil())
	}},
	{"List by owner lists exactly the owner's active tokens", "", func(t *testing.T, g Gomega, e *env) {
		s := spec(backend.PermissionReadOnly)
		kept, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		e.owner.Serial++
		gone, err := e.d.Create(e.ctx, e.owner, s)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.d.Deactivate(e.ctx, gone.ID)
		g.Expect(err).NotTo(HaveOccurred())
		// Another owner's token is not listed.
		_, err = e.d.Create(e.ctx, backend.Owner{UID: newUID(), Cluster: cluster, Serial: 1}, s)
		g.Expect(err).NotTo(HaveOccurred())

		active, err := e.d.List(e.ctx, backend.ListOptions{Owner: e.owner.UID, Status: backend.StatusActive})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ids(active)).To(ConsistOf(kept.ID))
		all, err := e.d.List(e.ctx, backend.ListOptions{Owner: e.owner.UID})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ids(all)).To(ConsistOf(kept.ID, gone.ID))
		everything, err := e.d.List(e.ctx, backend.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ids(everything)).To(ContainElements(kept.ID, gone.ID))
		g.Expect(admins(everything)).NotTo(BeEmpty(), "the admin credential is listed too")
	}},
	{"Deactivate makes the token inactive and its value stop working", "", func(t *testing.T, g Gomega, e *env) {
		created, err := e.d.Create(e.ctx, e.owner, spec(backend.PermissionReadOnly))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(e.authenticates(t, created.Value)).To(BeTrue())
		got, err := e.d.Deactivate(e.ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Status).To(Equal(backend.StatusInactive))
		g.Expect(got.DeactivatedAt).NotTo(BeNil())
		g.Expect(e.authenticates(t, created.Value)).To(BeFalse())
		again, err := e.d.Deactivate(e.ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred(), "repeating is harmless")
		g.Expect(again.Status).To(Equal(backend.StatusInactive))
		read, err := e.d.Get(e.ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(read.Status).To(Equal(backend.StatusInactive))
		g.Expect(read.DeactivatedAt).NotTo(BeNil())
	}},
	{"Get of an unknown id is NotFound", "", func(t *testing.T, g Gomega, e *env) {
		_, err := e.d.Get(e.ctx, "999999999")
		g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)
	}},
	{"Self with a credential the server does not know is Unauthorized", "", func(t *testing.T, g Gomega, e *env) {
		_, err := e.driver(t, cluster, e.bad).Self(e.ctx)
		g.Expect(backend.IsUnauthorized(err)).To(BeTrue(), "%v", err)
	}},
	{"Another cluster's token reads back with another cluster", "", func(t *testing.T, g Gomega, e *env) {
		theirs := e.driver(t, "c2", e.admin)
		created, err := theirs.Create(e.ctx, backend.Owner{UID: e.owner.UID, Cluster: "c2", Serial: 1}, spec(backend.PermissionReadOnly))
		g.Expect(err).NotTo(HaveOccurred())
		got, err := e.d.Get(e.ctx, created.ID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Owner.UID).To(Equal(e.owner.UID))
		g.Expect(got.Owner.Cluster).NotTo(BeEmpty())
		g.Expect(got.Owner.Cluster).NotTo(Equal(cluster))
	}},
	{"Identify tells which token a value is", backend.CapabilityClaim, func(t *testing.T, g Gomega, e *env) {
		created, err := e.d.Create(e.ctx, e.owner, spec(backend.PermissionReadOnly))
		g.Expect(err).NotTo(HaveOccurred())
		identifier := e.d.(backend.Identifier)
		got, err := identifier.Identify(e.ctx, created.Value)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.ID).To(Equal(created.ID))
		g.Expect(got.Status).To(Equal(backend.StatusActive))
		g.Expect(got.Owner.UID).To(Equal(e.owner.UID))
		g.Expect(got.IsAdmin()).To(BeFalse())
		admin, err := identifier.Identify(e.ctx, e.admin)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(admin.IsAdmin()).To(BeTrue())
		_, err = identifier.Identify(e.ctx, e.unknownValue)
		g.Expect(backend.IsUnauthorized(err)).To(BeTrue(), "%v", err)
	}},
	{"Claim makes a token made by hand the owner's, once", backend.CapabilityClaim, func(t *testing.T, g Gomega, e *env) {
		id, value := e.handMade(t)
		claimer := e.d.(backend.Claimer)
		before, err := e.d.(backend.Identifier).Identify(e.ctx, value)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(before.Owner.UID).To(BeEmpty())
		claimed, err := claimer.Claim(e.ctx, id, e.owner)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(claimed.ID).To(Equal(id))
		g.Expect(claimed.Owner.UID).To(Equal(e.owner.UID))
		again, err := claimer.Claim(e.ctx, id, e.owner)
		g.Expect(err).NotTo(HaveOccurred(), "claiming again for the same owner is harmless")
		g.Expect(again.Owner.UID).To(Equal(e.owner.UID))
		_, err = claimer.Claim(e.ctx, id, backend.Owner{UID: newUID(), Cluster: cluster})
		g.Expect(backend.IsClaimed(err)).To(BeTrue(), "%v", err)
		got, err := e.d.Get(e.ctx, id)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Owner.UID).To(Equal(e.owner.UID))
		g.Expect(e.authenticates(t, value)).To(BeTrue(), "claiming keeps the value")
	}},
}

func TestConformance(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			srv := s.start(t)
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) {
					e := &env{server: srv, d: srv.driver(t, cluster, srv.admin), ctx: context.Background(), owner: backend.Owner{UID: newUID(), Cluster: cluster, Serial: 1}}
					if b.needs != "" {
						caps, err := e.d.Capabilities(e.ctx)
						if err != nil {
							t.Fatal(err)
						}
						if !caps.Has(b.needs) {
							t.Skipf("%s does not list %q", s.name, b.needs)
						}
					}
					b.run(t, NewWithT(t), e)
				})
			}
		})
	}
}

func ids(ts []backend.Token) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func admins(ts []backend.Token) []string {
	out := []string{}
	for _, t := range ts {
		if t.IsAdmin() {
			out = append(out, t.ID)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUID is a random Kubernetes-style UID.
func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func mustUnmarshal(t *testing.T, raw []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
}
