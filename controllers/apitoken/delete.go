package apitoken

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// reconcileDelete deactivates the backend tokens (Revoke), removes the Secret and then the
// finalizer; gone once the finalizer is removed. As a normal pass, it acts and then reports
// (policy.ReportDeletion writes the Deleting condition while it waits).
func (r *Reconciler) reconcileDelete(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer) {
		return false, ctrl.Result{}, nil
	}
	before := tok.DeepCopy()
	out, res := r.deleteTokens(ctx, before, policy.NewLedger(before))
	if out.Gone {
		out.Err = r.releaseFinalizer(ctx, tok)
		out.Gone = out.Err == nil
	}
	r.publish(tok, policy.ReportDeletion(tok, out))
	if out.Gone {
		forgetReview(tok)
		r.expectations.forget(tok.UID)
	}
	return out.Gone, res, out.Err
}

// deleteTokens carries out the deletion policy: skip-revoke, Retain where the backend allows
// it, or Revoke; then removes or releases the Secrets. Gone means the finalizer may go.
func (r *Reconciler) deleteTokens(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger) (policy.DeletionOutcome, ctrl.Result) {
	out := policy.DeletionOutcome{Ledger: l}
	switch {
	case tok.Annotations[tokensv1alpha1.AnnotationSkipRevoke] == "true":
		// The way out when a backend is gone for good, not a way to keep a token: a backend that
		// answers gets this APIToken's tokens deactivated first, as without the annotation
		// (else skip-revoke would retain tokens the backend's retain policy refuses).
		if !r.revokedBeforeSkipping(ctx, tok, l) {
			out.Events = append(out.Events, policy.Event{Type: corev1.EventTypeWarning, Reason: tokensv1alpha1.EventRevocationSkipped, Note: fmt.Sprintf(
				"Deleted without deactivating (annotation %s): token %s on %s, and any token listed in status.pendingDeactivation, may still be active. Deactivate them in the backend by hand.",
				tokensv1alpha1.AnnotationSkipRevoke, tok.Status.TokenID, backendkey.Current(tok))})
		}
	case tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain:
		if !r.retain(ctx, tok, l, &out) {
			return out, ctrl.Result{}
		}
	default:
		if res, done := r.revokeForDeletion(ctx, tok, l, &out); !done {
			return out, res
		}
	}
	if out.Err = r.cleanUpSecrets(ctx, tok); out.Err == nil {
		out.Gone = true
	}
	return out, ctrl.Result{}
}

// retain carries out deletionPolicy Retain when the backend allows it; false when it does not
// (the deletion waits: never a silent revoke of a token the person asked to keep).
func (r *Reconciler) retain(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger, out *policy.DeletionOutcome) bool {
	why, err := r.retainRefusedOnDelete(ctx, tok)
	switch {
	case err != nil:
		out.Err = err
		return false
	case why != "":
		if c := policy.ReadyCondition(tok); c == nil || !strings.HasPrefix(c.Message, why) {
			out.Events = append(out.Events, policy.Event{Type: corev1.EventTypeWarning, Reason: tokensv1alpha1.EventFailed, Note: why})
		}
		out.Waiting = why
		return false
	}
	// Retain never blocks on the backend: the sweep of the other tokens is best effort.
	if res := r.sweepPending(ctx, tok, l, backendkey.Current(tok), tok.Status.TokenID); res.err != nil || len(res.waiting) > 0 {
		out.Events = append(out.Events, policy.Event{Type: corev1.EventTypeWarning, Reason: tokensv1alpha1.EventRetained,
			Note: fmt.Sprintf("Token %s was left active (deletionPolicy Retain); older tokens of this APIToken could not all be deactivated on %s.", tok.Status.TokenID, backendkey.Current(tok))})
	}
	return true
}

// releaseFinalizer lets the APIToken go.
func (r *Reconciler) releaseFinalizer(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	patch := client.MergeFrom(tok.DeepCopy())
	controllerutil.RemoveFinalizer(tok, tokensv1alpha1.Finalizer)
	if err := r.Patch(ctx, tok, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// revokedBeforeSkipping deactivates this APIToken's tokens when the backend holding the
// current one is registered (it answered its last check); it reports whether that finished.
// Any failure lets the skip-revoke annotation do what it says.
func (r *Reconciler) revokedBeforeSkipping(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger) bool {
	if _, _, registered := r.Registry.Get(backendkey.Current(tok)); !registered {
		return false
	}
	var out policy.DeletionOutcome
	_, done := r.revokeForDeletion(ctx, tok, l, &out)
	return done && out.Err == nil
}

// retainRefusedOnDelete says why the backend holding the current token refuses Retain for it
// (policy.RetainRefused), or "". A backend object that is gone refuses nothing: there is
// nothing left to deactivate with.
func (r *Reconciler) retainRefusedOnDelete(ctx context.Context, tok *tokensv1alpha1.APIToken) (string, error) {
	key := backendkey.Current(tok)
	o, err := r.readBackend(ctx, key)
	if err != nil || !o.found {
		return "", err
	}
	pol, err := r.namespacePolicyOf(ctx, o, tok.Namespace)
	if err != nil {
		return "", err
	}
	return policy.RetainRefused(policy.Inputs{Token: tok, Backend: policy.BackendState{Key: key, Found: true, NamespacePolicy: pol}}), nil
}

// revokeForDeletion deactivates every token of this APIToken on every backend that holds
// one. It reports done once nothing is left, or what is left cannot be reached any more
// (the backend is gone, or being deleted and not Ready); out.Waiting says what it waits for.
func (r *Reconciler) revokeForDeletion(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger, out *policy.DeletionOutcome) (ctrl.Result, bool) {
	key := backendkey.Current(tok)
	wasActive := tok.Status.TokenID != "" && tok.Status.Phase == tokensv1alpha1.PhaseActive
	l.RetireAll("the APIToken is being deleted")
	l.RetireCurrent(tok)
	res := r.sweepPending(ctx, tok, l, key, "")
	res.waiting = r.stillToWaitFor(ctx, l, key, res.waiting)
	hint := fmt.Sprintf(" The finalizer stays until then; to give up, annotate the APIToken %s=true (the backend token may then stay active).", tokensv1alpha1.AnnotationSkipRevoke)
	switch {
	case res.err != nil:
		if registry.IsBackendBusy(res.err) {
			if registry.WaitForSlot(ctx, client.ObjectKeyFromObject(tok), false) {
				return ctrl.Result{}, false
			}
			return ctrl.Result{RequeueAfter: registry.BackendBusyRetryAfter()}, false
		}
		out.Waiting = fmt.Sprintf("Deactivating the tokens of this APIToken failed: %s.", registry.DescribeBackendError(key, res.err)) + hint
		if ra := backend.RetryAfter(res.err); ra > 0 {
			return ctrl.Result{RequeueAfter: ra}, false
		}
		out.Err = errors.New("deactivating for deletion: " + res.err.Error())
		return ctrl.Result{}, false
	case len(l.View().PendingDeactivation) > 0 || len(res.waiting) > 0:
		out.Waiting = fmt.Sprintf("Waiting for %v to become Ready to deactivate %s.", res.waiting, l.PendingIDs()) + hint
		return ctrl.Result{}, false
	}
	if wasActive {
		out.Events = append(out.Events, policy.Event{Type: corev1.EventTypeNormal, Reason: tokensv1alpha1.EventRevoked,
			Note: fmt.Sprintf("Deactivated token %s because the APIToken was deleted", tok.Status.TokenID)})
	}
	return ctrl.Result{}, true
}

// stillToWaitFor adjusts the backends a deletion waits for. An unregistered current backend
// may hold a token of an interrupted create that only it can revoke: it is waited for, as for
// a listed one. A backend being deleted that this process cannot use (its check fails), with
// no token of this APIToken known there, has nothing to wait for; a known one waits (the
// skip-revoke annotation is the way out), since the backend may just not be checked yet.
func (r *Reconciler) stillToWaitFor(ctx context.Context, l *policy.Ledger, key backendkey.Key, waiting []backendkey.Key) []backendkey.Key {
	if _, _, registered := r.Registry.Get(key); !registered && !slices.Contains(waiting, key) && !r.backendGone(ctx, key) {
		waiting = append(waiting, key)
	}
	return slices.DeleteFunc(waiting, func(k backendkey.Key) bool {
		o, err := r.readBackend(ctx, k)
		return err == nil && o.deleting && !l.HasPendingOn(k)
	})
}
