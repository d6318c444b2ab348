package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Index of backends by the credentials Secret they read ("namespace/name"), so a changed
// Secret re-checks exactly the backends that use it.
const credentialsSecretIndex = "spec.credentialsSecretRef"

// BackendCheckInterval is how often a Ready backend's credential is checked again.
const BackendCheckInterval = 5 * time.Minute

// BackendClientFactory builds a protocol client; tests and metrics wrap it.
type BackendClientFactory func(o backend.Options) (backend.Client, error)

// DefaultBackendClientFactory builds the HTTP client.
func DefaultBackendClientFactory(o backend.Options) (backend.Client, error) { return backend.New(o) }

// secretMetadata is the object the credentials watch delivers: a Secret's metadata only.
func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// BackendChecker resolves a backend's credential and checks it against the backend. The
// StatusBackend and ClusterStatusBackend reconcilers share it.
type BackendChecker struct {
	// APIReader reads credentials Secrets uncached: the operator caches only the Secrets it
	// manages, so unrelated Secrets cost no memory.
	APIReader client.Reader
	Registry  *BackendRegistry
	NewClient BackendClientFactory
}

// checkResult is the outcome of a backend check, as a Ready condition.
type checkResult struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	retry   time.Duration
}

// NewBackendChecker returns a checker that registers Ready backends in reg.
func NewBackendChecker(apiReader client.Reader, reg *BackendRegistry, newClient BackendClientFactory) *BackendChecker {
	return &BackendChecker{APIReader: apiReader, Registry: reg, NewClient: newClient}
}

func (c *BackendChecker) check(ctx context.Context, obj client.Object, key BackendKey, spec tokensv1alpha1.StatusBackendSpec, credNamespace string) checkResult {
	ref := spec.CredentialsSecretRef
	secretKey := ref.Key
	if secretKey == "" {
		secretKey = "token"
	}
	var secret corev1.Secret
	err := c.APIReader.Get(ctx, types.NamespacedName{Namespace: credNamespace, Name: ref.Name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		c.Registry.Remove(key)
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Secret %s/%s does not exist: create it with a FullAccess token of the backend under the key %q.", credNamespace, ref.Name, secretKey), 0}
	case err != nil:
		return checkResult{metav1.ConditionUnknown, tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Reading Secret %s/%s failed: %v", credNamespace, ref.Name, err), 10 * time.Second}
	}
	value, ok := secret.Data[secretKey]
	if !ok || len(value) == 0 {
		c.Registry.Remove(key)
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Secret %s/%s has no key %q: put the backend's FullAccess token under that key or set spec.credentialsSecretRef.key.", credNamespace, ref.Name, secretKey), 0}
	}
	sum := sha256.New()
	sum.Write([]byte(spec.URL))
	sum.Write(spec.CABundle)
	sum.Write(value)
	fingerprint := hex.EncodeToString(sum.Sum(nil))
	// Reuse the registered client (and its connections) while nothing about it changed.
	cl, _, registered := c.Registry.Get(key)
	if !registered || c.Registry.Fingerprint(key) != fingerprint {
		var err error
		cl, err = c.NewClient(backend.Options{BaseURL: spec.URL, Token: backend.SecretValue(trimSpace(value)), CABundle: spec.CABundle})
		if err != nil {
			c.Registry.Remove(key)
			return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonInvalidConfiguration,
				fmt.Sprintf("The backend cannot be used as configured: %v. Fix spec.url or spec.caBundle.", err), 0}
		}
	}
	self, err := cl.Self(ctx)
	if err != nil {
		c.Registry.Remove(key)
		return pingFailure(err, credNamespace, ref.Name)
	}
	if self.Permission != backend.PermissionFullAccess {
		c.Registry.Remove(key)
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The token in Secret %s/%s is %s; issuing tokens needs a full_access token. Replace it with a FullAccess token.", credNamespace, ref.Name, self.Permission), 0}
	}
	c.Registry.Set(ctx, key, obj, cl, spec.URL, fingerprint)
	return checkResult{metav1.ConditionTrue, tokensv1alpha1.ReasonPingSucceeded,
		"The backend answered with the credential; tokens can be issued.", BackendCheckInterval}
}

func pingFailure(err error, ns, name string) checkResult {
	var be *backend.Error
	switch {
	case backend.IsUnauthorized(err):
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The backend rejected the token in Secret %s/%s (401): it is unknown, deactivated or expired. Put a valid FullAccess token there.", ns, name), 0}
	case backend.IsForbidden(err):
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The backend refused the token in Secret %s/%s (403). Put a FullAccess token there.", ns, name), 0}
	case errors.As(err, &be) && be.Kind == backend.KindProtocol:
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonBackendUnreachable,
			fmt.Sprintf("The URL does not answer as a status backend: %v. Check spec.url (it must end in the API root, e.g. /api/v3).", err), 30 * time.Second}
	default:
		retry := backend.RetryAfter(err)
		if retry == 0 {
			// One cheap call per backend; a recovered backend wakes its tokens at once.
			retry = 5 * time.Second
		}
		return checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonBackendUnreachable,
			fmt.Sprintf("The backend could not be reached: %v. It is checked again in %s.", err, retry.Round(time.Second)), retry}
	}
}

func trimSpace(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

// applyCheck sets the Ready condition and returns the requeue.
func applyCheck(st *tokensv1alpha1.StatusBackendStatus, generation int64, res checkResult) (ctrl.Result, error) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: tokensv1alpha1.ConditionReady, Status: res.status, Reason: res.reason, Message: res.message, ObservedGeneration: generation,
	})
	st.ObservedGeneration = generation
	return ctrl.Result{RequeueAfter: res.retry}, nil
}

// patchBackendStatus writes status once, only when it changed.
func patchBackendStatus(ctx context.Context, c client.Client, obj client.Object, before client.Object, oldStatus, newStatus any) error {
	if equality.Semantic.DeepEqual(oldStatus, newStatus) {
		return nil
	}
	return c.Status().Patch(ctx, obj, client.MergeFrom(before))
}

// StatusBackendReconciler checks StatusBackends.
type StatusBackendReconciler struct {
	client.Client
	Checker *BackendChecker
	// CredentialsCache is a metadata-only cache of all Secrets, separate from the manager's
	// cache (which holds only managed Secrets), so a credentials Secret created or fixed
	// later is noticed at once.
	CredentialsCache cache.Cache
}

// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends;clusterstatusbackends,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends/finalizers;clusterstatusbackends/finalizers,verbs=update
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends/status;clusterstatusbackends/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// Reconcile checks a StatusBackend's credential and sets Ready.
func (r *StatusBackendReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var obj tokensv1alpha1.StatusBackend
	if err := r.Get(ctx, req.NamespacedName, &obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := BackendKey{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: obj.Namespace, Name: obj.Name}
	if done, err := guardBackendDeletion(ctx, r.Client, r.Checker.Registry, &obj, &obj.Status, key); done || err != nil {
		return ctrl.Result{}, err
	}
	before := obj.DeepCopy()
	res := r.Checker.check(ctx, &obj, key, obj.Spec, obj.Namespace)
	result, _ := applyCheck(&obj.Status, obj.Generation, res)
	logf.FromContext(ctx).V(1).Info("Checked backend", "ready", res.status, "reason", res.reason)
	return result, patchBackendStatus(ctx, r.Client, &obj, before, before.Status, obj.Status)
}

// SetupWithManager registers the controller and its watches.
func (r *StatusBackendReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &tokensv1alpha1.StatusBackend{}, credentialsSecretIndex, func(o client.Object) []string {
		b := o.(*tokensv1alpha1.StatusBackend)
		return []string{b.Namespace + "/" + b.Spec.CredentialsSecretRef.Name}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tokensv1alpha1.StatusBackend{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&tokensv1alpha1.APIToken{}, handler.EnqueueRequestsFromMapFunc(backendOfDeletedToken(tokensv1alpha1.BackendKindStatusBackend)), builder.WithPredicates(onDelete())).
		WatchesRawSource(source.Channel(r.Checker.Registry.Rechecks(tokensv1alpha1.BackendKindStatusBackend), &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Kind(r.CredentialsCache, secretMetadata(), handler.TypedEnqueueRequestsFromMapFunc(r.backendsForSecret))).
		Named("statusbackend").
		Complete(r)
}

func (r *StatusBackendReconciler) backendsForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	var list tokensv1alpha1.StatusBackendList
	if err := r.List(ctx, &list, client.MatchingFields{credentialsSecretIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, b := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: b.Namespace, Name: b.Name}})
	}
	return reqs
}

// ClusterStatusBackendReconciler checks ClusterStatusBackends.
type ClusterStatusBackendReconciler struct {
	client.Client
	Checker *BackendChecker
	// CredentialsCache: see StatusBackendReconciler.
	CredentialsCache cache.Cache
}

// Reconcile checks a ClusterStatusBackend's credential and sets Ready.
func (r *ClusterStatusBackendReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var obj tokensv1alpha1.ClusterStatusBackend
	if err := r.Get(ctx, req.NamespacedName, &obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: obj.Name}
	if done, err := guardBackendDeletion(ctx, r.Client, r.Checker.Registry, &obj, &obj.Status, key); done || err != nil {
		return ctrl.Result{}, err
	}
	before := obj.DeepCopy()
	res := r.Checker.check(ctx, &obj, key, obj.Spec.StatusBackendSpec, obj.Spec.CredentialsSecretRef.Namespace)
	if _, err := metav1.LabelSelectorAsSelector(obj.Spec.AllowedNamespaces); err != nil {
		r.Checker.Registry.Remove(key)
		res = checkResult{metav1.ConditionFalse, tokensv1alpha1.ReasonInvalidConfiguration,
			fmt.Sprintf("spec.allowedNamespaces is not a valid label selector: %v", err), 0}
	}
	result, _ := applyCheck(&obj.Status, obj.Generation, res)
	logf.FromContext(ctx).V(1).Info("Checked backend", "ready", res.status, "reason", res.reason)
	return result, patchBackendStatus(ctx, r.Client, &obj, before, before.Status, obj.Status)
}

// SetupWithManager registers the controller and its watches.
func (r *ClusterStatusBackendReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &tokensv1alpha1.ClusterStatusBackend{}, credentialsSecretIndex, func(o client.Object) []string {
		b := o.(*tokensv1alpha1.ClusterStatusBackend)
		return []string{b.Spec.CredentialsSecretRef.Namespace + "/" + b.Spec.CredentialsSecretRef.Name}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tokensv1alpha1.ClusterStatusBackend{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&tokensv1alpha1.APIToken{}, handler.EnqueueRequestsFromMapFunc(backendOfDeletedToken(tokensv1alpha1.BackendKindClusterStatusBackend)), builder.WithPredicates(onDelete())).
		WatchesRawSource(source.Channel(r.Checker.Registry.Rechecks(tokensv1alpha1.BackendKindClusterStatusBackend), &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Kind(r.CredentialsCache, secretMetadata(), handler.TypedEnqueueRequestsFromMapFunc(r.backendsForSecret))).
		Named("clusterstatusbackend").
		Complete(r)
}

func (r *ClusterStatusBackendReconciler) backendsForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	var list tokensv1alpha1.ClusterStatusBackendList
	if err := r.List(ctx, &list, client.MatchingFields{credentialsSecretIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, b := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: b.Name}})
	}
	return reqs
}

// BackendFinalizer keeps a backend until no APIToken refers to it: the tokens' own finalizers
// need the backend to deactivate their tokens, and a backend deleted first would leave its
// tokens active with nobody to revoke them.
const BackendFinalizer = "tokens.statusops.dev/backend-in-use"

// guardBackendDeletion adds the finalizer to a live backend, and for a deleted one removes it
// once no APIToken refers to it. done is true when the backend is being deleted.
func guardBackendDeletion(ctx context.Context, c client.Client, reg *BackendRegistry, obj client.Object, st *tokensv1alpha1.StatusBackendStatus, key BackendKey) (bool, error) {
	if obj.GetDeletionTimestamp().IsZero() {
		if controllerutil.ContainsFinalizer(obj, BackendFinalizer) {
			return false, nil
		}
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		controllerutil.AddFinalizer(obj, BackendFinalizer)
		if err := c.Patch(ctx, obj, patch); err != nil {
			return false, fmt.Errorf("adding finalizer: %w", err)
		}
		return false, nil
	}
	if !controllerutil.ContainsFinalizer(obj, BackendFinalizer) {
		return true, nil
	}
	var tokens tokensv1alpha1.APITokenList
	if err := c.List(ctx, &tokens, client.MatchingFields{backendRefIndex: key.String()}); err != nil {
		return true, err
	}
	if n := len(tokens.Items); n > 0 {
		before := obj.DeepCopyObject().(client.Object)
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonInUse, ObservedGeneration: obj.GetGeneration(),
			Message: fmt.Sprintf("Deletion waits until the %d APIToken(s) using this backend are deleted (for example %s/%s), so their tokens can still be deactivated.", n, tokens.Items[0].Namespace, tokens.Items[0].Name),
		})
		return true, c.Status().Patch(ctx, obj, client.MergeFrom(before))
	}
	reg.Remove(key)
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	controllerutil.RemoveFinalizer(obj, BackendFinalizer)
	if err := c.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return true, fmt.Errorf("removing finalizer: %w", err)
	}
	return true, nil
}

// backendOfDeletedToken maps a deleted APIToken to its backend of the given kind, so a
// backend waiting in deletion is released when its last token goes.
func backendOfDeletedToken(kind tokensv1alpha1.BackendKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		key := backendKeyFor(o.(*tokensv1alpha1.APIToken))
		if key.Kind != kind {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: key.Namespace, Name: key.Name}}}
	}
}

// onDelete passes delete events only.
func onDelete() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
	}
}
