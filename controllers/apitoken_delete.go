package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// reconcileDelete deactivates the backend tokens (Revoke), removes the Secret and then the
// finalizer. It reports gone=true once the finalizer is removed.
func (r *APITokenReconciler) reconcileDelete(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer) {
		return false, ctrl.Result{}, nil
	}
	switch {
	case tok.Annotations[tokensv1alpha1.AnnotationSkipRevoke] == "true":
		// The way out when a backend is gone for good, not a way to keep a token: a backend that
		// answers gets this APIToken's tokens deactivated first, as without the annotation
		// (else skip-revoke would retain tokens the backend's retain policy refuses).
		if !r.revokedBeforeSkipping(ctx, tok) {
			r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventRevocationSkipped, fmt.Sprintf(
				"Deleted without deactivating (annotation %s): token %s on %s, and any token listed in status.pendingDeactivation, may still be active. Deactivate them in the backend by hand.",
				tokensv1alpha1.AnnotationSkipRevoke, tok.Status.TokenID, currentBackendKey(tok)))
		}
	case tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain:
		why, err := r.retainRefusedOnDelete(ctx, tok)
		if err != nil {
			return false, ctrl.Result{}, err
		}
		if why != "" {
			// Never a silent revoke of a token the person asked to keep: the deletion waits.
			if c := readyCondition(tok); c == nil || !strings.HasPrefix(c.Message, why) {
				r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventFailed, why)
			}
			markDeleting(tok, why)
			return false, ctrl.Result{}, nil
		}
		// Retain never blocks on the backend: the sweep of the other tokens is best effort.
		if res := r.sweepPending(ctx, tok, currentBackendKey(tok), tok.Status.TokenID); res.err != nil || len(res.waiting) > 0 {
			r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventRetained, fmt.Sprintf("Token %s was left active (deletionPolicy Retain); older tokens of this APIToken could not all be deactivated on %s.", tok.Status.TokenID, currentBackendKey(tok)))
		}
	default:
		if done, res, err := r.revokeForDeletion(ctx, tok); !done {
			return false, res, err
		}
	}
	if err := r.cleanUpSecrets(ctx, tok); err != nil {
		return false, ctrl.Result{}, err
	}
	patch := client.MergeFrom(tok.DeepCopy())
	controllerutil.RemoveFinalizer(tok, tokensv1alpha1.Finalizer)
	if err := r.Patch(ctx, tok, patch); err != nil && !apierrors.IsNotFound(err) {
		return false, ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	return true, ctrl.Result{}, nil
}

// revokedBeforeSkipping deactivates this APIToken's tokens when the backend holding the
// current one is registered (it answered its last check); it reports whether that finished.
// Any failure lets the skip-revoke annotation do what it says.
func (r *APITokenReconciler) revokedBeforeSkipping(ctx context.Context, tok *tokensv1alpha1.APIToken) bool {
	if _, _, registered := r.Registry.Get(currentBackendKey(tok)); !registered {
		return false
	}
	done, _, err := r.revokeForDeletion(ctx, tok)
	return done && err == nil
}

// retainRefusedOnDelete says why the backend holding the current token refuses Retain for it
// (retainRefused), or "". A backend object that is gone refuses nothing: there is nothing
// left to deactivate with.
func (r *APITokenReconciler) retainRefusedOnDelete(ctx context.Context, tok *tokensv1alpha1.APIToken) (string, error) {
	key := currentBackendKey(tok)
	o, err := r.readBackend(ctx, key)
	if err != nil || !o.found {
		return "", err
	}
	pol, err := r.namespacePolicyOf(ctx, o, tok.Namespace)
	if err != nil {
		return "", err
	}
	return retainRefused(tokenInputs{token: tok, backend: backendState{key: key, found: true, namespacePolicy: pol}}), nil
}

// revokeForDeletion deactivates every token of this APIToken on every backend that holds
// one. It reports done once nothing is left, or what is left cannot be reached any more
// (the backend is gone, or being deleted and not Ready).
func (r *APITokenReconciler) revokeForDeletion(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, ctrl.Result, error) {
	key := currentBackendKey(tok)
	wasActive := tok.Status.TokenID != "" && tok.Status.Phase == tokensv1alpha1.PhaseActive
	r.retireAllPredecessors(tok, "the APIToken is being deleted")
	if tok.Status.TokenID != "" {
		ref := backendRefFor(key, "")
		if tok.Status.Backend != nil {
			ref = *tok.Status.Backend
		}
		addPendingDeactivation(tok, tok.Status.TokenID, ref)
	}
	res := r.sweepPending(ctx, tok, key, "")
	if _, _, registered := r.Registry.Get(key); !registered && !slices.Contains(res.waiting, key) && !r.backendGone(ctx, key) {
		// A token of an interrupted create may exist that only this backend can revoke: wait
		// for it, as for a listed one.
		res.waiting = append(res.waiting, key)
	}
	// A backend being deleted that this process cannot use (its check fails): with no token of
	// this APIToken known there, there is nothing to wait for; a known one waits (the
	// skip-revoke annotation is the way out), since the backend may just not be checked yet.
	res.waiting = slices.DeleteFunc(res.waiting, func(k BackendKey) bool {
		o, err := r.readBackend(ctx, k)
		return err == nil && o.deleting && !hasPendingOn(tok, k)
	})
	hint := fmt.Sprintf(" The finalizer stays until then; to give up, annotate the APIToken %s=true (the backend token may then stay active).", tokensv1alpha1.AnnotationSkipRevoke)
	switch {
	case res.err != nil:
		if IsBackendBusy(res.err) {
			if WaitForSlot(ctx, client.ObjectKeyFromObject(tok), false) {
				return false, ctrl.Result{}, nil
			}
			return false, ctrl.Result{RequeueAfter: BackendBusyRetryAfter()}, nil
		}
		markDeleting(tok, fmt.Sprintf("Deactivating the tokens of this APIToken failed: %s.", DescribeBackendError(key, res.err))+hint)
		if ra := backend.RetryAfter(res.err); ra > 0 {
			return false, ctrl.Result{RequeueAfter: ra}, nil
		}
		return false, ctrl.Result{}, errors.New("deactivating for deletion: " + res.err.Error())
	case len(tok.Status.PendingDeactivation) > 0 || len(res.waiting) > 0:
		markDeleting(tok, fmt.Sprintf("Waiting for %v to become Ready to deactivate %s.", res.waiting, pendingIDs(tok))+hint)
		return false, ctrl.Result{}, nil
	}
	if wasActive {
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.EventRevoked, fmt.Sprintf("Deactivated token %s because the APIToken was deleted", tok.Status.TokenID))
	}
	return true, ctrl.Result{}, nil
}

// pendingIDs lists status.pendingDeactivation for a message.
func pendingIDs(tok *tokensv1alpha1.APIToken) []string {
	ids := make([]string, 0, len(tok.Status.PendingDeactivation))
	for _, p := range tok.Status.PendingDeactivation {
		ids = append(ids, p.TokenID)
	}
	return ids
}

// cleanUpSecrets removes (Revoke) or releases (Retain) the Secret, and removes an owned
// Secret left under a former spec.secretName.
func (r *APITokenReconciler) cleanUpSecrets(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	if old := tok.Status.SecretName; old != "" && old != tok.SecretNameOrDefault() {
		if err := r.deleteOwnedSecret(ctx, tok, old); err != nil {
			return err
		}
	}
	if tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain && tok.Annotations[tokensv1alpha1.AnnotationSkipRevoke] != "true" {
		return r.releaseOwnedSecret(ctx, tok)
	}
	return r.deleteOwnedSecret(ctx, tok, tok.SecretNameOrDefault())
}

// retireOldSecret deletes the Secret of a former spec.secretName once the new one holds the
// token: its dead token would otherwise stay, owned by this APIToken, blocking the name.
func (r *APITokenReconciler) retireOldSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, old string) error {
	if old == "" || old == tok.SecretNameOrDefault() {
		return nil
	}
	return r.deleteOwnedSecret(ctx, tok, old)
}

// annotationRetainedFrom marks a Secret left behind by a deleted APIToken with Retain.
const annotationRetainedFrom = "tokens.statusops.dev/retained-from"

// releaseOwnedSecret keeps the Secret of an APIToken deleted with deletionPolicy Retain: the
// backend token stays active, so its only copy of the value stays too. The owner reference
// and the managed-by label go (garbage collection and this operator leave it alone from
// now on), and an annotation says where it came from.
func (r *APITokenReconciler) releaseOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	var secret corev1.Secret
	// Live, not cached: the patch is computed from it, and the cache may have cut its
	// owner references or metadata.
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}, &secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&secret, tok) {
		return nil
	}
	patch := client.MergeFrom(secret.DeepCopy())
	refs := secret.OwnerReferences[:0]
	for _, ref := range secret.OwnerReferences {
		if ref.UID != tok.UID {
			refs = append(refs, ref)
		}
	}
	secret.OwnerReferences = refs
	delete(secret.Labels, tokensv1alpha1.LabelManagedBy)
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations[annotationRetainedFrom] = tok.Namespace + "/" + tok.Name + " (" + string(tok.UID) + ")"
	if err := r.Patch(ctx, &secret, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing Secret %s: %w", secret.Name, err)
	}
	return nil
}
func (r *APITokenReconciler) deleteOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, name string) error {
	var secret corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: name}, &secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&secret, tok) {
		return nil
	}
	if err := r.Delete(ctx, &secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s: %w", secret.Name, err)
	}
	return nil
}
