package controllers_test

// The controllers on a real Zabbix 6.0 (internal/zabbixtest; issue 29): every feature the
// reference-backend tests prove, proved again on Zabbix API tokens, and each assertion checked
// against Zabbix itself (the Super admin's token.get, and the Secret's value used as a
// workload uses it). The tests share one Zabbix (zabbixtest.Shared, stopped in TestMain) and
// tell their tokens apart by the APIToken UID in the token names.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

// newZabbixHarness is newHarness on the test binary's shared Zabbix: the admin Secret holds
// its Super-admin API token and the ClusterStatusBackend names the two users bootstrap.php
// made (spec.provider.zabbix). It returns once the backend is Ready with status.driver zabbix.
func newZabbixHarness(t *testing.T, mutate ...func(*controllers.Options)) *harness {
	t.Helper()
	z := zabbixtest.Shared(t)
	h := newNamespace(t)
	h.zabbix = z
	h.createAdminSecret(h.ns, "admin", z.AdminToken)
	h.createClusterBackend(h.backendName, z.URL, zabbixProvider(z))
	h.run(mutate...)
	NewWithT(t).Expect(h.clusterBackend(h.backendName).Status.Driver).To(Equal(tokensv1alpha1.DriverZabbix))
	return h
}

// zabbixProvider makes a backend speak to z with the zabbix driver and bootstrap.php's users.
func zabbixProvider(z *zabbixtest.Server) func(*tokensv1alpha1.ClusterStatusBackend) {
	return func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.Provider = &tokensv1alpha1.BackendProvider{Zabbix: &tokensv1alpha1.ZabbixProvider{
			ReadOnlyUser: z.ReadOnlyUser.Name, FullAccessUser: z.FullAccessUser.Name,
		}}
	}
}

func (h *harness) clusterBackend(name string) *tokensv1alpha1.ClusterStatusBackend {
	h.t.Helper()
	var b tokensv1alpha1.ClusterStatusBackend
	NewWithT(h.t).Expect(h.c.Get(h.ctx, types.NamespacedName{Name: name}, &b)).To(Succeed())
	return &b
}

// zabbixToken is a token as Zabbix's Super admin reads it with token.get (numbers as strings).
type zabbixToken struct {
	TokenID     string `json:"tokenid"`
	Name        string `json:"name"`
	Description string `json:"description"`
	UserID      string `json:"userid"`
	Status      string `json:"status"` // "0" enabled, "1" disabled
	ExpiresAt   string `json:"expires_at"`
	LastAccess  string `json:"lastaccess"`
}

// zabbixCall calls the API of the test's Zabbix with auth in the body, as Zabbix 6.0 takes it.
func (h *harness) zabbixCall(method string, params any, auth string, out any) error {
	h.t.Helper()
	raw, err := h.zabbix.Call(h.ctx, method, params, auth)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s: decoding %s: %v", method, raw, err)
		}
	}
	return nil
}

// mustZabbixCall is zabbixCall as the Super admin, failing the test on an error.
func (h *harness) mustZabbixCall(method string, params any, out any) {
	h.t.Helper()
	if err := h.zabbixCall(method, params, h.zabbix.AdminToken, out); err != nil {
		h.t.Fatalf("%s: %v", method, err)
	}
}

// zabbixTokensOf lists every token of the two users whose name carries uid, in any status:
// what Zabbix holds for one APIToken.
func (h *harness) zabbixTokensOf(uid types.UID) []zabbixToken {
	h.t.Helper()
	var all []zabbixToken
	h.mustZabbixCall("token.get", map[string]any{"output": "extend",
		"userids": []string{h.zabbix.ReadOnlyUser.ID, h.zabbix.FullAccessUser.ID},
		"search":  map[string]any{"name": string(uid)}}, &all)
	var out []zabbixToken
	for _, tk := range all {
		if strings.Contains(tk.Name, "."+string(uid)+".") {
			out = append(out, tk)
		}
	}
	return out
}

// enabledZabbixTokens is the ids of uid's enabled tokens, sorted.
func (h *harness) enabledZabbixTokens(uid types.UID) []string {
	h.t.Helper()
	var ids []string
	for _, tk := range h.zabbixTokensOf(uid) {
		if tk.Status == "0" {
			ids = append(ids, tk.TokenID)
		}
	}
	slices.Sort(ids)
	return ids
}

// zabbixTokenByID reads one token as the Super admin.
func (h *harness) zabbixTokenByID(id string) zabbixToken {
	h.t.Helper()
	var found []zabbixToken
	h.mustZabbixCall("token.get", map[string]any{"output": "extend", "tokenids": []string{id}}, &found)
	if len(found) != 1 {
		h.t.Fatalf("token.get %s: %d tokens", id, len(found))
	}
	return found[0]
}

// zabbixUse calls method with value as a workload does: "" when Zabbix carried it out, else
// the reason Zabbix gave (its error's data, e.g. "Not authorized.").
func (h *harness) zabbixUse(value []byte, method string, params any) string {
	h.t.Helper()
	err := h.zabbixCall(method, params, string(value), nil)
	if err == nil {
		return ""
	}
	var ze *zabbixtest.Error
	if !errors.As(err, &ze) {
		h.t.Fatalf("%s: %v", method, err)
	}
	return ze.Data
}

var hostGet = map[string]any{"output": []string{"hostid"}, "limit": 1}

// newDashboard is a dashboard.create: a write any full-access token may make.
func newDashboard(name string) map[string]any {
	return map[string]any{"name": name + "-" + fmt.Sprint(time.Now().UnixNano()), "pages": []map[string]any{{"widgets": []any{}}}}
}

const notAuthorized = "Not authorized."

// refused is what Zabbix answers a value that no longer works: disabled (or deleted), or past
// its expiry.
var refused = BeElementOf(notAuthorized, "API token expired.")

// ownerPrefix is how the zabbix driver names every token of the APIToken uid on this cluster:
// k8s.<sha256(cluster identity)[:8]>.<uid>. (then the serial and a spec digest).
func (h *harness) ownerPrefix(uid types.UID) string {
	h.t.Helper()
	var ks corev1.Namespace
	NewWithT(h.t).Expect(h.c.Get(h.ctx, types.NamespacedName{Name: metav1.NamespaceSystem}, &ks)).To(Succeed())
	sum := sha256.Sum256([]byte(ks.UID))
	return "k8s." + hex.EncodeToString(sum[:4]) + "." + string(uid) + "."
}

// listedAndEnabled reads what the APIToken lists (status.tokenID and status.previousTokens)
// and which of its tokens Zabbix has enabled, from one unchanged status: the APIToken is read
// again after Zabbix, and the pair is read again when its status moved meanwhile.
func (h *harness) listedAndEnabled(name string) (listed, enabled []string) {
	h.t.Helper()
	for range 20 {
		before := h.get(name)
		enabled = h.enabledZabbixTokens(before.UID)
		after := h.get(name)
		if after.ResourceVersion != before.ResourceVersion {
			continue
		}
		listed = previousIDsOf(before)
		if before.Status.TokenID != "" {
			listed = append(listed, before.Status.TokenID)
		}
		slices.Sort(listed)
		return listed, enabled
	}
	h.t.Fatalf("the status of %s kept changing", name)
	return nil, nil
}

// TestZabbixIssue: a ReadOnly APIToken gets exactly one enabled token of the read-only user,
// named after its owner; the Secret's url is the JSON-RPC endpoint and its value can read
// (host.get) but not write (dashboard.create, host.create). A FullAccess one gets a token of
// the full-access user that can write but cannot mint tokens.
func TestZabbixIssue(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	z := h.zabbix
	ro := h.create(h.newToken("grafana", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.Description = "Grafana data source" }))
	fa := h.create(h.newToken("automation", tokensv1alpha1.PermissionFullAccess))
	ro = h.waitFor(ro.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	fa = h.waitFor(fa.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	tokens := h.zabbixTokensOf(ro.UID)
	g.Expect(tokens).To(HaveLen(1), "one Zabbix token for the APIToken")
	tk := tokens[0]
	g.Expect(tk.TokenID).To(Equal(ro.Status.TokenID))
	g.Expect(tk.Status).To(Equal("0"), "enabled")
	g.Expect(tk.UserID).To(Equal(z.ReadOnlyUser.ID), "ReadOnly is a token of the read-only user")
	g.Expect(tk.Name).To(MatchRegexp("^"+regexp.QuoteMeta(h.ownerPrefix(ro.UID))+`1\.[0-9a-f]{6}$`), "named after the owner, serial 1")
	g.Expect(tk.Description).To(Equal(h.ns + "/grafana: Grafana data source"))
	g.Expect(tk.ExpiresAt).To(Equal("0"), "no expiry asked, none set")

	s := h.secret("grafana")
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyURL])).To(Equal(z.APIURL), "workloads call api_jsonrpc.php")
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyTokenID])).To(Equal(tk.TokenID))
	g.Expect(s.Data["token"]).To(MatchRegexp("^[0-9a-f]{64}$"))
	g.Expect(ro.Status.TokenHint).To(HaveSuffix(string(s.Data["token"][60:])))
	g.Expect(h.zabbixUse(s.Data["token"], "host.get", hostGet)).To(BeEmpty(), "a ReadOnly value reads")
	g.Expect(h.zabbixUse(s.Data["token"], "dashboard.create", newDashboard("ro"))).To(Equal(`No permissions to call "dashboard.create".`))
	g.Expect(h.zabbixUse(s.Data["token"], "host.create", map[string]any{"host": "ro-" + h.ns, "groups": []map[string]string{{"groupid": z.HostGroup.ID}}})).
		To(Equal(`No permissions to call "host.create".`))

	tokens = h.zabbixTokensOf(fa.UID)
	g.Expect(tokens).To(HaveLen(1))
	g.Expect(tokens[0].TokenID).To(Equal(fa.Status.TokenID))
	g.Expect(tokens[0].UserID).To(Equal(z.FullAccessUser.ID), "FullAccess is a token of the full-access user")
	g.Expect(tokens[0].Status).To(Equal("0"))
	faValue := h.secret("automation").Data["token"]
	g.Expect(h.zabbixUse(faValue, "dashboard.create", newDashboard("fa"))).To(BeEmpty(), "a FullAccess value writes")
	g.Expect(h.zabbixUse(faValue, "token.create", map[string]any{"name": "escalate"})).To(Equal(`No permissions to call "token.create".`), "but never mints tokens")

	// Zabbix's lastaccess reaches status.lastUsedAt within the sync interval.
	g.Eventually(func() *metav1.Time { return h.get("grafana").Status.LastUsedAt }).WithTimeout(15 * time.Second).ShouldNot(BeNil())
	h.expectEventCount("grafana", tokensv1alpha1.ReasonIssued, 1)
}

// TestZabbixExpiresAtTheSecond: a token whose expiresAt is seconds ahead carries it as
// expires_at, turns Inactive/Expired at that second (an hour-long sync interval: only the
// scheduled pass can do it), and is disabled on Zabbix, so its value is refused.
func TestZabbixExpiresAtTheSecond(t *testing.T) {
	h := newZabbixHarness(t, func(o *controllers.Options) { o.SyncInterval = time.Hour })
	g := NewWithT(t)
	exp := metav1.NewTime(time.Now().Add(4 * time.Second).UTC().Truncate(time.Second).Add(time.Second))
	tok := h.create(h.newToken("short", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &exp }))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	id := tok.Status.TokenID
	value := h.secret("short").Data["token"]
	g.Expect(h.zabbixTokenByID(id).ExpiresAt).To(Equal(fmt.Sprint(exp.Unix())))
	g.Expect(time.Now()).To(BeTemporally("<", exp.Time), "issued only after expiresAt: the before-expiry check cannot run")
	g.Expect(h.zabbixUse(value, "host.get", hostGet)).To(BeEmpty(), "works until it expires")

	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonExpired)
	lag := h.readyCondition(tok).LastTransitionTime.Sub(exp.Time)
	t.Logf("expiry lag (condition, to the second): %v", lag)
	g.Expect(lag).To(And(BeNumerically(">=", 0), BeNumerically("<=", time.Second)))
	g.Eventually(func() string { return h.zabbixTokenByID(id).Status }).WithTimeout(5*time.Second).Should(Equal("1"), "disabled on Zabbix, not only past expires_at")
	answer := h.zabbixUse(value, "host.get", hostGet)
	t.Logf("Zabbix answers the expired and disabled value with %q", answer)
	g.Expect(answer).To(refused)
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(BeEmpty())
	h.expectEventCount("short", tokensv1alpha1.ReasonExpired, 1)
}

// TestZabbixRotationWithOverlap: a requested rotation with a grace period issues a successor;
// the predecessor stays enabled (and listed in status.previousTokens) for the grace, then is
// disabled. At every check exactly the tokens status lists are enabled on Zabbix.
func TestZabbixRotationWithOverlap(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	const grace = 8 * time.Second
	tok := h.waitFor(h.create(h.newToken("overlap", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(grace)}))).Name,
		tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	old, oldValue := tok.Status.TokenID, h.secret(tok.Name).Data["token"]
	listed, enabled := h.listedAndEnabled(tok.Name)
	g.Expect(enabled).To(Equal([]string{old}))
	g.Expect(enabled).To(Equal(listed))

	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	got := waitForNewToken(h, tok.Name, old)
	g.Expect(previousIDsOf(got)).To(Equal([]string{old}))
	g.Expect(h.zabbixTokenByID(got.Status.TokenID).Name).To(HavePrefix(h.ownerPrefix(got.UID)+"2."), "the successor is serial 2")
	newValue := h.secret(tok.Name).Data["token"]
	g.Expect(newValue).NotTo(Equal(oldValue))
	// During the grace both work; they are used at once, early in it (a use in its second half
	// would be a predecessor still in use, retired with a warning instead).
	g.Expect(h.zabbixUse(oldValue, "host.get", hostGet)).To(BeEmpty(), "the predecessor works during the grace")
	g.Expect(h.zabbixUse(newValue, "host.get", hostGet)).To(BeEmpty())
	// And for the rest of it both are enabled, and they are what status lists.
	for time.Since(got.Status.PreviousTokens[0].SupersededAt.Time) < grace-2*time.Second {
		listed, enabled = h.listedAndEnabled(tok.Name)
		g.Expect(enabled).To(Equal(listed))
		g.Expect(enabled).To(ConsistOf(old, got.Status.TokenID))
		time.Sleep(300 * time.Millisecond)
	}

	g.Eventually(func() []tokensv1alpha1.PreviousToken { return h.get(tok.Name).Status.PreviousTokens }).WithTimeout(20 * time.Second).Should(BeEmpty())
	listed, enabled = h.listedAndEnabled(tok.Name)
	g.Expect(enabled).To(Equal(listed))
	g.Expect(enabled).To(Equal([]string{got.Status.TokenID}))
	g.Expect(h.zabbixTokenByID(old).Status).To(Equal("1"), "the predecessor is disabled after the grace")
	g.Expect(h.zabbixUse(oldValue, "host.get", hostGet)).To(Equal(notAuthorized))
	g.Expect(h.zabbixUse(newValue, "host.get", hostGet)).To(BeEmpty())
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorRetired)).To(ContainSubstring("grace period is over"))
}

// TestZabbixAdoption: a token a person made for the read-only user, its value in a Secret of
// their own, is adopted: renamed to the owner's name (serial 0), no new token, and the same
// value keeps working from the Secret taken over in place.
func TestZabbixAdoption(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	var created struct {
		TokenIDs []string `json:"tokenids"`
	}
	h.mustZabbixCall("token.create", map[string]any{"name": "grafana by hand " + h.ns, "userid": h.zabbix.ReadOnlyUser.ID}, &created)
	id := created.TokenIDs[0]
	var gen []struct {
		Token string `json:"token"`
	}
	h.mustZabbixCall("token.generate", []string{id}, &gen)
	value := []byte(gen[0].Token)
	legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "legacy-grafana"}, Data: map[string][]byte{"token": value}}
	g.Expect(h.c.Create(h.ctx, legacy)).To(Succeed())

	tok := h.create(h.newToken("legacy-grafana", tokensv1alpha1.PermissionReadOnly, adopting(id, "legacy-grafana")))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
	g.Expect(got.Status.TokenID).To(Equal(id))
	tk := h.zabbixTokenByID(id)
	g.Expect(tk.LastAccess).To(Equal("0"), "verified without using the value: lastaccess untouched")
	g.Expect(tk.Name).To(MatchRegexp("^"+regexp.QuoteMeta(h.ownerPrefix(got.UID))+`0\.[0-9a-f]{6}$`), "claimed: renamed to the owner's name, serial 0")
	g.Expect(tk.Status).To(Equal("0"))
	g.Expect(h.zabbixTokensOf(got.UID)).To(HaveLen(1), "no new token")
	s := h.secret(tok.Name)
	g.Expect(s.Data["token"]).To(Equal(value), "the value is unchanged")
	g.Expect(metav1.IsControlledBy(s, got)).To(BeTrue(), "the Secret was taken over in place")
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyURL])).To(Equal(h.zabbix.APIURL))
	g.Expect(h.zabbixUse(value, "host.get", hostGet)).To(BeEmpty(), "the same value still works")
	g.Consistently(func() string { return h.get(tok.Name).Status.TokenID }).WithTimeout(2*time.Second).Should(Equal(id), "stays adopted")
}

// TestZabbixDeleteRevokesAndRetains: deleting a Revoke APIToken disables its token and removes
// the Secret; deleting a Retain one (ReadOnly) leaves the token enabled and keeps the Secret.
func TestZabbixDeleteRevokesAndRetains(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	revoke := h.waitFor(h.create(h.newToken("revoke-me", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	retain := h.waitFor(h.create(h.newToken("retain-me", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
	})).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	revokeValue, retainValue := h.secret("revoke-me").Data["token"], h.secret("retain-me").Data["token"]

	g.Expect(h.c.Delete(h.ctx, revoke)).To(Succeed())
	g.Expect(h.c.Delete(h.ctx, retain)).To(Succeed())
	g.Eventually(func() bool { return h.get("revoke-me") == nil && h.get("retain-me") == nil }).WithTimeout(20 * time.Second).Should(BeTrue())

	g.Expect(h.secret("revoke-me")).To(BeNil(), "Revoke removes the Secret")
	g.Expect(h.zabbixTokenByID(revoke.Status.TokenID).Status).To(Equal("1"), "Revoke disables the token")
	g.Expect(h.zabbixUse(revokeValue, "host.get", hostGet)).To(Equal(notAuthorized))

	kept := h.secret("retain-me")
	g.Expect(kept).NotTo(BeNil(), "Retain keeps the Secret")
	g.Expect(kept.OwnerReferences).To(BeEmpty())
	g.Expect(kept.Data["token"]).To(Equal(retainValue))
	g.Expect(h.zabbixTokenByID(retain.Status.TokenID).Status).To(Equal("0"), "Retain leaves the token enabled")
	g.Expect(h.zabbixUse(retainValue, "host.get", hostGet)).To(BeEmpty())
}

// TestZabbixActiveAndDrift: spec.active false disables the token and true issues a new one;
// a deleted Secret gets a new token (the old one disabled); a token disabled by hand in
// Zabbix is reported RevokedOnBackend and replaced. One enabled token at the end of each step.
func TestZabbixActiveAndDrift(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("toggle", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	first, firstValue := tok.Status.TokenID, h.secret("toggle").Data["token"]

	setActive := func(active bool) {
		cur := h.get("toggle")
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Active = &active
		g.Expect(h.c.Patch(h.ctx, cur, patch)).To(Succeed())
	}
	setActive(false)
	h.waitFor("toggle", tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)
	g.Expect(h.zabbixTokenByID(first).Status).To(Equal("1"))
	g.Expect(h.zabbixUse(firstValue, "host.get", hostGet)).To(Equal(notAuthorized))
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(BeEmpty())

	setActive(true)
	tok = h.waitFor("toggle", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	second := tok.Status.TokenID
	g.Expect(second).NotTo(Equal(first), "a disabled token is never enabled again")
	g.Expect(h.zabbixTokenByID(first).Status).To(Equal("1"))
	g.Expect(h.zabbixUse(h.secret("toggle").Data["token"], "host.get", hostGet)).To(BeEmpty())
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(Equal([]string{second}))

	// The Secret is deleted.
	g.Expect(h.c.Delete(h.ctx, h.secret("toggle"))).To(Succeed())
	tok = waitForNewToken(h, "toggle", second)
	third := tok.Status.TokenID
	g.Expect(h.expectEvent("toggle", tokensv1alpha1.EventReplaced)).To(ContainSubstring("was deleted"))
	g.Expect(h.zabbixTokenByID(second).Status).To(Equal("1"))
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(Equal([]string{third}))

	// The token is disabled by hand in Zabbix.
	h.mustZabbixCall("token.update", map[string]any{"tokenid": third, "status": 1}, nil)
	tok = waitForNewToken(h, "toggle", third)
	g.Expect(h.expectEvent("toggle", tokensv1alpha1.EventRevokedOnBackend)).To(ContainSubstring(third))
	g.Expect(h.zabbixTokenByID(third).Status).To(Equal("1"), "left disabled")
	g.Expect(h.zabbixUse(h.secret("toggle").Data["token"], "host.get", hostGet)).To(BeEmpty())
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(Equal([]string{tok.Status.TokenID}))
	g.Expect(h.zabbixTokensOf(tok.UID)).To(HaveLen(4), "four tokens made, three disabled: none deleted")

	// A replaced token enabled again by hand is this APIToken's orphan: disabled again.
	h.mustZabbixCall("token.update", map[string]any{"tokenid": first, "status": 0}, nil)
	g.Eventually(func() string { return h.zabbixTokenByID(first).Status }).WithTimeout(15*time.Second).Should(Equal("1"), "the orphan is disabled again")
	g.Expect(h.enabledZabbixTokens(tok.UID)).To(Equal([]string{tok.Status.TokenID}))
	g.Expect(h.get("toggle").Status.TokenID).To(Equal(tok.Status.TokenID), "and the current token stays")
}

// TestZabbixBackendCheckNamesAMisconfiguredRole: a Zabbix of the test's own whose read-only
// role also allows host.create makes its backend Ready=False InvalidConfiguration, with the
// user, the role and the method in the message; no token is issued on it.
func TestZabbixBackendCheckNamesAMisconfiguredRole(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	own := zabbixtest.Start(t)
	_, err := own.Call(h.ctx, "role.update", map[string]any{"roleid": own.ReadOnlyUser.RoleID,
		"rules": map[string]any{"api.access": 1, "api.mode": 1, "api": []string{"*.get", "host.create"}}}, own.AdminToken)
	g.Expect(err).NotTo(HaveOccurred())
	h.createAdminSecret(h.ns, "own-admin", own.AdminToken)
	name := "broken-" + h.ns
	h.createClusterBackend(name, own.URL, func(b *tokensv1alpha1.ClusterStatusBackend) {
		zabbixProvider(own)(b)
		b.Spec.CredentialsSecretRef.Name = "own-admin"
	})
	cond := h.backendReady(name, tokensv1alpha1.ReasonInvalidConfiguration)
	g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(cond.Message).To(ContainSubstring(`user "apitoken-readonly" has role "apitoken-readonly" whose API access allows "host.create"; the read-only role must allow only *.get methods`))
	g.Expect(cond.Message).NotTo(ContainSubstring(own.AdminToken))
	g.Expect(h.clusterBackend(name).Status.Driver).To(Equal(tokensv1alpha1.DriverZabbix))

	tok := h.create(h.newToken("on-broken", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.BackendRef.Name = name }))
	h.waitFor(tok.Name, tokensv1alpha1.PhasePending, tokensv1alpha1.ReasonBackendNotReady)
	raw, err := own.Call(h.ctx, "token.get", map[string]any{"output": "extend", "userids": []string{own.ReadOnlyUser.ID, own.FullAccessUser.ID}}, own.AdminToken)
	g.Expect(err).NotTo(HaveOccurred())
	var onOwn []zabbixToken
	g.Expect(json.Unmarshal(raw, &onOwn)).To(Succeed())
	g.Expect(onOwn).To(BeEmpty(), "nothing is minted for a role that grants too much")
}

// TestZabbixCapabilitiesAndReview: the Zabbix backend's status lists usage and updated_since
// as unsupported with what each degrades, and claim as supported; a FullAccess token that
// never writes is not judged (on the reference backend it is, after one window): its
// LeastPrivilege condition stays Unknown, saying the backend does not report usage.
func TestZabbixCapabilitiesAndReview(t *testing.T) {
	window := 2 * time.Second
	h := newZabbixHarness(t, func(o *controllers.Options) { o.PermissionReviewWindow = &window })
	g := NewWithT(t)
	caps := h.clusterBackend(h.backendName).Status.Capabilities
	g.Expect(caps).To(ConsistOf(
		And(HaveField("Name", tokensv1alpha1.CapabilityUsage), HaveField("Supported", false), HaveField("Effect", ContainSubstring("least-privilege review reports Unknown"))),
		And(HaveField("Name", tokensv1alpha1.CapabilityUpdatedSince), HaveField("Supported", false), HaveField("Effect", ContainSubstring("lists every token each sync interval"))),
		And(HaveField("Name", tokensv1alpha1.CapabilityClaim), HaveField("Supported", true), HaveField("Effect", BeEmpty())),
	))
	cond := meta.FindStatusCondition(h.clusterBackend(h.backendName).Status.Conditions, tokensv1alpha1.ConditionReady)
	g.Expect(cond.Reason).To(Equal(tokensv1alpha1.ReasonPingSucceeded))

	fa := h.waitFor(h.create(h.newToken("idle-writer", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	c := waitReview(h, fa.Name, metav1.ConditionUnknown, tokensv1alpha1.ReasonInsufficientHistory)
	g.Expect(c.Message).To(ContainSubstring("does not report usage"))
	// Past two windows with no write: still no verdict, since Zabbix cannot say.
	g.Consistently(func(g Gomega) {
		c := leastPrivilege(h, fa.Name)
		g.Expect(c.Status).To(Equal(metav1.ConditionUnknown))
		g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonInsufficientHistory))
		g.Expect(c.Message).To(ContainSubstring("does not report usage"))
	}).WithTimeout(2*window + time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Expect(h.readyCondition(h.get(fa.Name)).Status).To(Equal(metav1.ConditionTrue))
}
