package policy

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestLedger walks the issue steps of the kill-point list above the issue code, and the
// failure points between them: after each, what the ledger says is what status will say, and
// what the next pass asks the backend for follows from it.
func TestLedger(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ref := tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
	other := tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "old"}
	current := func() *tokensv1alpha1.APIToken {
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", UID: "uid-1"}}
		tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
		tok.Status = tokensv1alpha1.APITokenStatus{TokenID: "tok_1", TokenHint: "...0001", Permission: tokensv1alpha1.PermissionReadOnly, SecretName: "t", IssueSerial: 1, Backend: &ref}
		return tok
	}
	created := backend.Token{ID: "tok_2", Permission: backend.PermissionReadOnly, Status: backend.StatusActive, CreatedAt: now}
	type want struct {
		serial   int64
		current  string
		pending  []string
		previous []string
		events   int
	}
	cases := []struct {
		name  string
		steps func(tok *tokensv1alpha1.APIToken, l *Ledger)
		want  want
	}{
		{"1-2 killed before or after the create: nothing changes, the retry asks for serial 2 again",
			func(*tokensv1alpha1.APIToken, *Ledger) {}, want{serial: 1, current: "tok_1"}},
		{"2 an unreadable 2xx reply advances the serial: the retry cannot replay it",
			func(_ *tokensv1alpha1.APIToken, l *Ledger) { l.AdvanceSerial(2) }, want{serial: 2, current: "tok_1"}},
		{"3 the Secret write failed: the new token is pending deactivation, the serial advanced",
			func(_ *tokensv1alpha1.APIToken, l *Ledger) { l.AdvanceSerial(2); l.AddPending("tok_2", ref) },
			want{serial: 2, current: "tok_1", pending: []string{"tok_2"}}},
		{"4 the new token is current; the replaced one is pending deactivation",
			func(tok *tokensv1alpha1.APIToken, l *Ledger) {
				prev := l.PredecessorOf(tok, now)
				l.Issue(tok, Issued{Token: created, Hint: "...0002", Backend: ref, Serial: 2})
				l.Supersede(prev, false)
			}, want{serial: 2, current: "tok_2", pending: []string{"tok_1"}}},
		{"4 with an overlap the replaced one drains instead",
			func(tok *tokensv1alpha1.APIToken, l *Ledger) {
				prev := l.PredecessorOf(tok, now)
				l.Issue(tok, Issued{Token: created, Hint: "...0002", Backend: ref, Serial: 2})
				l.Supersede(prev, true)
			}, want{serial: 2, current: "tok_2", previous: []string{"tok_1"}}},
		{"5 the sweep confirmed: nothing pending but the kept one",
			func(tok *tokensv1alpha1.APIToken, l *Ledger) {
				prev := l.PredecessorOf(tok, now)
				l.Issue(tok, Issued{Token: created, Hint: "...0002", Backend: ref, Serial: 2})
				l.Supersede(prev, false)
				l.RemovePendingOn(backendkey.OfRef(ref), "tok_2")
			}, want{serial: 2, current: "tok_2"}},
		{"5 a sweep of one backend leaves another backend's entries",
			func(_ *tokensv1alpha1.APIToken, l *Ledger) {
				l.AddPending("tok_0", other)
				l.AddPending("tok_9", ref)
				l.RemovePendingOn(backendkey.OfRef(ref), "tok_1")
			}, want{serial: 1, current: "tok_1", pending: []string{"tok_0"}}},
		{"a third draining token retires the oldest at once, with an event",
			func(tok *tokensv1alpha1.APIToken, l *Ledger) {
				l.Supersede(tokensv1alpha1.PreviousToken{TokenID: "tok_a", Backend: ref}, true)
				l.Supersede(tokensv1alpha1.PreviousToken{TokenID: "tok_b", Backend: ref}, true)
				l.Supersede(tokensv1alpha1.PreviousToken{TokenID: "tok_c", Backend: ref}, true)
			}, want{serial: 1, current: "tok_1", previous: []string{"tok_b", "tok_c"}, pending: []string{"tok_a"}, events: 1}},
		{"a backend that is gone drops its entries with a Warning each",
			func(_ *tokensv1alpha1.APIToken, l *Ledger) {
				l.AddPending("tok_0", other)
				l.DropPendingOn(backendkey.OfRef(other), "it is gone")
			}, want{serial: 1, current: "tok_1", events: 1}},
		{"everything goes: the predecessors and the current token are pending",
			func(tok *tokensv1alpha1.APIToken, l *Ledger) {
				l.Supersede(tokensv1alpha1.PreviousToken{TokenID: "tok_0", Backend: other}, true)
				l.RetireAll("deactivated")
				l.RetireCurrent(tok)
			}, want{serial: 1, current: "tok_1", pending: []string{"tok_0", "tok_1"}, events: 1}},
		{"recording a pending token twice is a no-op",
			func(_ *tokensv1alpha1.APIToken, l *Ledger) { l.AddPending("tok_0", ref); l.AddPending("tok_0", ref) },
			want{serial: 1, current: "tok_1", pending: []string{"tok_0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := current()
			l := NewLedger(tok)
			tc.steps(tok, l)
			pub := Report(tok, Inputs{Now: now, Token: tok.DeepCopy()}, Decision{}, Outcome{Ledger: l, Busy: true})
			st := tok.Status
			g.Expect(st.IssueSerial).To(Equal(tc.want.serial))
			g.Expect(st.TokenID).To(Equal(tc.want.current))
			var pending []string
			for _, p := range st.PendingDeactivation {
				pending = append(pending, p.TokenID)
			}
			g.Expect(pending).To(Equal(tc.want.pending))
			g.Expect(previousIDs(st)).To(Equal(append([]string{}, tc.want.previous...)))
			g.Expect(pub.Events).To(HaveLen(tc.want.events))
		})
	}
}
