package policy

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// Outcome is what the action of a pass did: the ledger of token changes, and how it ended.
type Outcome struct {
	Ledger *Ledger
	// Failure, when set, is reported instead of the decision's report: a backend or Secret
	// step failed or refused (made in failures.go, worded so a tenant may read it).
	Failure *Failure
	// Pending, when set, is reported instead of the decision's report: the pass is done but
	// older tokens are still to be deactivated.
	Pending *ReportSpec
	// Busy: the backend's in-flight cap refused the pass; only the ledger is reported.
	Busy bool
	// Unregistered: the backend was unregistered after the inputs were gathered; the pass
	// waits for its next registration.
	Unregistered bool
	// Issued: the pass put a new token in the Secret; Previous is the one it replaced.
	Issued   bool
	Previous string
	// Adopted: the pass adopted spec.adopt's token.
	Adopted bool
	// RetryAt is when the backend asked to be called again (Retry-After), or when a wait
	// for a backend gives up waiting; zero for none.
	RetryAt time.Time
	// Err is the pass's error: the queue backs off (a reconcile.TerminalError for an
	// outcome only a person can change).
	Err error
}

// Failure is a failed step of a pass: the status to report and the Warning to emit.
type Failure struct {
	Report ReportSpec
	// Event is emitted with it; nil for none. EventOnChange emits it only when the Ready
	// condition's reason or message changes (a refusal repeated on every pass).
	Event         *Event
	EventOnChange bool
}

// Published is what a pass tells the world besides status, from what Report decided.
type Published struct {
	// Events are emitted in order.
	Events []Event
	// RequeueAt is when the next pass is due; zero for none.
	RequeueAt time.Time
	// Findings are the least-privilege finding gauges (finding: holds); nil leaves them.
	Findings map[string]bool
	// UsedAfterGrace is how many predecessors were retired while still in use; TrackGrace
	// asks for that series to exist at 0 (a grace period is set).
	UsedAfterGrace int
	TrackGrace     bool
	// RolloutsBlocked are the opted-in workloads that cannot roll out the new token.
	RolloutsBlocked []string
}

// Report is the one code that writes an APIToken's status in a pass, on every path: it
// applies the ledger, then exactly one of the failure report, the pending-deactivation report,
// the wait for a backend being checked again, or the done report; and returns the events,
// gauges and deadline that go with it. A pass refused by the in-flight cap reports the ledger
// and nothing else.
func Report(tok *tokensv1alpha1.APIToken, in Inputs, d Decision, out Outcome) Published {
	var pub Published
	if out.Ledger != nil {
		out.Ledger.apply(&tok.Status)
		pub.Events = append(pub.Events, out.Ledger.events...)
		pub.UsedAfterGrace = out.Ledger.usedAfterGrace
	}
	if out.Busy || (out.Err != nil && out.Failure == nil && out.Pending == nil) {
		// Refused by the in-flight cap, or a step failed that has no report of its own (a
		// Kubernetes write, the crash seam): the ledger is all this pass says.
		if out.Issued && d.Event != nil {
			pub.Events = append(pub.Events, Event{d.Event.Type, d.Event.Reason, IssuedNote(d.Event, out.Previous, tok.Status)})
		}
		return pub
	}
	for _, w := range in.RolloutsPaused {
		pub.Events = append(pub.Events, Event{corev1.EventTypeWarning, tokensv1alpha1.EventRolloutBlocked,
			fmt.Sprintf("%s is paused and cannot roll out the new token; its predecessor is retired when the grace period ends", w)})
	}
	if out.Issued && d.Event != nil {
		pub.Events = append(pub.Events, Event{d.Event.Type, d.Event.Reason, IssuedNote(d.Event, out.Previous, tok.Status)})
	}
	switch {
	case out.Failure != nil:
		reportFailure(tok, *out.Failure, &pub)
	case out.Unregistered:
		ReportSpec{Kind: ReportProgressing, Reason: tokensv1alpha1.ReasonBackendNotReady,
			Message: fmt.Sprintf("%s is being checked again; the token is issued once it is Ready.", in.Backend.Key)}.apply(tok)
	case out.Pending != nil:
		out.Pending.apply(tok)
	default:
		reportDone(tok, in, d, out, &pub)
	}
	if !out.RetryAt.IsZero() && (pub.RequeueAt.IsZero() || out.RetryAt.Before(pub.RequeueAt)) {
		pub.RequeueAt = out.RetryAt
	}
	return pub
}

// reportFailure reports a failed step and its Warning.
func reportFailure(tok *tokensv1alpha1.APIToken, f Failure, pub *Published) {
	changed := true
	if c := ReadyCondition(tok); c != nil && c.Reason == f.Report.Reason && c.Message == f.Report.Message {
		changed = false
	}
	if f.Event != nil && (!f.EventOnChange || changed) {
		pub.Events = append(pub.Events, *f.Event)
	}
	f.Report.apply(tok)
}

// reportDone reports a pass whose action is done: the Secret's name, the renewal time, the
// last use, the least-privilege verdict, then the decision's report and event.
func reportDone(tok *tokensv1alpha1.APIToken, in Inputs, d Decision, out Outcome, pub *Published) {
	pub.RequeueAt = d.RequeueAt
	if out.Issued || out.Adopted {
		pub.RequeueAt = NextDeadline(tok)
	}
	if d.Action != ActionFail && d.Action != ActionWait {
		refreshPredecessorUse(&tok.Status, in.PredecessorUse)
		if LifetimeOf(tok) == 0 {
			tok.Status.RenewalTime = nil
		}
	}
	if d.Report.Kind == ReportIssued {
		if in.Inventory.Listed && in.Inventory.Current.ID == tok.Status.TokenID && in.Inventory.Current.LastUsedAt != nil {
			tok.Status.LastUsedAt = TimePtr(truncated(in.Inventory.Current.LastUsedAt))
		}
		pub.TrackGrace = GracePeriodOf(tok) > 0
		if at := review(tok, in, pub); !at.IsZero() && (pub.RequeueAt.IsZero() || at.Before(pub.RequeueAt)) {
			pub.RequeueAt = at
		}
	}
	if out.Adopted {
		pub.Events = append(pub.Events, Event{corev1.EventTypeNormal, tokensv1alpha1.EventAdopted,
			fmt.Sprintf("Adopted %s token %s (%s) into Secret %s without changing its value", tok.Status.Permission, tok.Status.TokenID, tok.Status.TokenHint, tok.Status.SecretName)})
	}
	if !out.Issued && d.Event != nil {
		pub.Events = append(pub.Events, *d.Event)
	}
	d.Report.apply(tok)
}

func truncated(t *time.Time) *time.Time {
	u := t.UTC().Truncate(time.Second)
	return &u
}

// DeletionOutcome is what the finalizer's pass did.
type DeletionOutcome struct {
	Ledger *Ledger
	// Gone: the finalizer is removed; nothing more is reported.
	Gone bool
	// Waiting says why the finalizer stays (a Deleting condition); "" when it does not.
	Waiting string
	// Events are the pass's own Events (revoked, skipped, retained, refused).
	Events []Event
	Err    error
}

// ReportDeletion is Report for the finalizer's pass: the ledger, the Deleting condition while
// it waits, and the events.
func ReportDeletion(tok *tokensv1alpha1.APIToken, out DeletionOutcome) Published {
	var pub Published
	if out.Ledger != nil {
		out.Ledger.apply(&tok.Status)
		pub.Events = append(pub.Events, out.Ledger.events...)
		pub.UsedAfterGrace = out.Ledger.usedAfterGrace
	}
	pub.Events = append(pub.Events, out.Events...)
	if out.Waiting != "" && !out.Gone {
		ReportSpec{Kind: ReportDeleting, Message: out.Waiting}.apply(tok)
	}
	return pub
}
