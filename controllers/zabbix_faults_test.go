package controllers_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
)

// Faults between the operator and a real Zabbix, at controller level: a fault proxy sits in
// front of the shared Zabbix, and a second ClusterStatusBackend speaks to Zabbix through it.
// Each test ends by listing what Zabbix holds for the APIToken.

// zabbixFront starts a fault proxy in front of the test's Zabbix and a ClusterStatusBackend
// through it (Ready before it returns); APITokens name the backend to go through the proxy.
func (h *harness) zabbixFront() (*faultproxy.Proxy, string) {
	h.t.Helper()
	p, err := faultproxy.Start(h.zabbix.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Close)
	name := "front-" + h.ns
	h.createClusterBackend(name, p.URL, zabbixProvider(h.zabbix))
	h.backendReady(name, tokensv1alpha1.ReasonPingSucceeded)
	return p, name
}

func onBackend(name string) func(*tokensv1alpha1.APIToken) {
	return func(t *tokensv1alpha1.APIToken) { t.Spec.BackendRef.Name = name }
}

// loseReplyOnce makes the proxy forward the next request of method to Zabbix, let Zabbix carry
// it out, and then close the connection without the reply: a reply lost in transit. lost
// reports whether it happened since.
func loseReplyOnce(p *faultproxy.Proxy, method string) (lost func() bool) {
	faulted := func() int {
		n := 0
		for _, r := range p.Requests() {
			if r.Faulted {
				n++
			}
		}
		return n
	}
	before := faulted()
	p.Add(faultproxy.Fault{Kind: faultproxy.LoseReply, Times: 1, Match: faultproxy.MatchJSONRPC(method)})
	return func() bool { return faulted() > before }
}

// expectOneLiveToken checks the end state every fault must leave: the APIToken Active with
// exactly one token on Zabbix (enabled, no other token in any status), the one status and the
// Secret name, whose value works.
func (h *harness) expectOneLiveToken(name string) {
	h.t.Helper()
	g := NewWithT(h.t)
	tok := h.get(name)
	all := h.zabbixTokensOf(tok.UID)
	g.Expect(all).To(HaveLen(1), "one token on Zabbix, nothing that status and the Secret do not name")
	g.Expect(all[0].TokenID).To(Equal(tok.Status.TokenID))
	g.Expect(all[0].Status).To(Equal("0"))
	s := h.secret(name)
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyTokenID])).To(Equal(tok.Status.TokenID))
	g.Expect(h.zabbixUse(s.Data["token"], "host.get", hostGet)).To(BeEmpty(), "the Secret's value works")
}

// TestZabbixIssueSurvivesALostReply: Zabbix carries out token.create (or token.generate) but
// its reply never reaches the operator. The retry finds the token by its name (and generates
// its value again, which kills the value whose reply was lost): the APIToken ends Active with
// exactly one enabled token of its own, whose value is the Secret's.
func TestZabbixIssueSurvivesALostReply(t *testing.T) {
	h := newZabbixHarness(t)
	p, front := h.zabbixFront()
	for _, method := range []string{"token.create", "token.generate"} {
		t.Run(method, func(t *testing.T) {
			h := h.in(t)
			g := NewWithT(t)
			lost := loseReplyOnce(p, method)
			tok := h.create(h.newToken("lost-"+method[len("token."):], tokensv1alpha1.PermissionReadOnly, onBackend(front)))
			h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
			g.Expect(lost()).To(BeTrue(), "the %s reply was lost", method)
			h.expectOneLiveToken(tok.Name)
		})
	}
}

// TestZabbixDeactivationRetriedAfter5xx: the token.update that disables a deleted APIToken's
// token is answered 503 once; the finalizer retries, and the token ends disabled.
func TestZabbixDeactivationRetriedAfter5xx(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	p, front := h.zabbixFront()
	tok := h.waitFor(h.create(h.newToken("flaky-delete", tokensv1alpha1.PermissionReadOnly, onBackend(front))).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	value := h.secret(tok.Name).Data["token"]
	// The first token.update is answered 503 without reaching Zabbix; the later ones pass.
	var updates atomic.Int32
	isUpdate := faultproxy.MatchJSONRPC("token.update")
	p.Add(faultproxy.Fault{Kind: faultproxy.Status, Status: http.StatusServiceUnavailable, Match: func(r *http.Request) bool {
		return isUpdate(r) && updates.Add(1) == 1
	}})

	g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	g.Eventually(func() bool { return h.get(tok.Name) == nil }).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Expect(updates.Load()).To(BeNumerically(">=", 2), "the token.update answered 503 was retried")
	g.Expect(h.zabbixTokenByID(tok.Status.TokenID).Status).To(Equal("1"), "disabled in the end")
	g.Expect(h.zabbixUse(value, "host.get", hostGet)).To(Equal(notAuthorized))
	g.Expect(h.secret(tok.Name)).To(BeNil())
}

// TestZabbixManagerStoppedBetweenCreateAndGenerate: Zabbix has made the token (token.create
// went through) and the proxy holds the token.generate request when the manager stops. The
// restarted manager, without the fault, finds the token by its name and generates its value:
// one token on Zabbix, enabled, named by status and the Secret; no second token.
func TestZabbixManagerStoppedBetweenCreateAndGenerate(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	p, front := h.zabbixFront()
	held := make(chan struct{}, 1)
	isGenerate := faultproxy.MatchJSONRPC("token.generate")
	p.Add(faultproxy.Fault{Kind: faultproxy.Hang, Times: 1, Match: func(r *http.Request) bool {
		if !isGenerate(r) {
			return false
		}
		select {
		case held <- struct{}{}:
		default:
		}
		return true
	}})
	tok := h.create(h.newToken("interrupted", tokensv1alpha1.PermissionReadOnly, onBackend(front)))
	g.Eventually(held).WithTimeout(20 * time.Second).Should(Receive())
	made := h.zabbixTokensOf(h.get(tok.Name).UID)
	g.Expect(made).To(HaveLen(1), "token.create went through")
	g.Expect(made[0].Status).To(Equal("0"))

	h.stopMgr()
	g.Expect(h.secret(tok.Name)).To(BeNil(), "stopped before the Secret write")
	g.Expect(h.get(tok.Name).Status.TokenID).To(BeEmpty(), "and before status named a token")
	p.Clear()
	h.startManager()

	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	h.expectOneLiveToken(tok.Name)
	g.Expect(h.get(tok.Name).Status.TokenID).To(Equal(made[0].TokenID), "the token made before the stop, not a second one")
}

// TestZabbixSecretAndStatusWritesFailInOnePass: the Secret write after the issue fails, so the
// new token is disabled at once, and the status patch of that pass fails too. The next pass
// asks for the same name, and Zabbix holds it disabled: the operator moves on to the next
// serial instead of stalling. It ends Active with one enabled token, the one status and the
// Secret name; the first stays disabled.
func TestZabbixSecretAndStatusWritesFailInOnePass(t *testing.T) {
	h := newZabbixHarness(t)
	g := NewWithT(t)
	failed := h.failSecretThenStatus("twice")
	tok := h.create(h.newToken("twice", tokensv1alpha1.PermissionReadOnly))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(failed()).To(BeTrue(), "both injected failures happened")
	all := h.zabbixTokensOf(got.UID)
	g.Expect(all).To(HaveLen(2), "the first try's token and the one issued after it")
	for _, z := range all {
		if z.TokenID == got.Status.TokenID {
			g.Expect(z.Status).To(Equal("0"), "the current token is enabled")
		} else {
			g.Expect(z.Status).To(Equal("1"), "the first try's token stays disabled")
		}
	}
	s := h.secret(tok.Name)
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyTokenID])).To(Equal(got.Status.TokenID))
	g.Expect(h.zabbixUse(s.Data["token"], "host.get", hostGet)).To(BeEmpty(), "the Secret's value works")
}
