package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

// TestZabbixTokensWithKubectl is issue 29 as a user meets it: a ClusterStatusBackend with
// spec.provider.zabbix and its Super-admin Secret, and APITokens on it, applied with kubectl
// to the built manager running as a process, against a real Zabbix 6.0 (internal/zabbixtest;
// on CI a missing Zabbix fails the test). The Secrets, read with kubectl, are all a workload
// needs: url (api_jsonrpc.php) and token, and Zabbix enforces the permission. Deleting an
// APIToken with kubectl, or reaching its expiresAt, kills the value on Zabbix.
func TestZabbixTokensWithKubectl(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	z := zabbixtest.Shared(t)
	g := NewWithT(t)
	const ns, backendName = "e2e-zabbix", "zabbix-e2e"
	createNamespace(t, e, ns)
	kubectl(t, e, "create", "secret", "generic", "zabbix-admin", "-n", ns, "--from-literal=token="+z.AdminToken)
	applyManifest(t, e, fmt.Sprintf(`apiVersion: tokens.statusops.dev/v1alpha1
kind: ClusterStatusBackend
metadata:
  name: %s
spec:
  url: %s
  credentialsSecretRef: {name: zabbix-admin, namespace: %s, key: token}
  provider:
    zabbix:
      readOnlyUser: %s
      fullAccessUser: %s
`, backendName, z.URL, ns, z.ReadOnlyUser.Name, z.FullAccessUser.Name))
	t.Cleanup(func() {
		_, _ = kubectlErr(e, "delete", "clusterstatusbackend", backendName, "--wait=false", "--ignore-not-found")
	})
	kubectl(t, e, "wait", "--for=condition=Ready", "--timeout=60s", "clusterstatusbackend/"+backendName)
	g.Expect(driverColumn(t, kubectl(t, e, "get", "clusterstatusbackends"), backendName)).To(Equal("zabbix"))

	onZabbix := "  backendRef: {kind: ClusterStatusBackend, name: " + backendName + "}\n"
	expiresAt := time.Now().Add(15 * time.Second).Truncate(time.Second).Add(time.Second).UTC()
	applyManifest(t, e, strings.Join([]string{
		tokenManifest(ns, "grafana", "ReadOnly", onZabbix),
		tokenManifest(ns, "automation", "FullAccess", onZabbix),
		tokenManifest(ns, "short-lived", "ReadOnly", onZabbix+"  expiresAt: \""+expiresAt.Format(time.RFC3339)+"\"\n"),
	}, "---\n"))
	waitReady(t, e, ns, "grafana", "automation", "short-lived")

	ro, fa, short := readSecret(t, e, ns, "grafana"), readSecret(t, e, ns, "automation"), readSecret(t, e, ns, "short-lived")
	for name, s := range map[string]secret{"grafana": ro, "automation": fa, "short-lived": short} {
		g.Expect(s.Data).To(HaveKeyWithValue("url", z.APIURL), name)
		g.Expect(s.Data["token"]).To(MatchRegexp("^[0-9a-f]{64}$"), name)
		g.Expect(getAPIToken(t, e, ns, name).Status.TokenID).To(Equal(s.Data["tokenID"]), name)
	}
	// What Zabbix's Super admin sees: a token of the user whose role is the permission.
	g.Expect(zabbixTokenUser(t, z, ro.Data["tokenID"])).To(Equal(z.ReadOnlyUser.ID))
	g.Expect(zabbixTokenUser(t, z, fa.Data["tokenID"])).To(Equal(z.FullAccessUser.ID))

	// A workload needs nothing but the Secret: url and token.
	g.Expect(callZabbix(t, ro, "host.get", map[string]any{"limit": 1})).To(BeEmpty())
	g.Expect(callZabbix(t, ro, "dashboard.create", dashboard("e2e-ro"))).To(Equal(`No permissions to call "dashboard.create".`))
	g.Expect(callZabbix(t, fa, "dashboard.create", dashboard("e2e-fa"))).To(BeEmpty())
	g.Expect(callZabbix(t, fa, "token.create", map[string]any{"name": "escalate"})).To(Equal(`No permissions to call "token.create".`))

	kubectl(t, e, "delete", "apitoken", "automation", "-n", ns, "--wait", "--timeout=60s")
	g.Expect(callZabbix(t, fa, "host.get", map[string]any{"limit": 1})).To(Equal("Not authorized."), "deleted with kubectl: the value is dead")
	g.Eventually(func() error {
		_, err := kubectlErr(e, "get", "secret", "automation", "-n", ns)
		return err
	}).WithTimeout(30*time.Second).WithPolling(250*time.Millisecond).Should(MatchError(ContainSubstring("NotFound")), "the Secret should be gone")

	g.Expect(time.Now()).To(BeTemporally("<", expiresAt), "issued only after its expiresAt: the before-expiry check cannot run")
	g.Expect(callZabbix(t, short, "host.get", map[string]any{"limit": 1})).To(BeEmpty())
	g.Eventually(func() string { return getAPIToken(t, e, ns, "short-lived").Status.Phase }).
		WithTimeout(time.Until(expiresAt) + 10*time.Second).WithPolling(250 * time.Millisecond).Should(Equal("Inactive"))
	g.Expect(getAPIToken(t, e, ns, "short-lived").readyReason()).To(Equal("False/Expired"))
	g.Expect(callZabbix(t, short, "host.get", map[string]any{"limit": 1})).To(BeElementOf("Not authorized.", "API token expired."))
	g.Expect(callZabbix(t, ro, "host.get", map[string]any{"limit": 1})).To(BeEmpty(), "the other tokens are untouched")
}

// driverColumn is the DRIVER column of the row name in `kubectl get` output.
func driverColumn(t *testing.T, out, name string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	col := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "DRIVER" {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("no DRIVER column in:\n%s", out)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > col && f[0] == name {
			return f[col]
		}
	}
	t.Fatalf("no row %s in:\n%s", name, out)
	return ""
}

// callZabbix calls the API the way a workload (Grafana's Zabbix data source, a script) does
// with a Secret: a JSON-RPC POST to its url with its token in the body's "auth" (Zabbix 6.0).
// It returns "" when Zabbix carried the call out, else the reason Zabbix gave.
func callZabbix(t *testing.T, s secret, method string, params any) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "auth": s.Data["token"], "id": 1})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.Data["url"], bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json-rpc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, s.Data["url"], err)
	}
	defer resp.Body.Close()
	var reply struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data string `json:"data"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		t.Fatalf("%s: HTTP %d, not a JSON-RPC answer: %v", method, resp.StatusCode, err)
	}
	if reply.Error != nil {
		return reply.Error.Data
	}
	return ""
}

func dashboard(name string) map[string]any {
	return map[string]any{"name": fmt.Sprintf("%s-%d", name, time.Now().UnixNano()), "pages": []map[string]any{{"widgets": []any{}}}}
}

// zabbixTokenUser is the user a token belongs to, as Zabbix's Super admin reads it.
func zabbixTokenUser(t *testing.T, z *zabbixtest.Server, id string) string {
	t.Helper()
	raw, err := z.Call(t.Context(), "token.get", map[string]any{"output": []string{"userid", "status"}, "tokenids": []string{id}}, z.AdminToken)
	if err != nil {
		t.Fatalf("token.get %s: %v", id, err)
	}
	var found []struct {
		UserID string `json:"userid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &found); err != nil || len(found) != 1 || found[0].Status != "0" {
		t.Fatalf("token.get %s: %s (%v): want one enabled token", id, raw, err)
	}
	return found[0].UserID
}
