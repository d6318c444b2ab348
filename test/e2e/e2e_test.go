package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// TestWorkloadUsesTokensFromSecrets: a ReadOnly and a FullAccess token, applied with
// kubectl, are usable straight from their Secrets, and the backend enforces the permission.
func TestWorkloadUsesTokensFromSecrets(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	workloadUsesTokensFromSecrets(t, e, "e2e-workload")
}

// workloadUsesTokensFromSecrets is the scenario of TestWorkloadUsesTokensFromSecrets, in namespace ns (created here) of e.
func workloadUsesTokensFromSecrets(t *testing.T, e *devenv.Env, ns string) {
	g := NewWithT(t)
	createNamespace(t, e, ns)
	applyManifest(t, e, tokenManifest(ns, "dashboard", "ReadOnly", "  secretName: dashboard-token\n")+"---\n"+
		tokenManifest(ns, "automation", "FullAccess", ""))
	waitReady(t, e, ns, "dashboard", "automation")

	ro := readSecret(t, e, ns, "dashboard-token")
	fa := readSecret(t, e, ns, "automation")
	for name, s := range map[string]secret{"dashboard-token": ro, "automation": fa} {
		g.Expect(s.Data).To(HaveKey("token"), name)
		g.Expect(s.Data["token"]).NotTo(BeEmpty(), name)
		g.Expect(s.Data).To(HaveKey("expiresAt"), name)
		g.Expect(s.Data).To(HaveKeyWithValue("url", e.BackendURL), name)
		g.Expect(s.Metadata.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "apitoken-operator"), name)
		g.Expect(s.Metadata.OwnerReferences).To(ContainElement(And(
			HaveField("Kind", "APIToken"), HaveField("Controller", true))), name)
	}
	g.Expect(ro.Metadata.Labels).To(HaveKeyWithValue("tokens.statusops.dev/apitoken", "dashboard"))

	// The status points at the token in the Secret and shows its last four characters only.
	status := getAPIToken(t, e, ns, "dashboard")
	g.Expect(status.Status.Phase).To(Equal("Active"))
	g.Expect(status.Status.TokenID).To(Equal(ro.Data["tokenID"]))
	g.Expect(status.Status.SecretName).To(Equal("dashboard-token"))
	g.Expect(ro.Data["token"]).To(HaveSuffix(strings.TrimLeft(status.Status.TokenHint, ".")))
	g.Expect(getBackendToken(t, e, ro.Data["tokenID"]).Permission).To(Equal("read_only"))
	g.Expect(getBackendToken(t, e, fa.Data["tokenID"]).Permission).To(Equal("full_access"))

	// A workload needs nothing but the Secret: url and token.
	code, body := callBackend(t, http.MethodGet, ro.Data["url"]+"/boards", ro.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusOK), body)
	code, body = callBackend(t, http.MethodPost, ro.Data["url"]+"/boards", ro.Data["token"], `{"name":"from-readonly"}`)
	g.Expect(code).To(Equal(http.StatusForbidden), body)
	g.Expect(body).To(ContainSubstring("token is read-only"))

	code, body = callBackend(t, http.MethodGet, fa.Data["url"]+"/boards", fa.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusOK), body)
	code, body = callBackend(t, http.MethodPost, fa.Data["url"]+"/boards", fa.Data["token"], `{"name":"from-fullaccess"}`)
	g.Expect(code).To(Equal(http.StatusCreated), body)
}

// TestTokenExpiresOnTime: a token whose expiresAt is a few seconds ahead turns Inactive
// (Ready=False, reason Expired) at that time, and the backend refuses it from then on.
func TestTokenExpiresOnTime(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	tokenExpiresOnTime(t, e, "e2e-expiry")
}

// tokenExpiresOnTime is the scenario of TestTokenExpiresOnTime, in namespace ns (created here) of e.
func tokenExpiresOnTime(t *testing.T, e *devenv.Env, ns string) {
	g := NewWithT(t)
	createNamespace(t, e, ns)
	expiresAt := time.Now().Add(8 * time.Second).Truncate(time.Second).Add(time.Second).UTC()
	applyManifest(t, e, tokenManifest(ns, "short-lived", "ReadOnly", "  expiresAt: \""+expiresAt.Format(time.RFC3339)+"\"\n"))
	waitReady(t, e, ns, "short-lived")

	s := readSecret(t, e, ns, "short-lived")
	g.Expect(s.Data["expiresAt"]).NotTo(BeEmpty())
	parsed, err := time.Parse(time.RFC3339, s.Data["expiresAt"])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed).To(BeTemporally("==", expiresAt))
	// The token works before it expires. Issuance slower than the 9 s margin is a failure,
	// not a reason to skip the check.
	g.Expect(time.Now()).To(BeTemporally("<", expiresAt), "the token was issued only after its expiresAt: the before-expiry check cannot run")
	code, body := callBackend(t, http.MethodGet, s.Data["url"]+"/boards", s.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusOK), body)

	// Scheduled, not polled: the phase changes within seconds of expiresAt, long before
	// the sync interval (one minute) comes around.
	g.Eventually(func() string {
		return getAPIToken(t, e, ns, "short-lived").Status.Phase
	}).WithTimeout(time.Until(expiresAt)+10*time.Second).WithPolling(250*time.Millisecond).
		Should(Equal("Inactive"), "phase did not turn Inactive within 10 s of expiresAt")
	g.Expect(getAPIToken(t, e, ns, "short-lived").readyReason()).To(Equal("False/Expired"))
	g.Expect(time.Now()).To(BeTemporally(">=", expiresAt), "turned Inactive before expiresAt")

	code, body = callBackend(t, http.MethodGet, s.Data["url"]+"/boards", s.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusUnauthorized), body)
	bt := getBackendToken(t, e, s.Data["tokenID"])
	g.Expect(bt.Status).To(Equal("inactive"))
	// Deactivated explicitly, at expiresAt to the second (the sync interval is a minute).
	g.Expect(bt.DeactivatedAt).NotTo(BeNil(), "deactivated explicitly, not only past its expiry")
	lag := bt.DeactivatedAt.Sub(expiresAt)
	t.Logf("expiry lag on the backend: %v", lag)
	g.Expect(lag).To(And(BeNumerically(">=", 0), BeNumerically("<=", time.Second)), "deactivated %v after expiresAt", lag)
}

// TestDeletingATokenRevokesItAndRemovesItsSecret: `kubectl delete apitoken` deactivates the
// backend token (deletionPolicy Revoke is the default) and the Secret goes with it.
func TestDeletingATokenRevokesItAndRemovesItsSecret(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	deletingATokenRevokesItAndRemovesItsSecret(t, e, "e2e-delete")
}

// deletingATokenRevokesItAndRemovesItsSecret is the scenario of TestDeletingATokenRevokesItAndRemovesItsSecret, in namespace ns (created here) of e.
func deletingATokenRevokesItAndRemovesItsSecret(t *testing.T, e *devenv.Env, ns string) {
	g := NewWithT(t)
	createNamespace(t, e, ns)
	applyManifest(t, e, tokenManifest(ns, "temporary", "FullAccess", ""))
	waitReady(t, e, ns, "temporary")
	s := readSecret(t, e, ns, "temporary")
	id := s.Data["tokenID"]
	g.Expect(getBackendToken(t, e, id).Status).To(Equal("active"))

	kubectl(t, e, "delete", "apitoken", "temporary", "-n", ns, "--wait", "--timeout=60s")

	g.Expect(getBackendToken(t, e, id).Status).To(Equal("inactive"), "the finalizer should deactivate before the APIToken goes")
	code, body := callBackend(t, http.MethodGet, s.Data["url"]+"/boards", s.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusUnauthorized), body)
	g.Eventually(func() error {
		_, err := kubectlErr(e, "get", "secret", "temporary", "-n", ns)
		return err
	}).WithTimeout(30*time.Second).WithPolling(250*time.Millisecond).
		Should(MatchError(ContainSubstring("NotFound")), "the Secret should be gone")
}

// TestDeletingANamespaceRevokesEveryToken: deleting a namespace (kube-controller-manager's
// namespace controller deletes its APITokens) deactivates every token it held.
func TestDeletingANamespaceRevokesEveryToken(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	deletingANamespaceRevokesEveryToken(t, e, "e2e-namespace")
}

// deletingANamespaceRevokesEveryToken is the scenario of TestDeletingANamespaceRevokesEveryToken, in namespace ns (created here) of e.
func deletingANamespaceRevokesEveryToken(t *testing.T, e *devenv.Env, ns string) {
	g := NewWithT(t)
	createNamespace(t, e, ns)
	names := []string{"team-a", "team-b", "team-c"}
	var manifests []string
	for i, n := range names {
		perm := "ReadOnly"
		if i == 0 {
			perm = "FullAccess"
		}
		manifests = append(manifests, tokenManifest(ns, n, perm, ""))
	}
	applyManifest(t, e, strings.Join(manifests, "---\n"))
	waitReady(t, e, ns, names...)
	secrets := map[string]secret{}
	for _, n := range names {
		secrets[n] = readSecret(t, e, ns, n)
		g.Expect(getBackendToken(t, e, secrets[n].Data["tokenID"]).Status).To(Equal("active"))
	}

	kubectl(t, e, "delete", "namespace", ns, "--wait", "--timeout=90s")

	for _, n := range names {
		s := secrets[n]
		g.Expect(getBackendToken(t, e, s.Data["tokenID"]).Status).To(Equal("inactive"), n)
		code, body := callBackend(t, http.MethodGet, s.Data["url"]+"/boards", s.Data["token"], "")
		g.Expect(code).To(Equal(http.StatusUnauthorized), n+": "+body)
	}
}
