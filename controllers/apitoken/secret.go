package apitoken

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"context"
	"fmt"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/secretcache"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// The managed Secrets: created, patched, and deleted when renamed or the APIToken goes.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// writeSecret creates the Secret, or patches the one this APIToken owns, with the operator's
// labels and annotations and the keys describing t; value, when set, is the token itself.
// The cached Secret is never written back: the cache keeps no token value (only its hash),
// so the write is a merge patch of exactly the fields the operator sets.
func (r *Reconciler) writeSecret(ctx context.Context, in policy.Inputs, t policy.SecretToken, value []byte) error {
	tok := in.Token
	want := policy.DesiredSecretMeta(tok, in.Backend.URL, t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tok.SecretNameOrDefault(), Namespace: tok.Namespace, Labels: want.Labels, Annotations: want.Annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{},
	}
	for k, v := range want.Data {
		secret.Data[k] = []byte(v)
	}
	if value != nil {
		secret.Data[tokensv1alpha1.SecretKeyToken] = value
		secret.Annotations[secretcache.AnnotationTokenSHA256] = secretcache.HashToken(value)
	}
	if in.Secret != nil {
		secret.OwnerReferences = in.Secret.OwnerReferences
	}
	if err := controllerutil.SetControllerReference(tok, secret, r.Scheme); err != nil {
		return fmt.Errorf("setting owner of Secret %s: %w", secret.Name, err)
	}
	if in.Secret == nil {
		if err := r.Create(ctx, secret); err != nil {
			return fmt.Errorf("creating Secret %s: %w", secret.Name, err)
		}
		return nil
	}
	if err := r.Patch(ctx, secret, client.Merge); err != nil {
		return fmt.Errorf("updating Secret %s: %w", secret.Name, err)
	}
	return nil
}

// cleanUpSecrets removes (Revoke) or releases (Retain) the Secret, and removes an owned
// Secret left under a former spec.secretName.
func (r *Reconciler) cleanUpSecrets(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
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
func (r *Reconciler) retireOldSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, old string) error {
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
func (r *Reconciler) releaseOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	// Live, not cached: the patch is computed from it, and the cache may have cut its
	// owner references or metadata.
	secret, err := ownedSecret(ctx, r.APIReader, tok, tok.SecretNameOrDefault())
	if secret == nil || err != nil {
		return err
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
	if err := r.Patch(ctx, secret, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing Secret %s: %w", secret.Name, err)
	}
	return nil
}

// ownedSecret reads the Secret name of tok's namespace through reader; nil when it does not
// exist or tok does not control it.
func ownedSecret(ctx context.Context, reader client.Reader, tok *tokensv1alpha1.APIToken, name string) (*corev1.Secret, error) {
	var secret corev1.Secret
	err := reader.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case !metav1.IsControlledBy(&secret, tok):
		return nil, nil
	}
	return &secret, nil
}

// deleteOwnedSecret deletes the Secret name when tok controls it (the UID precondition keeps
// a Secret recreated meanwhile under the same name).
func (r *Reconciler) deleteOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, name string) error {
	secret, err := ownedSecret(ctx, r.Client, tok, name)
	if secret == nil || err != nil {
		return err
	}
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s: %w", secret.Name, err)
	}
	return nil
}

// retireRenamedSecret finishes a change of spec.secretName once the new Secret holds the
// token: the old one is deleted, and the ledger names the new one.
func (r *Reconciler) retireRenamedSecret(ctx context.Context, in policy.Inputs, out *policy.Outcome) {
	tok, l := in.Token, out.Ledger
	if in.Secret == nil || l.View().SecretName == tok.SecretNameOrDefault() {
		return
	}
	if out.Err = r.retireOldSecret(ctx, tok, l.View().SecretName); out.Err != nil {
		return
	}
	l.SetSecretName(tok.SecretNameOrDefault())
}
