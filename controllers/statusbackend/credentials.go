package statusbackend

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
)

// The credentials finalizer (tokens.statusops.dev/credentials-in-use) keeps a backend's
// credentials Secret while APITokens depend on that backend. Deleting a namespace deletes
// its objects in no particular order; without it, the Secret could go first, the backend
// would lose its credential, and the tokens' finalizers could no longer deactivate their
// backend tokens. A Secret held this way has a deletion timestamp but can still be read, and
// the backend keeps using it until its last APIToken is gone.
//
// Several backends, of either kind, may read one Secret, so the finalizer is removed only
// when no APIToken depends on any of them.

// credentialsSecretIndex indexes backends by the credentials Secret they read
// ("namespace/name"), so a changed Secret re-checks exactly the backends that use it.
const credentialsSecretIndex = "spec.credentialsSecretRef"

// credentialUsers maps each backend kind to a lookup of its backends reading a Secret;
// each kind's reconciler adds its own when it is set up.
type credentialUsers struct {
	mu     sync.Mutex
	byKind map[tokensv1alpha1.BackendKind]func(ctx context.Context, secret types.NamespacedName) ([]backendkey.Key, error)
}

func (u *credentialUsers) add(kind tokensv1alpha1.BackendKind, lookup func(ctx context.Context, secret types.NamespacedName) ([]backendkey.Key, error)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byKind == nil {
		u.byKind = map[tokensv1alpha1.BackendKind]func(context.Context, types.NamespacedName) ([]backendkey.Key, error){}
	}
	u.byKind[kind] = lookup
}

// backendsReading lists the backends, of every set-up kind, that read the Secret.
func (u *credentialUsers) backendsReading(ctx context.Context, secret types.NamespacedName) ([]backendkey.Key, error) {
	u.mu.Lock()
	lookups := make([]func(context.Context, types.NamespacedName) ([]backendkey.Key, error), 0, len(u.byKind))
	for _, l := range u.byKind {
		lookups = append(lookups, l)
	}
	u.mu.Unlock()
	var keys []backendkey.Key
	for _, lookup := range lookups {
		k, err := lookup(ctx, secret)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

// credentialsInUse reports whether any APIToken refers to a backend that reads the Secret.
func (c *Checker) credentialsInUse(ctx context.Context, tokens client.Reader, secret types.NamespacedName) (bool, error) {
	keys, err := c.users.backendsReading(ctx, secret)
	if err != nil {
		return false, err
	}
	for _, key := range keys {
		var list tokensv1alpha1.APITokenList
		if err := tokens.List(ctx, &list, client.MatchingFields{backendkey.Index: key.String()}, client.Limit(1)); err != nil {
			return false, err
		}
		if len(list.Items) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// syncCredentialsFinalizer puts the credentials finalizer on the Secret (whose metadata the
// check read; nil when it does not exist) while an APIToken depends on it, and removes it
// once none does. The patch carries the resourceVersion, so two backends sharing the Secret
// never drop each other's change.
func (c *Checker) syncCredentialsFinalizer(ctx context.Context, cl client.Client, secret *metav1.ObjectMeta) error {
	if secret == nil {
		return nil
	}
	ref := types.NamespacedName{Namespace: secret.Namespace, Name: secret.Name}
	inUse, err := c.credentialsInUse(ctx, cl, ref)
	if err != nil {
		return fmt.Errorf("listing the APITokens that depend on Secret %s: %w", ref, err)
	}
	obj := &metav1.PartialObjectMetadata{ObjectMeta: *secret.DeepCopy()}
	obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	has := controllerutil.ContainsFinalizer(obj, tokensv1alpha1.CredentialsFinalizer)
	if inUse == has || (inUse && !obj.DeletionTimestamp.IsZero()) {
		// Nothing to do, or too late: no finalizer can be added to an object being deleted.
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if inUse {
		controllerutil.AddFinalizer(obj, tokensv1alpha1.CredentialsFinalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, tokensv1alpha1.CredentialsFinalizer)
	}
	if err := cl.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating the finalizer of Secret %s: %w", ref, err)
	}
	return nil
}

// annotationCredentialsHeld records on a backend the credentials Secret it last checked, so
// that when spec.credentialsSecretRef changes the finalizer on the old Secret is released
// (nothing else would look at that Secret again).
const annotationCredentialsHeld = "tokens.statusops.dev/credentials-held"

// releasePreviousCredentials syncs the finalizer of the Secret the backend read before its
// credentialsSecretRef changed, then records the current one.
func (r *backendReconciler[T]) releasePreviousCredentials(ctx context.Context, obj T) error {
	current := r.kind.credentials(obj).String()
	held := obj.GetAnnotations()[annotationCredentialsHeld]
	if held == current {
		return nil
	}
	if ns, name, ok := strings.Cut(held, "/"); ok {
		in := backendInputs{secretRef: types.NamespacedName{Namespace: ns, Name: name}}
		r.checker.readCredential(ctx, &in)
		if in.readErr != nil {
			return fmt.Errorf("reading Secret %s: %w", held, in.readErr)
		}
		if err := r.checker.syncCredentialsFinalizer(ctx, r.client, in.secret); err != nil {
			return err
		}
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return nil
	}
	// Patch a copy: the reply would overwrite the status this pass is about to write.
	recorded := obj.DeepCopyObject().(T)
	patch := client.MergeFrom(obj)
	annotations := recorded.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[annotationCredentialsHeld] = current
	recorded.SetAnnotations(annotations)
	if err := r.client.Patch(ctx, recorded, patch); err != nil {
		return fmt.Errorf("recording the credentials Secret: %w", err)
	}
	return nil
}
