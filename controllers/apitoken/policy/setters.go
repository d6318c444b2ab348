package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// The status setters, used only by Report (the one code that writes conditions and phase).
// Each outcome sets phase and the three conditions together, so that
// kstatus reads: Ready=True → Current; Reconciling=True → InProgress; Stalled=True → Failed.
// status.observedGeneration is not set here but once per pass, in patchStatus, when the
// pass succeeded.

// ReportKind names one of the setters below.
type ReportKind int

const (
	// ReportNone sets nothing.
	ReportNone ReportKind = iota
	// ReportIssued: an active token is in the Secret (with a Reason: but a part of the spec
	// that only a person can change is refused, RetainNotAllowed).
	ReportIssued
	// ReportDeactivated: spec.active is false and it has been carried out.
	ReportDeactivated
	// ReportExpired: spec.expiresAt has passed and the token has been deactivated.
	ReportExpired
	// ReportFailed: nothing will change until a person acts.
	ReportFailed
	// ReportStalled: as ReportFailed, but a token still usable in the Secret keeps phase Active.
	ReportStalled
	// ReportProgressing: the controller is working or retrying.
	ReportProgressing
	// ReportDeleting: the finalizer is waiting to deactivate the backend token.
	ReportDeleting
)

// ReportSpec is a status outcome, decided purely (Decide, or the action's Outcome) and applied
// once, by Report. For ReportIssued, a Reason says what of the spec is refused although the
// token works.
type ReportSpec struct {
	Kind            ReportKind
	Reason, Message string
}

// apply sets the status the report names.
func (rep ReportSpec) apply(tok *tokensv1alpha1.APIToken) {
	switch rep.Kind {
	case ReportIssued:
		markIssued(tok)
		if rep.Reason != "" {
			markRefused(tok, rep.Reason, rep.Message)
		}
	case ReportDeactivated:
		markDeactivated(tok)
	case ReportExpired:
		markExpired(tok)
	case ReportFailed:
		markFailed(tok, rep.Reason, rep.Message)
	case ReportStalled:
		markStalled(tok, rep.Reason, rep.Message)
	case ReportProgressing:
		markProgressing(tok, rep.Reason, rep.Message)
	case ReportDeleting:
		markDeleting(tok, rep.Message)
	}
}

func setCondition(tok *tokensv1alpha1.APIToken, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&tok.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: tok.Generation,
	})
}

// markIssued: an active token is in the Secret.
func markIssued(tok *tokensv1alpha1.APIToken) {
	tok.Status.Phase = tokensv1alpha1.PhaseActive
	msg := "An active " + string(tok.Status.Permission) + " token is in Secret " + tok.Status.SecretName + "."
	if req := RequestedExpiry(tok); LifetimeOf(tok) == 0 && !sameTime(req, tok.Status.ExpiresAt) {
		msg += " The backend set its expiry to " + orNever(tok.Status.ExpiresAt) + " instead of the requested " + orNever(req) + "; the operator still deactivates it at spec.expiresAt."
	}
	if rt := tok.Status.RenewalTime; rt != nil {
		msg += " Its successor is issued at " + FormatTime(rt) + " (spec.rotation)."
	}
	if n := len(tok.Status.PreviousTokens); n > 0 {
		msg += fmt.Sprintf(" %d older token(s) still work while they drain, until %s at the latest.", n, FormatTime(&tok.Status.PreviousTokens[n-1].RetireAt))
	}
	reason := tokensv1alpha1.ReasonIssued
	if tok.Status.AdoptedTokenID != "" && tok.Status.AdoptedTokenID == tok.Status.TokenID {
		reason = tokensv1alpha1.ReasonAdopted
		msg = "An existing " + string(tok.Status.Permission) + " token was adopted without changing its value and is in Secret " + tok.Status.SecretName + "."
	}
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionStalled)
}

// markRefused: the token works (phase Active), but a part of the spec that only a person can
// change is refused (RetainNotAllowed): not Ready, Stalled, so GitOps tools show it.
func markRefused(tok *tokensv1alpha1.APIToken, reason, message string) {
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(tok, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionReconciling)
}

// markDeactivated: spec.active is false and it has been carried out.
func markDeactivated(tok *tokensv1alpha1.APIToken) {
	tok.Status.Phase = tokensv1alpha1.PhaseInactive
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionTrue, tokensv1alpha1.ReasonDeactivated,
		"The token is deactivated because spec.active is false; set it to true to issue a fresh token.")
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionStalled)
}

// markExpired: spec.expiresAt has passed and the token has been deactivated.
func markExpired(tok *tokensv1alpha1.APIToken) {
	tok.Status.Phase = tokensv1alpha1.PhaseInactive
	msg := "The token expired at " + FormatTime(tok.Spec.ExpiresAt) + " and has been deactivated. Move spec.expiresAt later (or remove it) to issue a fresh token."
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, tokensv1alpha1.ReasonExpired, msg)
	setCondition(tok, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonExpired, msg)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionReconciling)
}

// markFailed: nothing will change until a person acts.
func markFailed(tok *tokensv1alpha1.APIToken, reason, message string) {
	tok.Status.Phase = tokensv1alpha1.PhaseFailed
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(tok, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionReconciling)
}

// markStalled: nothing will change until a person acts, but a token still usable in the
// Secret (a failed replacement) keeps phase Active.
func markStalled(tok *tokensv1alpha1.APIToken, reason, message string) {
	phase := tok.Status.Phase
	markFailed(tok, reason, message)
	if phase == tokensv1alpha1.PhaseActive && mayBeActiveAfterFailure(reason) {
		tok.Status.Phase = tokensv1alpha1.PhaseActive
	}
}

// mayBeActiveAfterFailure: failures that do not touch the current token.
func mayBeActiveAfterFailure(reason string) bool {
	return !retiredReasons[reason] && reason != tokensv1alpha1.ReasonSecretConflict
}

// markProgressing: the controller is working or retrying; the phase stays Active when a
// usable token is still in the Secret, otherwise Pending.
func markProgressing(tok *tokensv1alpha1.APIToken, reason, message string) {
	if tok.Status.Phase != tokensv1alpha1.PhaseActive {
		tok.Status.Phase = tokensv1alpha1.PhasePending
	}
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(tok, tokensv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1alpha1.ConditionStalled)
}

// markDeleting: the finalizer is waiting to deactivate the backend token.
func markDeleting(tok *tokensv1alpha1.APIToken, message string) {
	setCondition(tok, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, tokensv1alpha1.ReasonDeleting, message)
	setCondition(tok, tokensv1alpha1.ConditionReconciling, metav1.ConditionTrue, tokensv1alpha1.ReasonDeleting, message)
}
