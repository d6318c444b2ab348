package zabbix_test

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

// proxied is the driver's configuration for z, through a fault proxy.
func proxied(t *testing.T, z *zabbixtest.Server) (*faultproxy.Proxy, backend.Config) {
	t.Helper()
	p, err := faultproxy.Start(z.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	cfg := config(z, "c1")
	cfg.URL = p.URL
	return p, cfg
}

// tokensNamed lists the tokens of userID with that name, as the admin sees them.
func tokensNamed(t *testing.T, z *zabbixtest.Server, userID, name string) []struct {
	TokenID string `json:"tokenid"`
	Status  string `json:"status"`
} {
	t.Helper()
	var out []struct {
		TokenID string `json:"tokenid"`
		Status  string `json:"status"`
	}
	mustCall(t, z, "token.get", map[string]any{"output": []string{"tokenid", "status"}, "userids": []string{userID}, "filter": map[string]any{"name": name}}, z.AdminToken, &out)
	return out
}

// TestCreateSurvivesALostReply loses the reply of each write of a create after Zabbix made it;
// the retry must end with exactly one token of that name, active, whose returned value works.
func TestCreateSurvivesALostReply(t *testing.T) {
	z := zabbixtest.Shared(t)
	for _, tc := range []struct {
		method   string
		requests int // of the retry
	}{
		// The retry's token.create is refused (the name is taken), it finds the token by name
		// and generates its value again.
		{"token.create", 3},
		// The same: generating again kills the value whose reply was lost.
		{"token.generate", 3},
	} {
		t.Run(tc.method, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			p, cfg := proxied(t, z)
			c := &counter{}
			d := newDriver(t, cfg, c)
			_, err := d.Self(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
			spec := backend.TokenSpec{Name: "ns/lost", Permission: backend.PermissionReadOnly}

			p.Add(faultproxy.Fault{Kind: faultproxy.LoseReply, Times: 1, Match: faultproxy.MatchJSONRPC(tc.method)})
			_, err = d.Create(ctx, owner, spec)
			g.Expect(backend.IsTransient(err)).To(BeTrue(), "%v", err)
			c.take()

			created, err := d.Create(ctx, owner, spec)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(created.Replayed).To(BeTrue())
			g.Expect(c.take()).To(Equal(map[string]int{"create": tc.requests}))

			tokens := tokensNamed(t, z, z.ReadOnlyUser.ID, created.Name)
			g.Expect(tokens).To(HaveLen(1))
			g.Expect(tokens[0].TokenID).To(Equal(created.ID))
			g.Expect(tokens[0].Status).To(Equal("0"))
			ok, _ := hostGet(t, z, created.Value)
			g.Expect(ok).To(BeTrue())
			// One value per token: the one returned is the one that works.
			other, err := d.Identify(ctx, created.Value)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(other.ID).To(Equal(created.ID))
		})
	}
}

// TestCreateKillsTheUndeliveredValue: a generate whose reply was lost set a value
// nobody has; the retry's generate replaces it, so the only value that works is the one
// delivered. The test sees the lost value by asking token.generate itself first.
func TestCreateKillsTheUndeliveredValue(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	d := newDriver(t, config(z, "c1"), nil)
	owner := backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}
	spec := backend.TokenSpec{Name: "ns/undelivered", Permission: backend.PermissionFullAccess}
	first, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	// What a lost token.generate reply held: a value set on the token.
	var gen []struct {
		Token string `json:"token"`
	}
	mustCall(t, z, "token.generate", []string{first.ID}, z.AdminToken, &gen)
	lost := backend.SecretValue(gen[0].Token)
	ok, _ := hostGet(t, z, lost)
	g.Expect(ok).To(BeTrue())

	retried, err := d.Create(ctx, owner, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(retried.ID).To(Equal(first.ID))
	ok, data := hostGet(t, z, lost)
	g.Expect(ok).To(BeFalse())
	g.Expect(data).To(Equal("Not authorized."))
	ok, _ = hostGet(t, z, retried.Value)
	g.Expect(ok).To(BeTrue())
}

func TestDeactivateAfterA5xx(t *testing.T) {
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	ctx := context.Background()
	p, cfg := proxied(t, z)
	d := newDriver(t, cfg, nil)
	created, err := d.Create(ctx, backend.Owner{UID: newUID(), Cluster: "c1", Serial: 1}, backend.TokenSpec{Name: "ns/5xx", Permission: backend.PermissionReadOnly})
	g.Expect(err).NotTo(HaveOccurred())

	p.Add(faultproxy.Fault{Kind: faultproxy.Status, Status: http.StatusServiceUnavailable, Match: faultproxy.MatchJSONRPC("token.update"), Times: 1})
	_, err = d.Deactivate(ctx, created.ID)
	g.Expect(backend.IsTransient(err)).To(BeTrue(), "%v", err)
	g.Expect(err.(*backend.Error).StatusCode).To(Equal(http.StatusServiceUnavailable))
	ok, _ := hostGet(t, z, created.Value)
	g.Expect(ok).To(BeTrue(), "the refused request never reached Zabbix")

	p.Add(faultproxy.Fault{Kind: faultproxy.RateLimit, RetryAfter: 3, Match: faultproxy.MatchJSONRPC("token.update"), Times: 1})
	_, err = d.Deactivate(ctx, created.ID)
	g.Expect(backend.IsTransient(err)).To(BeTrue(), "%v", err)
	g.Expect(backend.RetryAfter(err).Seconds()).To(Equal(3.0))

	got, err := d.Deactivate(ctx, created.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Status).To(Equal(backend.StatusInactive))
	ok, _ = hostGet(t, z, created.Value)
	g.Expect(ok).To(BeFalse())
}
