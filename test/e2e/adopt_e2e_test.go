package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestAdoptAndSwitchToReadOnly is the product note's advice carried out with kubectl, end to
// end: a FullAccess token made by hand, its value in the team's own Secret, is adopted in
// place (its value unchanged, claimed with this APIToken's UID), then switched to ReadOnly
// with an overlap: the Secret gets a read-only token made by the operator (labelled with this
// cluster's identity, the kube-system UID), the legacy value keeps working for the grace
// period and is deactivated after it. The backend lists its token counts for review.
func TestAdoptAndSwitchToReadOnly(t *testing.T) {
	e := requireEnv(t)
	t.Parallel()
	g := NewWithT(t)
	ns := "e2e-adopt"
	createNamespace(t, e, ns)

	code, body := callBackend(t, http.MethodPost, e.BackendURL+"/api_tokens", e.AdminToken, `{"name":"legacy bot","permission":"full_access"}`)
	g.Expect(code).To(Equal(http.StatusCreated), body)
	var created struct {
		Data struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		} `json:"data"`
	}
	g.Expect(json.Unmarshal([]byte(body), &created)).To(Succeed())
	legacyID, legacyValue := created.Data.ID, created.Data.Token
	kubectl(t, e, "create", "secret", "generic", "legacy-bot", "-n", ns, "--from-literal=token="+legacyValue)

	applyManifest(t, e, tokenManifest(ns, "legacy-bot", "FullAccess", "  adopt:\n    tokenID: "+legacyID+"\n    secretRef: {name: legacy-bot}\n"))
	waitReady(t, e, ns, "legacy-bot")
	tok := getAPIToken(t, e, ns, "legacy-bot")
	g.Expect(tok.readyReason()).To(Equal("True/Adopted"))
	g.Expect(tok.Status.TokenID).To(Equal(legacyID))
	s := readSecret(t, e, ns, "legacy-bot")
	g.Expect(s.Data["token"]).To(Equal(legacyValue), "the value is unchanged")
	g.Expect(s.Data["url"]).To(Equal(e.BackendURL))
	g.Expect(s.Metadata.OwnerReferences).To(ContainElement(HaveField("Kind", "APIToken")), "taken over in place")
	uid := strings.TrimSpace(kubectl(t, e, "get", "apitoken", "legacy-bot", "-n", ns, "-o", "jsonpath={.metadata.uid}"))
	g.Expect(getBackendToken(t, e, legacyID).ExternalID).To(Equal(uid), "claimed")

	out := kubectl(t, e, "get", "clusterstatusbackends", "-o", "wide")
	g.Expect(out).To(ContainSubstring("MANAGED"))
	g.Expect(out).To(ContainSubstring("OTHER CLUSTERS"))
	g.Eventually(func() string {
		return kubectl(t, e, "get", "clusterstatusbackend", "default", "-o", "jsonpath={.status.tokens.managed}")
	}).WithTimeout(90*time.Second).WithPolling(time.Second).ShouldNot(BeEmpty(), "status.tokens is filled from the inventory")

	kubectl(t, e, "patch", "apitoken", "legacy-bot", "-n", ns, "--type=merge", "-p", `{"spec":{"permission":"ReadOnly","rotation":{"gracePeriod":"8s"}}}`)
	g.Eventually(func() string { return getAPIToken(t, e, ns, "legacy-bot").Status.TokenID }).
		WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).ShouldNot(Equal(legacyID))
	code, body = callBackend(t, http.MethodGet, e.BackendURL+"/boards", legacyValue, "")
	g.Expect(code).To(Equal(http.StatusOK), "the legacy value works during the overlap: %s", body)
	waitReady(t, e, ns, "legacy-bot")
	s = readSecret(t, e, ns, "legacy-bot")
	g.Expect(getBackendToken(t, e, s.Data["tokenID"]).Permission).To(Equal("read_only"))
	code, body = callBackend(t, http.MethodPost, s.Data["url"]+"/boards", s.Data["token"], `{"name":"from-adopted"}`)
	g.Expect(code).To(Equal(http.StatusForbidden), body)
	code, body = callBackend(t, http.MethodGet, s.Data["url"]+"/boards", s.Data["token"], "")
	g.Expect(code).To(Equal(http.StatusOK), body)

	kubeSystem := strings.TrimSpace(kubectl(t, e, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}"))
	code, body = callBackend(t, http.MethodGet, e.BackendURL+"/api_tokens/"+s.Data["tokenID"], e.AdminToken, "")
	g.Expect(code).To(Equal(http.StatusOK), body)
	var issued struct {
		Data struct {
			Labels map[string]string `json:"labels"`
		} `json:"data"`
	}
	g.Expect(json.Unmarshal([]byte(body), &issued)).To(Succeed())
	g.Expect(issued.Data.Labels).To(HaveKeyWithValue("tokens.statusops.dev/cluster", kubeSystem))

	g.Eventually(func() string { return getBackendToken(t, e, legacyID).Status }).
		WithTimeout(60*time.Second).WithPolling(500*time.Millisecond).Should(Equal("inactive"), "retired after the grace period")
	code, body = callBackend(t, http.MethodGet, e.BackendURL+"/boards", legacyValue, "")
	g.Expect(code).To(Equal(http.StatusUnauthorized), body)
}
