package apitoken

import (
	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

// publish tells the world what Report decided besides status: the Events, in order, and the
// per-APIToken gauges.
func (r *Reconciler) publish(tok *tokensv1alpha1.APIToken, pub policy.Published) {
	for _, e := range pub.Events {
		r.event(tok, e.Type, e.Reason, e.Note)
	}
	if pub.UsedAfterGrace > 0 || pub.TrackGrace {
		// Known from the start (0), so an alert on its increase works from the first one.
		metrics.PredecessorsUsedAfterGrace.WithLabelValues(tok.Namespace, tok.Name).Add(float64(pub.UsedAfterGrace))
	}
	for f, holds := range pub.Findings {
		// A series only while the finding holds (the alert is "== 1"): a 0 for every
		// APIToken and finding was two series per APIToken, the largest share of the
		// manager's live heap at N=5000 (docs/performance.md).
		if holds {
			metrics.LeastPrivilegeFindings.WithLabelValues(tok.Namespace, tok.Name, f).Set(1)
		} else {
			metrics.LeastPrivilegeFindings.DeleteLabelValues(tok.Namespace, tok.Name, f)
		}
	}
}

func (r *Reconciler) event(tok *tokensv1alpha1.APIToken, typ, reason, note string) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(tok, nil, typ, reason, reason, "%s", note)
}

// forgetReview drops an APIToken's gauges (it was deleted).
func forgetReview(tok *tokensv1alpha1.APIToken) {
	for _, f := range policy.Findings {
		metrics.LeastPrivilegeFindings.DeleteLabelValues(tok.Namespace, tok.Name, f)
	}
	metrics.PredecessorsUsedAfterGrace.DeleteLabelValues(tok.Namespace, tok.Name)
}
