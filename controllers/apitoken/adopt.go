package apitoken

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file adopts a token that existed before the operator (spec.adopt), without changing
// its value. Verification makes no backend write: the supplied value must authenticate as
// the named token (GET /api_tokens/self with that value), active, owned by nobody or by this
// APIToken already, and not the backend's admin credential. Then one write claims it (a
// compare-and-set of external_id, so two APITokens racing for one token end with one owner),
// and its value is written to spec.secretName. Killed anywhere, the next pass verifies again:
// the claim is repeatable for the same owner, and nothing else was written.

// gatherAdoption reads the value to adopt from the live Secret (the cache holds only managed
// Secrets). When spec.secretName is that same Secret, it is taken over in place: the one
// exception to SecretConflict.
func (r *Reconciler) gatherAdoption(ctx context.Context, tok *tokensv1alpha1.APIToken, in *policy.Inputs) error {
	ref := tok.Spec.Adopt.SecretRef
	var src corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: ref.Name}, &src)
	switch {
	case apierrors.IsNotFound(err):
		in.AdoptProblem = fmt.Sprintf("Secret %q (spec.adopt.secretRef) does not exist. Create it with the token's value under the key %q; adoption proceeds when it appears.", ref.Name, policy.AdoptSecretKey(tok))
		return nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", ref.Name, err)
	}
	value := src.Data[policy.AdoptSecretKey(tok)]
	if len(value) == 0 {
		in.AdoptProblem = fmt.Sprintf("Secret %q has no key %q (spec.adopt.secretRef.key). Put the token's value there.", ref.Name, policy.AdoptSecretKey(tok))
		return nil
	}
	// Taken as it is: the Secret's value stays byte-identical (a value with a trailing
	// newline does not authenticate, and verification says so).
	in.AdoptValue = backend.SecretValue(value)
	if ref.Name == tok.SecretNameOrDefault() && in.SecretConflict && !metav1.IsControlledBy(&src, tok) {
		if owner := metav1.GetControllerOf(&src); owner == nil {
			in.SecretConflict, in.Secret = false, &src
		}
	}
	return nil
}

// adopt verifies, claims and stores the token spec.adopt names.
func (r *Reconciler) adopt(ctx context.Context, in policy.Inputs, cl backend.Driver, out *policy.Outcome) {
	tok, ad := in.Token, in.Token.Spec.Adopt
	if in.AdoptProblem != "" {
		adoptionRefused(tokensv1alpha1.ReasonAdoptionFailed, in.AdoptProblem, out)
		return
	}
	claimer, canClaim := cl.(backend.Claimer)
	identifier, canIdentify := cl.(backend.Identifier)
	features, err := cl.Capabilities(ctx)
	if err != nil {
		r.backendFailed(in, "reading the backend's capabilities", err, out)
		return
	}
	if !canClaim || !canIdentify || !features.Has(backend.CapabilityClaim) {
		adoptionRefused(tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("%s does not offer %q, so an existing token cannot be claimed. Upgrade the backend, or remove spec.adopt to issue a new token.", in.Backend.Key, backend.CapabilityClaim), out)
		return
	}
	self, reason, why, err := r.verifyAdoption(ctx, in, identifier)
	switch {
	case err != nil:
		r.backendFailed(in, "verifying the token to adopt", err, out)
		return
	case reason != "":
		adoptionRefused(reason, why, out)
		return
	}
	claimed, err := claimer.Claim(ctx, ad.TokenID, backend.Owner{UID: string(tok.UID), Cluster: r.ClusterIdentity})
	switch {
	case backend.IsClaimed(err):
		adoptionRefused(tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s was claimed by another owner first (its external_id is set to another value). Each token can be adopted by one APIToken.", ad.TokenID), out)
		return
	case err != nil:
		r.backendFailed(in, "claiming the token to adopt", err, out)
		return
	case claimed.Owner.UID != string(tok.UID) || claimed.ID != ad.TokenID:
		adoptionRefused(tokensv1alpha1.ReasonAdoptionFailed, "The backend's answer to the claim does not name this token and this APIToken.", out)
		return
	}
	r.storeAdopted(ctx, in, self, out)
}

// storeAdopted writes the adopted value to the Secret and makes it the current token.
func (r *Reconciler) storeAdopted(ctx context.Context, in policy.Inputs, self *backend.Token, out *policy.Outcome) {
	value := []byte(in.AdoptValue.Reveal())
	t := policy.SecretToken{ID: self.ID, Permission: policy.APIPermission(self.Permission), ExpiresAt: policy.TimePtr(self.ExpiresAt)}
	if err := r.writeSecret(ctx, in, t, value); err != nil {
		r.secretWriteFailed(in, err, out)
		return
	}
	out.Ledger.Adopt(in.Token, *self, policy.TokenHint(string(value)), backendkey.Ref(in.Backend.Key, in.Backend.UID))
	r.expectations.expect(in.Token.UID, out.Ledger.View().IssueSerial, self.ID, secretcache.HashToken(value), in.Now)
	out.Adopted = true
}

// verifyAdoption asks the backend, with the supplied value, which token it is. It returns a
// refusal reason and message, or the token's own object; the value is never quoted.
func (r *Reconciler) verifyAdoption(ctx context.Context, in policy.Inputs, identifier backend.Identifier) (*backend.Token, string, string, error) {
	tok, ad := in.Token, in.Token.Spec.Adopt
	where := fmt.Sprintf("Secret %q key %q", ad.SecretRef.Name, policy.AdoptSecretKey(tok))
	self, err := identifier.Identify(ctx, in.AdoptValue)
	switch {
	case backend.IsUnauthorized(err):
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("The value in %s does not authenticate on %s (it is unknown, deactivated or expired). Put the token's current value there.", where, in.Backend.Key), nil
	case err != nil:
		return nil, "", "", err
	case self.ID != ad.TokenID:
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("The value in %s authenticates as another token than spec.adopt.tokenID %s. Fix the id or the Secret.", where, ad.TokenID), nil
	case self.IsAdmin():
		return nil, tokensv1alpha1.ReasonAdoptionForbidden, fmt.Sprintf("Token %s is the backend's admin credential; an APIToken must never hold it (deactivating it would cut off the operator). Adopt the tokens your workloads use instead.", ad.TokenID), nil
	case self.Status != backend.StatusActive:
		return nil, tokensv1alpha1.ReasonAdoptionFailed, fmt.Sprintf("Token %s is inactive on the backend; there is nothing to adopt. Remove spec.adopt to issue a new token.", ad.TokenID), nil
	case inventory.LabelledForOtherCluster(self.Owner.Cluster, r.ClusterIdentity):
		return nil, tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s was created by the operator of another cluster sharing this backend (its label %s names another cluster); only that cluster may manage it.", ad.TokenID, tokensv1alpha1.LabelCluster), nil
	case self.Owner.UID != "" && self.Owner.UID != string(tok.UID):
		return nil, tokensv1alpha1.ReasonAlreadyManaged, fmt.Sprintf("Token %s already belongs to another owner (external_id is set), for example another APIToken. Each token can be adopted by one APIToken.", ad.TokenID), nil
	}
	return self, "", "", nil
}
