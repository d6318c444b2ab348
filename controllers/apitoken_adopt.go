package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file adopts a token that existed before the operator (spec.adopt), without changing
// its value. Verification makes no backend write: the supplied value must authenticate as
// the named token (GET /api_tokens/self with that value), active, owned by nobody or by this
// APIToken already, and not the backend's admin credential. Then one write claims it (a
// compare-and-set of external_id, so two APITokens racing for one token end with one owner),
// and its value is written to spec.secretName. Killed anywhere, the next pass verifies again:
// the claim is repeatable for the same owner, and nothing else was written.

// adoptionPending: spec.adopt names a token and this APIToken holds none yet.
func adoptionPending(tok *tokensv1alpha1.APIToken) bool {
	return tok.Spec.Adopt != nil && tok.Status.TokenID == "" && tok.Status.AdoptedTokenID == ""
}

// adoptSecretKey is the key of spec.adopt.secretRef, with its default.
func adoptSecretKey(tok *tokensv1alpha1.APIToken) string {
	if k := tok.Spec.Adopt.SecretRef.Key; k != "" {
		return k
	}
	return tokensv1alpha1.SecretKeyToken
}

// gatherAdoption reads the value to adopt from the live Secret (the cache holds only managed
// Secrets). When spec.secretName is that same Secret, it is taken over in place: the one
// exception to SecretConflict.
func (r *APITokenReconciler) gatherAdoption(ctx context.Context, tok *tokensv1alpha1.APIToken, in *tokenInputs) error {
	ref := tok.Spec.Adopt.SecretRef
	var src corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: ref.Name}, &src)
	switch {
	case apierrors.IsNotFound(err):
		in.adoptProblem = fmt.Sprintf("Secret %q (spec.adopt.secretRef) does not exist. Create it with the token's value under the key %q; adoption proceeds when it appears.", ref.Name, adoptSecretKey(tok))
		return nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", ref.Name, err)
	}
	value := src.Data[adoptSecretKey(tok)]
	if len(value) == 0 {
		in.adoptProblem = fmt.Sprintf("Secret %q has no key %q (spec.adopt.secretRef.key). Put the token's value there.", ref.Name, adoptSecretKey(tok))
		return nil
	}
	// Taken as it is: the Secret's value stays byte-identical (a value with a trailing
	// newline does not authenticate, and verification says so).
	in.adoptValue = backend.SecretValue(value)
	if ref.Name == tok.SecretNameOrDefault() && in.secretConflict && !metav1.IsControlledBy(&src, tok) {
		if owner := metav1.GetControllerOf(&src); owner == nil {
			in.secretConflict, in.secret = false, &src
		}
	}
	return nil
}

// adoptToken verifies, claims and stores the token spec.adopt names.
func (r *APITokenReconciler) adoptToken(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, cl backend.Driver) (ctrl.Result, error) {
	ad := tok.Spec.Adopt
	if in.adoptProblem != "" {
		return r.adoptionRefused(tok, tokensv1alpha1.ReasonAdoptionFailed, in.adoptProblem)
	}
	claimer, canClaim := cl.(backend.Claimer)
	identifier, canIdentify := cl.(backend.Identifier)
	features, err := cl.Capabilities(ctx)
	if err != nil {
		return r.backendFailed(ctx, tok, "reading the backend's capabilities", err)
	}
	if !canClaim || !canIdentify || !features.Has(backend.CapabilityClaim) {
		return r.adoptionRefused(tok, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("%s does not offer %q, so an existing token cannot be claimed. Upgrade the backend, or remove spec.adopt to issue a new token.", in.backend.key, backend.CapabilityClaim))
	}
	self, reason, why, err := r.verifyAdoption(ctx, tok, in, identifier)
	if err != nil {
		return r.backendFailed(ctx, tok, "verifying the token to adopt", err)
	}
	if reason != "" {
		return r.adoptionRefused(tok, reason, why)
	}
	claimed, err := claimer.Claim(ctx, ad.TokenID, backend.Owner{UID: string(tok.UID), Cluster: r.ClusterIdentity})
	switch {
	case backend.IsClaimed(err):
		return r.adoptionRefused(tok, tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s was claimed by another owner first (its external_id is set to another value). Each token can be adopted by one APIToken.", ad.TokenID))
	case err != nil:
		return r.backendFailed(ctx, tok, "claiming the token to adopt", err)
	case claimed.Owner.UID != string(tok.UID) || claimed.ID != ad.TokenID:
		return r.adoptionRefused(tok, tokensv1alpha1.ReasonAdoptionFailed, "The backend's answer to the claim does not name this token and this APIToken.")
	}
	value := []byte(in.adoptValue.Reveal())
	t := secretToken{id: self.ID, permission: apiPermission(self.Permission), expiresAt: timePtr(self.ExpiresAt)}
	if err := r.writeSecret(ctx, tok, in, t, value); err != nil {
		return r.secretWriteFailed(tok, err)
	}
	recordAdopted(tok, self, string(value), backendRefFor(in.backend.key, in.backend.uid))
	r.expectations.expect(tok.UID, tok.Status.IssueSerial, self.ID, hashToken(value), in.now)
	r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.EventAdopted, fmt.Sprintf("Adopted %s token %s (%s) into Secret %s without changing its value", tok.Status.Permission, self.ID, tok.Status.TokenHint, tok.Status.SecretName))
	r.applyReview(tok, in)
	markIssued(tok)
	return requeueAt(in.now, nextDeadline(tok)), nil
}

// verifyAdoption asks the backend, with the supplied value, which token it is. It returns a
// refusal reason and message, or the token's own object; the value is never quoted.
func (r *APITokenReconciler) verifyAdoption(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, identifier backend.Identifier) (*backend.Token, string, string, error) {
	ad := tok.Spec.Adopt
	where := fmt.Sprintf("Secret %q key %q", ad.SecretRef.Name, adoptSecretKey(tok))
	self, err := identifier.Identify(ctx, in.adoptValue)
	switch {
	case backend.IsUnauthorized(err):
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("The value in %s does not authenticate on %s (it is unknown, deactivated or expired). Put the token's current value there.", where, in.backend.key), nil
	case err != nil:
		return nil, "", "", err
	case self.ID != ad.TokenID:
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("The value in %s authenticates as another token than spec.adopt.tokenID %s. Fix the id or the Secret.", where, ad.TokenID), nil
	case self.IsAdmin():
		return nil, tokensv1alpha1.ReasonAdoptionForbidden, fmt.Sprintf("Token %s is the backend's admin credential; an APIToken must never hold it (deactivating it would cut off the operator). Adopt the tokens your workloads use instead.", ad.TokenID), nil
	case self.Status != backend.StatusActive:
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("Token %s is inactive on the backend; there is nothing to adopt. Remove spec.adopt to issue a new token.", ad.TokenID), nil
	case labelledForOtherCluster(self.Owner.Cluster, r.ClusterIdentity):
		return nil, tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s was created by the operator of another cluster sharing this backend (its label %s names another cluster); only that cluster may manage it.", ad.TokenID, tokensv1alpha1.LabelCluster), nil
	case self.Owner.UID != "" && self.Owner.UID != string(tok.UID):
		return nil, tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s already belongs to another owner (external_id is set), for example another APIToken. Each token can be adopted by one APIToken.", ad.TokenID), nil
	}
	return self, "", "", nil
}

// recordAdopted makes the adopted token the current one. Its expiry counts as the one
// requested, so an expiry that differs from spec.expiresAt is replaced like a spec change.
func recordAdopted(tok *tokensv1alpha1.APIToken, self *backend.Token, value string, ref tokensv1alpha1.BackendStatusReference) {
	st := &tok.Status
	st.TokenID, st.AdoptedTokenID = self.ID, self.ID
	st.TokenHint = tokenHint(value)
	st.Permission = apiPermission(self.Permission)
	issued := metav1.NewTime(self.CreatedAt.UTC())
	st.IssuedAt = &issued
	st.ExpiresAt = timePtr(self.ExpiresAt)
	st.RequestedExpiresAt = st.ExpiresAt
	st.LastUsedAt = timePtr(self.LastUsedAt)
	st.Backend = &ref
	st.SecretName = tok.SecretNameOrDefault()
	if v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]; v != "" {
		st.RotationHandled = v
	}
}

// adoptedMismatch says how the adopted token, still the current one, differs from the
// spec ("" when it does not): the reason it is replaced, in words that name the adoption
// rather than a spec change nobody made.
func adoptedMismatch(tok *tokensv1alpha1.APIToken) string {
	st := tok.Status
	if st.AdoptedTokenID == "" || st.AdoptedTokenID != st.TokenID {
		return ""
	}
	switch {
	case st.Permission != tok.Spec.Permission:
		return fmt.Sprintf("the adopted token %s has %s permission and spec.permission asks for %s", st.TokenID, st.Permission, tok.Spec.Permission)
	case !sameTime(requestedExpiry(tok), tok.Spec.ExpiresAt):
		return fmt.Sprintf("the adopted token %s expires on the backend at %s, not at spec.expiresAt (%s)", st.TokenID, orNever(st.ExpiresAt), orNever(tok.Spec.ExpiresAt))
	}
	return ""
}

// adoptionRefused stalls the APIToken with the reason; nothing was written. A new pass (the
// Secret appearing, a spec change) verifies again.
func (r *APITokenReconciler) adoptionRefused(tok *tokensv1alpha1.APIToken, reason, msg string) (ctrl.Result, error) {
	if c := readyCondition(tok); c == nil || c.Reason != reason || c.Message != msg {
		r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventFailed, msg)
	}
	markFailed(tok, reason, msg)
	return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("adoption refused: %s", reason))
}
