package apitoken

import (
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file says what a failed step does to a pass: busy (the in-flight cap refused it), an
// outage (a re-check of the backend is asked for), or a failure the Outcome carries for
// Report to word. Messages about a tenant's own StatusBackend carry only a category of a
// connection error (registry.DescribeBackendError).

// stalled is a failure only a person can cure, with its Warning.
func stalled(reason, msg, event string) *policy.Failure {
	return &policy.Failure{Report: policy.ReportSpec{Kind: policy.ReportStalled, Reason: reason, Message: msg},
		Event: &policy.Event{Type: corev1.EventTypeWarning, Reason: event, Note: msg}}
}

// progressing is a failure that a retry may cure.
func progressing(reason, msg string) *policy.Failure {
	return &policy.Failure{Report: policy.ReportSpec{Kind: policy.ReportProgressing, Reason: reason, Message: msg}}
}

func terminal(err error) error { return reconcile.TerminalError(err) }

// backendFailed reports a failed backend call: transient errors are retried with backoff
// (or after Retry-After), others need a person.
func (r *Reconciler) backendFailed(in policy.Inputs, doing string, err error, out *policy.Outcome) {
	if registry.IsBackendBusy(err) {
		// The backend's in-flight cap is reached (a bulkhead, not an outage): Reconcile
		// requeues soon, changes no condition and reports no outage.
		out.Busy, out.Err = true, errBusyPass
		return
	}
	key := backendkey.For(in.Token)
	r.reportOutageOn(key, err)
	desc := registry.DescribeBackendError(key, err)
	if backend.IsTransient(err) || backend.IsUnauthorized(err) {
		out.Failure = progressing(tokensv1alpha1.ReasonBackendError,
			fmt.Sprintf("The backend failed while %s: %s. Retrying with backoff.", doing, desc))
		if ra := backend.RetryAfter(err); ra > 0 {
			out.RetryAt = in.Now.Add(ra)
			return
		}
		out.Err = fmt.Errorf("%s: %w", doing, err)
		return
	}
	msg := fmt.Sprintf("The backend refused %s: %s. Fix the request or the backend, then change the APIToken to retry.", doing, desc)
	out.Failure = stalled(tokensv1alpha1.ReasonBackendRejected, msg, tokensv1alpha1.EventFailed)
	out.Err = terminal(fmt.Errorf("%s: %w", doing, err))
}

// reportOutageOn asks for a re-check of the backend when a call failed as if it were down
// (no answer, 5xx, or a credential that stopped working); not for 429 or 409, which are the
// backend working as designed.
func (r *Reconciler) reportOutageOn(key backendkey.Key, err error) {
	var be *backend.Error
	if !errors.As(err, &be) {
		return
	}
	if (be.Kind == backend.KindTransient && be.StatusCode != http.StatusTooManyRequests) || be.Kind == backend.KindUnauthorized {
		r.Registry.ReportOutage(key)
	}
}

// secretWriteFailed reports a Secret the API server did not take. A refusal (invalid, too
// large, forbidden, rejected by a webhook) needs a person and carries the server's message;
// anything else is retried with backoff.
func (r *Reconciler) secretWriteFailed(in policy.Inputs, err error, out *policy.Outcome) {
	msg := fmt.Sprintf("Writing Secret %s failed: %v. The token issued for it was deactivated.", in.Token.SecretNameOrDefault(), err)
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) || apierrors.IsRequestEntityTooLargeError(err) {
		msg += " Fix spec.secretTemplate (or what refuses the Secret), then change the APIToken to retry."
		out.Failure = stalled(tokensv1alpha1.ReasonSecretWriteFailed, msg, tokensv1alpha1.EventSecretWriteFailed)
		out.Err = terminal(err)
		return
	}
	out.Failure = progressing(tokensv1alpha1.ReasonSecretWriteFailed, msg+" Retrying with backoff.")
	out.Err = fmt.Errorf("writing Secret: %w", err)
}

// adoptionRefused fails the APIToken with the reason; nothing was written. A new pass (the
// Secret appearing, a spec change) verifies again.
func adoptionRefused(reason, msg string, out *policy.Outcome) {
	out.Failure = &policy.Failure{Report: policy.ReportSpec{Kind: policy.ReportFailed, Reason: reason, Message: msg},
		Event: &policy.Event{Type: corev1.EventTypeWarning, Reason: tokensv1alpha1.EventFailed, Note: msg}, EventOnChange: true}
	out.Err = terminal(fmt.Errorf("adoption refused: %s", reason))
}
