package controllers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file is the least-privilege review: from the backend's own usage information (the
// `usage` protocol extension, read from the inventory the operator lists once per sync
// interval anyway, so it costs no request per token) it tells a team which FullAccess
// tokens never write, and which ReadOnly ones are refused writes. It never edits a spec:
// GitOps owns it.

// DefaultPermissionReviewWindow is --permission-review-window's default.
const DefaultPermissionReviewWindow = 720 * time.Hour

// leastPrivilegeFindings is one gauge per finding, 1 while it holds, absent otherwise.
var leastPrivilegeFindings = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "apitoken_least_privilege_finding",
	Help: "1 while the least-privilege review finds UnusedWritePermission or WritesDenied for an APIToken.",
}, []string{"namespace", "apitoken", "finding"})

func init() {
	registerMetric(leastPrivilegeFindings)
}

// review is the outcome of the least-privilege review.
type review struct {
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
func reviewLeastPrivilege(tok *tokensv1alpha1.APIToken, usage bool, now time.Time, window time.Duration) review {
	u := tok.Status.Usage
	if !usage || u == nil || u.ObservedSince == nil {
		return review{status: metav1.ConditionUnknown, reason: tokensv1alpha1.ReasonInsufficientHistory,
			message: "The backend does not report usage (protocol extension \"usage\"), so the permission cannot be reviewed."}
	}
	within := func(t *metav1.Time) bool { return t != nil && now.Sub(t.Time) < window }
	switch tok.Spec.Permission {
	case tokensv1alpha1.PermissionFullAccess:
		if within(u.LastWriteAt) {
			return review{status: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonLeastPrivilege, recheckAt: u.LastWriteAt.Add(window),
				message: fmt.Sprintf("The FullAccess token wrote at %s, within the review window of %s.", formatTime(u.LastWriteAt), window)}
		}
		if now.Sub(u.ObservedSince.Time) < window {
			return review{status: metav1.ConditionUnknown, reason: tokensv1alpha1.ReasonInsufficientHistory, recheckAt: u.ObservedSince.Add(window),
				message: fmt.Sprintf("No write seen yet; usage has been observed since %s, and a verdict needs a whole review window of %s.", formatTime(u.ObservedSince), window)}
		}
		return review{status: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonUnusedWritePermission,
			message: fmt.Sprintf("This FullAccess token made no write in the last %s (last write: %s). Set spec.permission: ReadOnly; the token is replaced without downtime when spec.rotation.gracePeriod is set.", window, orNever(u.LastWriteAt))}
	default:
		if within(u.LastDeniedAt) {
			return review{status: metav1.ConditionFalse, reason: tokensv1alpha1.ReasonWritesDenied, recheckAt: u.LastDeniedAt.Add(window),
				message: fmt.Sprintf("This ReadOnly token was refused a write at %s: the workload tries to write. Fix the workload, or set spec.permission: FullAccess if it must write.", formatTime(u.LastDeniedAt))}
		}
		return review{status: metav1.ConditionTrue, reason: tokensv1alpha1.ReasonLeastPrivilege,
			message: "The ReadOnly token was refused no write within the review window."}
	}
}

// applyReview records the review on the APIToken: the condition, a Warning on each change
// to False, and the finding's gauge. It returns when to look again.
func (r *APITokenReconciler) applyReview(tok *tokensv1alpha1.APIToken, in tokenInputs) time.Time {
	window := r.reviewWindow()
	if window <= 0 || tok.Status.TokenID == "" || !tok.IsActiveRequested() {
		return time.Time{}
	}
	if _, _, registered := r.Registry.Get(currentBackendKey(tok)); !registered {
		// Not checked yet (just after a restart) or down: what the backend offers is not
		// known, so the last verdict stands.
		return time.Time{}
	}
	usage := r.Registry.Features(currentBackendKey(tok)).Has(backend.CapabilityUsage)
	if usage {
		// Observed from the first pass on, so the verdict does not wait for an inventory.
		t, _ := inventoryToken(in.inventory, tok.Status.TokenID)
		mergeUsage(tok, t, in.now)
	}
	rv := reviewLeastPrivilege(tok, usage, in.now, window)
	var prev *metav1.Condition
	if c := readyConditionOf(tok, tokensv1alpha1.ConditionLeastPrivilege); c != nil {
		cp := *c // setCondition changes the element in place
		prev = &cp
	}
	setCondition(tok, tokensv1alpha1.ConditionLeastPrivilege, rv.status, rv.reason, rv.message)
	for _, f := range []string{tokensv1alpha1.ReasonUnusedWritePermission, tokensv1alpha1.ReasonWritesDenied} {
		// A series only while the finding holds (the alert is "== 1"): a 0 for every
		// APIToken and finding was two series per APIToken, the largest share of the
		// manager's live heap at N=5000 (docs/performance.md).
		if rv.status == metav1.ConditionFalse && rv.reason == f {
			leastPrivilegeFindings.WithLabelValues(tok.Namespace, tok.Name, f).Set(1)
		} else {
			leastPrivilegeFindings.DeleteLabelValues(tok.Namespace, tok.Name, f)
		}
	}
	if rv.status == metav1.ConditionFalse && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != rv.reason) {
		r.event(tok, "Warning", tokensv1alpha1.EventLeastPrivilegeFinding, rv.message)
	}
	return rv.recheckAt
}

func (r *APITokenReconciler) reviewWindow() time.Duration {
	if r.PermissionReviewWindow != nil {
		return *r.PermissionReviewWindow
	}
	return DefaultPermissionReviewWindow
}

// inventoryToken is the backend's object of a token from the last inventory.
func inventoryToken(snap *inventorySnapshot, id string) (backend.Token, bool) {
	if snap == nil {
		return backend.Token{}, false
	}
	t, ok := snap.active[id]
	if !ok {
		return backend.Token{}, false
	}
	return t.token(id), true
}

func readyConditionOf(tok *tokensv1alpha1.APIToken, typ string) *metav1.Condition {
	for i := range tok.Status.Conditions {
		if tok.Status.Conditions[i].Type == typ {
			return &tok.Status.Conditions[i]
		}
	}
	return nil
}

// forgetReview drops an APIToken's finding gauges (it was deleted).
func forgetReview(tok *tokensv1alpha1.APIToken) {
	for _, f := range []string{tokensv1alpha1.ReasonUnusedWritePermission, tokensv1alpha1.ReasonWritesDenied} {
		leastPrivilegeFindings.DeleteLabelValues(tok.Namespace, tok.Name, f)
	}
	predecessorsUsedAfterGrace.DeleteLabelValues(tok.Namespace, tok.Name)
}
