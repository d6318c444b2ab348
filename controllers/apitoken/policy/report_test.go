package policy

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestReport: what a pass decided and what its action did give the conditions, the phase and
// the events, on every path: done, failed, pending, busy, waiting for a re-check, refused.
func TestReport(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ref := tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
	// fresh has no token yet; active holds tok_1, Ready.
	fresh := func() *tokensv1alpha1.APIToken {
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", UID: "uid-1"}}
		tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
		return tok
	}
	active := func() *tokensv1alpha1.APIToken {
		tok := fresh()
		tok.Status = tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseActive, TokenID: "tok_1", TokenHint: "...0001", Permission: tokensv1alpha1.PermissionReadOnly,
			SecretName: "t", IssueSerial: 1, Backend: &ref}
		markIssued(tok)
		return tok
	}
	issueNew := func(l *Ledger, tok *tokensv1alpha1.APIToken) {
		prev := l.PredecessorOf(tok, now)
		l.Issue(tok, Issued{Token: backend.Token{ID: "tok_2", Permission: backend.PermissionReadOnly, Status: backend.StatusActive, CreatedAt: now}, Hint: "...0002", Backend: ref, Serial: l.View().IssueSerial + 1})
		if prev.TokenID != "" {
			l.Supersede(prev, false)
		}
	}
	issueDecision := func(tok *tokensv1alpha1.APIToken) Decision {
		return Decision{Action: ActionIssue, Report: ReportSpec{Kind: ReportIssued}, Event: issueEvent(tok, Decision{Reason: tokensv1alpha1.EventReplaced, Why: "spec.permission changed"})}
	}
	cases := []struct {
		name    string
		tok     func() *tokensv1alpha1.APIToken
		decide  func(tok *tokensv1alpha1.APIToken) Decision
		act     func(tok *tokensv1alpha1.APIToken, out *Outcome)
		phase   tokensv1alpha1.APITokenPhase
		ready   metav1.ConditionStatus
		reason  string
		stalled bool
		events  []string
		// serial, when set, is the issue serial the report must leave.
		serial int64
	}{
		{name: "a first token is issued", tok: fresh,
			decide: func(tok *tokensv1alpha1.APIToken) Decision {
				return Decision{Action: ActionIssue, Report: ReportSpec{Kind: ReportIssued}, Event: issueEvent(tok, Decision{Reason: tokensv1alpha1.EventIssued})}
			},
			act:   func(tok *tokensv1alpha1.APIToken, out *Outcome) { issueNew(out.Ledger, tok); out.Issued = true },
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonIssued, events: []string{tokensv1alpha1.EventIssued}, serial: 1},
		{name: "a replacement is issued and the old token deactivated", tok: active, decide: issueDecision,
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				issueNew(out.Ledger, tok)
				out.Ledger.RemovePendingOn(out.Ledger.CurrentKey(tok), "tok_2")
				out.Issued, out.Previous = true, "tok_1"
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonIssued, events: []string{tokensv1alpha1.EventReplaced}, serial: 2},
		{name: "a replacement whose old token is still to deactivate is pending", tok: active, decide: issueDecision,
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				issueNew(out.Ledger, tok)
				out.Issued, out.Previous = true, "tok_1"
				out.Pending = &ReportSpec{Kind: ReportProgressing, Reason: tokensv1alpha1.ReasonDeactivationPending, Message: "tok_1 left"}
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonDeactivationPending, events: []string{tokensv1alpha1.EventReplaced}, serial: 2},
		{name: "a refused create stalls a fresh token and advances the serial", tok: fresh,
			decide: func(tok *tokensv1alpha1.APIToken) Decision {
				return Decision{Action: ActionIssue, Report: ReportSpec{Kind: ReportIssued}}
			},
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				out.Ledger.AdvanceSerial(1)
				out.Failure = &Failure{Report: ReportSpec{Kind: ReportStalled, Reason: tokensv1alpha1.ReasonBackendMismatch, Message: "m"}, Event: &Event{corev1.EventTypeWarning, tokensv1alpha1.EventBackendMismatch, "m"}}
				out.Err = errors.New("refused")
			},
			phase: tokensv1alpha1.PhaseFailed, ready: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonBackendMismatch, stalled: true, events: []string{tokensv1alpha1.EventBackendMismatch}, serial: 1},
		{name: "a transient failure keeps a working token Active", tok: active, decide: issueDecision,
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				out.Failure = &Failure{Report: ReportSpec{Kind: ReportProgressing, Reason: tokensv1alpha1.ReasonBackendError, Message: "m"}}
				out.Err = errors.New("503")
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonBackendError, serial: 1},
		{name: "a busy pass reports the ledger only", tok: active, decide: issueDecision,
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				out.Ledger.AdvanceSerial(5)
				out.Busy, out.Err = true, errors.New("busy")
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonIssued, serial: 5},
		{name: "a step without a report of its own reports the ledger only", tok: active, decide: issueDecision,
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				issueNew(out.Ledger, tok)
				out.Issued, out.Previous = true, "tok_1"
				out.Err = errors.New("deleting the old Secret failed")
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonIssued, events: []string{tokensv1alpha1.EventReplaced}, serial: 2},
		{name: "a backend unregistered since gathering is waited for", tok: fresh,
			decide: func(tok *tokensv1alpha1.APIToken) Decision {
				return Decision{Action: ActionIssue, Report: ReportSpec{Kind: ReportIssued}}
			},
			act:   func(tok *tokensv1alpha1.APIToken, out *Outcome) { out.Unregistered = true },
			phase: tokensv1alpha1.PhasePending, ready: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonBackendNotReady},
		{name: "a refused Retain keeps the token Active but Stalled", tok: active,
			decide: func(tok *tokensv1alpha1.APIToken) Decision {
				return Decision{Action: ActionNone, Report: ReportSpec{Kind: ReportIssued, Reason: tokensv1alpha1.ReasonRetainNotAllowed, Message: "m"}, Event: &Event{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, "m"}}
			},
			act:   func(*tokensv1alpha1.APIToken, *Outcome) {},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonRetainNotAllowed, stalled: true, events: []string{tokensv1alpha1.EventFailed}, serial: 1},
		{name: "a retirement still in use is a Warning", tok: func() *tokensv1alpha1.APIToken {
			tok := active()
			tok.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Backend: ref}}
			return tok
		},
			decide: func(tok *tokensv1alpha1.APIToken) Decision {
				return Decision{Action: ActionRetire, Report: ReportSpec{Kind: ReportIssued}, Retire: []Retirement{{TokenID: "tok_0", Why: "grace over", StillInUse: true}}}
			},
			act: func(tok *tokensv1alpha1.APIToken, out *Outcome) {
				out.Ledger.Retire([]Retirement{{TokenID: "tok_0", Why: "grace over", StillInUse: true}})
			},
			phase: tokensv1alpha1.PhaseActive, ready: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonIssued, events: []string{tokensv1alpha1.EventPredecessorStillInUse}, serial: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := tc.tok()
			in := Inputs{Now: now, Token: tok.DeepCopy(), Backend: BackendState{Key: backendkey.OfRef(ref), Found: true, Ready: true}}
			d := tc.decide(in.Token)
			out := Outcome{Ledger: NewLedger(in.Token)}
			tc.act(in.Token, &out)
			pub := Report(tok, in, d, out)
			g.Expect(tok.Status.Phase).To(Equal(tc.phase))
			c := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(tc.ready))
			g.Expect(c.Reason).To(Equal(tc.reason))
			g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1alpha1.ConditionStalled)).To(Equal(tc.stalled), "Stalled")
			var reasons []string
			for _, e := range pub.Events {
				reasons = append(reasons, e.Reason)
			}
			g.Expect(reasons).To(Equal(tc.events))
			g.Expect(tok.Status.IssueSerial).To(Equal(tc.serial), "the ledger's serial reaches status on every path")
		})
	}
}

// TestReportRefusalEventOnce: a refusal repeated on every pass emits its Warning once.
func TestReportRefusalEventOnce(t *testing.T) {
	g := NewWithT(t)
	tok := &tokensv1alpha1.APIToken{}
	f := &Failure{Report: ReportSpec{Kind: ReportFailed, Reason: tokensv1alpha1.ReasonAdoptionFailed, Message: "no value"},
		Event: &Event{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, "no value"}, EventOnChange: true}
	first := Report(tok, Inputs{}, Decision{Action: ActionAdopt}, Outcome{Failure: f})
	again := Report(tok, Inputs{}, Decision{Action: ActionAdopt}, Outcome{Failure: f})
	g.Expect(first.Events).To(HaveLen(1))
	g.Expect(again.Events).To(BeEmpty())
}

// TestReportDeletion: the finalizer's pass reports Deleting while it waits, and nothing once
// gone.
func TestReportDeletion(t *testing.T) {
	g := NewWithT(t)
	tok := &tokensv1alpha1.APIToken{}
	ReportDeletion(tok, DeletionOutcome{Waiting: "waiting for the backend"})
	c := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
	g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonDeleting))
	g.Expect(c.Message).To(Equal("waiting for the backend"))
	gone := &tokensv1alpha1.APIToken{}
	pub := ReportDeletion(gone, DeletionOutcome{Gone: true, Events: []Event{{corev1.EventTypeNormal, tokensv1alpha1.EventRevoked, "x"}}})
	g.Expect(gone.Status.Conditions).To(BeEmpty())
	g.Expect(pub.Events).To(HaveLen(1))
}
