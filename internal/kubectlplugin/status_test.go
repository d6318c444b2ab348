package kubectlplugin

import (
	"bytes"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// TestStatusShowsDrainingPredecessorsAndFinding: the parts of `status` that need operator
// features the test cluster's operator may lack (status.previousTokens, the LeastPrivilege
// condition, renewal time) render from the gathered summary, with ages relative to the clock.
func TestStatusShowsDrainingPredecessorsAndFinding(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	o := &options{streams: genericiooptions.IOStreams{Out: &out}, now: func() time.Time { return now }}
	o.printStatus(&tokenStatus{
		Namespace: "ops", Name: "incident-bot", Phase: "Active", Permission: "FullAccess",
		Ready:   &condition{Status: "True", Reason: "Issued"},
		TokenID: "tok_new", TokenHint: "...wxyz", SecretName: "incident-bot-token",
		ExpiresAt: "2026-12-31T12:00:00Z", RenewalTime: "2026-12-21T12:00:00Z",
		Predecessors: []predecessor{{
			TokenID: "tok_old", TokenHint: "...abcd", SupersededAt: "2026-12-01T11:55:00Z",
			RetireAt: "2026-12-01T12:05:00Z", LastUsedAt: "2026-12-01T11:59:00Z",
		}},
		Review: &condition{Status: "False", Reason: "UnusedWritePermission", Message: "No write in 720h: set spec.permission: ReadOnly."},
	})
	g.Expect(out.String()).To(MatchRegexp(`Expires:\s+2026-12-31T12:00:00Z \(in 30d\)`))
	g.Expect(out.String()).To(MatchRegexp(`Renewal:\s+2026-12-21T12:00:00Z \(in 20d\)`))
	g.Expect(out.String()).To(MatchRegexp(`Last used:\s+never`))
	g.Expect(out.String()).To(MatchRegexp(`Predecessors:\s+1 draining\n\s+tok_old \(\.\.\.abcd\) superseded 5m ago, retires 2026-12-01T12:05:00Z \(in 5m\), last used 2026-12-01T11:59:00Z \(60s ago\)`))
	g.Expect(out.String()).To(MatchRegexp(`Review:\s+False \(UnusedWritePermission\): No write in 720h: set spec.permission: ReadOnly\.`))
	g.Expect(out.String()).To(MatchRegexp(`Events:\s+<none>`))
}
