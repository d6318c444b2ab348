package policy

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file is the least-privilege review: from the backend's own usage information (the
// usage capability, read from the inventory the operator lists once per sync interval
// anyway, so it costs no request per token) it tells a team which FullAccess tokens never
// write, and which ReadOnly ones are refused writes. It never edits a spec: GitOps owns it.

// DefaultPermissionReviewWindow is --permission-review-window's default.
const DefaultPermissionReviewWindow = 720 * time.Hour

// Findings are the LeastPrivilege reasons that are findings (a gauge each while they hold).
var Findings = []string{tokensv1alpha1.ReasonUnusedWritePermission, tokensv1alpha1.ReasonWritesDenied}

// verdict is the outcome of the least-privilege review.
type verdict struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	// recheckAt is when the verdict can change with no new information (the window passes).
	recheckAt time.Time
}

// mergeUsage keeps the latest write and denial across every token this APIToken has had.
func mergeUsage(tok *tokensv1alpha1.APIToken, t backend.Token, now time.Time) {
	u := tok.Status.Usage
	if u == nil {
		u = &tokensv1alpha1.UsageStatus{}
		tok.Status.Usage = u
	}
	if u.ObservedSince == nil {
		m := metav1.NewTime(now.UTC().Truncate(time.Second))
		u.ObservedSince = &m
	}
	u.LastWriteAt = laterOf(u.LastWriteAt, t.LastWriteAt)
	u.LastDeniedAt = laterOf(u.LastDeniedAt, t.LastDeniedAt)
}

func laterOf(a *metav1.Time, b *time.Time) *metav1.Time {
	if b == nil || (a != nil && !b.After(a.Time)) {
		return a
	}
	m := metav1.NewTime(b.UTC().Truncate(time.Second))
	return &m
}

// reviewLeastPrivilege judges the usage against the permission. No verdict too early: an
// unused write permission is reported only once a whole window has been observed.
func reviewLeastPrivilege(tok *tokensv1alpha1.APIToken, usage bool, now time.Time, window time.Duration) verdict {
	u := tok.Status.Usage
	if !usage || u == nil || u.ObservedSince == nil {
		return verdict{status: metav1.ConditionUnknown, reason: tokensv1alpha1.ReasonInsufficientHistory,
			message: "The backend does not report usage (capability \"usage\"), so the permission cannot be reviewed."}
	}
	within := func(t *metav1.Time) bool { return t != nil && now.Sub(t.Time) < window }
	switch tok.Spec.Permission {
	case tokensv1alpha1.PermissionFullAccess:
		if within(u.LastWriteAt) {
			return verdict{status: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonLeastPrivilege, recheckAt: u.LastWriteAt.Add(window),
				message: fmt.Sprintf("The FullAccess token wrote at %s, within the review window of %s.", FormatTime(u.LastWriteAt), window)}
		}
		if now.Sub(u.ObservedSince.Time) < window {
			return verdict{status: metav1.ConditionUnknown, reason: tokensv1alpha1.ReasonInsufficientHistory, recheckAt: u.ObservedSince.Add(window),
				message: fmt.Sprintf("No write seen yet; usage has been observed since %s, and a verdict needs a whole review window of %s.", FormatTime(u.ObservedSince), window)}
		}
		return verdict{status: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonUnusedWritePermission,
			message: fmt.Sprintf("This FullAccess token made no write in the last %s (last write: %s). Set spec.permission: ReadOnly; the token is replaced without downtime when spec.rotation.gracePeriod is set.", window, orNever(u.LastWriteAt))}
	default:
		if within(u.LastDeniedAt) {
			return verdict{status: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonWritesDenied, recheckAt: u.LastDeniedAt.Add(window),
				message: fmt.Sprintf("This ReadOnly token was refused a write at %s: the workload tries to write. Fix the workload, or set spec.permission: FullAccess if it must write.", FormatTime(u.LastDeniedAt))}
		}
		return verdict{status: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonLeastPrivilege,
			message: "The ReadOnly token was refused no write within the review window."}
	}
}

// review records the least-privilege verdict on the APIToken (after the ledger, so it judges
// the current token): the condition, the findings that hold, a Warning on each change to
// False. It returns when to look again (zero: no verdict was made).
func review(tok *tokensv1alpha1.APIToken, in Inputs, pub *Published) time.Time {
	if in.Review.Window <= 0 || tok.Status.TokenID == "" || !tok.IsActiveRequested() || !in.Review.Registered {
		// Not registered: just after a restart, or down: what the backend offers is not
		// known, so the last verdict stands.
		return time.Time{}
	}
	if in.Review.Usage {
		// Observed from the first pass on, so the verdict does not wait for an inventory.
		var t backend.Token
		if in.Inventory.Listed && in.Inventory.Current.ID == tok.Status.TokenID {
			t = in.Inventory.Current
		}
		mergeUsage(tok, t, in.Now)
	}
	rv := reviewLeastPrivilege(tok, in.Review.Usage, in.Now, in.Review.Window)
	var prev *metav1.Condition
	if c := conditionOf(tok, tokensv1alpha1.ConditionLeastPrivilege); c != nil {
		cp := *c // setCondition changes the element in place
		prev = &cp
	}
	setCondition(tok, tokensv1alpha1.ConditionLeastPrivilege, rv.status, rv.reason, rv.message)
	pub.Findings = map[string]bool{}
	for _, f := range Findings {
		pub.Findings[f] = rv.status == metav1.ConditionFalse && rv.reason == f
	}
	if rv.status == metav1.ConditionFalse && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != rv.reason) {
		pub.Events = append(pub.Events, Event{Type: "Warning", Reason: tokensv1alpha1.EventLeastPrivilegeFinding, Note: rv.message})
	}
	return rv.recheckAt
}
