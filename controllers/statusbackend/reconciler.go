// Package statusbackend reconciles StatusBackends and ClusterStatusBackends with one generic
// reconciler (backendReconciler[T], external-secrets' GenericStore): each kind says only its
// scope, where its credential lives and allowedNamespaces (kinds.go). A pass checks the
// credential against the backend (check.go, with classifyBackend as the pure decision),
// registers or unregisters the backend's driver (package registry), writes Ready and
// status.tokens once, and holds the credentials Secret with a finalizer while APITokens
// depend on the backend (credentials.go).
package statusbackend

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// BackendFinalizer keeps a backend until no APIToken refers to it: the tokens' own finalizers
// need the backend to deactivate their tokens, and a backend deleted first would leave its
// tokens active with nobody to revoke them.
const BackendFinalizer = "tokens.statusops.dev/backend-in-use"

// DefaultBackendWorkers is how many backends are checked in parallel. With
// BackendCheckTimeout and the per-namespace bound, backends that hang cannot delay the
// check of another tenant's backend by more than a few seconds.
const DefaultBackendWorkers = 4

// backendKind is all that tells StatusBackend and ClusterStatusBackend apart: the type, its
// scope, where the credential lives, and allowedNamespaces. backendReconciler does the rest
// for both (the design of external-secrets' GenericStore).
type backendKind[T client.Object] struct {
	kind      tokensv1alpha1.BackendKind
	name      string
	newObject func() T
	newList   func() client.ObjectList
	spec      func(T) tokensv1alpha1.StatusBackendSpec
	status    func(T) *tokensv1alpha1.StatusBackendStatus
	// credentialsNamespace is where the credentials Secret is.
	credentialsNamespace func(T) string
	// allowedNamespaces is nil for a StatusBackend.
	allowedNamespaces func(T) *metav1.LabelSelector
}

func (k backendKind[T]) key(obj T) backendkey.Key {
	return backendkey.Key{Kind: k.kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

func (k backendKind[T]) credentials(obj T) types.NamespacedName {
	return types.NamespacedName{Namespace: k.credentialsNamespace(obj), Name: k.spec(obj).CredentialsSecretRef.Name}
}

// backendReconciler checks one kind of backend: its credential against the backend, the
// Ready condition, the registry entry, and the finalizers on it and on its Secret.
type backendReconciler[T client.Object] struct {
	client      client.Client
	checker     *Checker
	credentials cache.Cache
	kind        backendKind[T]
	workers     int
	// inventory, when set, gives status.tokens (nil: the counts are not reported).
	inventory *inventory.Inventory
}

// Reconcile checks a backend and sets Ready. Status is written once, in a deferred patch,
// and only when it changed.
func (r *backendReconciler[T]) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := r.kind.newObject()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Finalizer first; the pass goes on (a metadata patch does not wake this controller).
	if obj.GetDeletionTimestamp().IsZero() && !controllerutil.ContainsFinalizer(obj, BackendFinalizer) {
		patch := client.MergeFrom(obj.DeepCopyObject().(T))
		controllerutil.AddFinalizer(obj, BackendFinalizer)
		if err := r.client.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	before := obj.DeepCopyObject().(T)
	defer func() {
		if retErr == nil {
			// Set only when the pass succeeded, as for APITokens (patchStatus).
			r.kind.status(obj).ObservedGeneration = obj.GetGeneration()
		}
		if equality.Semantic.DeepEqual(r.kind.status(before), r.kind.status(obj)) {
			return
		}
		if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()
	if !obj.GetDeletionTimestamp().IsZero() {
		return r.reconcileDelete(ctx, obj)
	}
	return r.reconcileNormal(ctx, obj)
}

// reconcileNormal checks the backend, then holds or releases its credentials Secret.
func (r *backendReconciler[T]) reconcileNormal(ctx context.Context, obj T) (ctrl.Result, error) {
	in, ok := r.check(ctx, obj)
	if !ok {
		return ctrl.Result{RequeueAfter: tenantBusyRequeue}, nil
	}
	res := r.apply(ctx, obj, in)
	setBackendReady(r.kind.status(obj), obj.GetGeneration(), res.status, res.reason, res.message)
	setBackendDriver(r.kind.status(obj), r.kind.spec(obj), in, res)
	r.reportTokenCounts(obj)
	if err := r.checker.syncCredentialsFinalizer(ctx, r.client, in.secret); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releasePreviousCredentials(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: res.retry}, nil
}

// reconcileDelete keeps a deleted backend, still checked so that its tokens can be
// deactivated, until no APIToken refers to it; then releases its Secret and itself.
func (r *backendReconciler[T]) reconcileDelete(ctx context.Context, obj T) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, BackendFinalizer) {
		return ctrl.Result{}, nil
	}
	key := r.kind.key(obj)
	var tokens tokensv1alpha1.APITokenList
	if err := r.client.List(ctx, &tokens, client.MatchingFields{backendkey.Index: key.String()}); err != nil {
		return ctrl.Result{}, err
	}
	if n := len(tokens.Items); n > 0 {
		in, ok := r.check(ctx, obj)
		if !ok {
			return ctrl.Result{RequeueAfter: tenantBusyRequeue}, nil
		}
		res := r.apply(ctx, obj, in)
		setBackendReady(r.kind.status(obj), obj.GetGeneration(), metav1.ConditionFalse, tokensv1alpha1.ReasonInUse,
			fmt.Sprintf("Deletion waits until the %d APIToken(s) using this backend are deleted (for example %s/%s), so their tokens can still be deactivated. If the backend is gone for good, annotate those APITokens %s=true to let them go without deactivating. Last check: %s",
				n, tokens.Items[0].Namespace, tokens.Items[0].Name, tokensv1alpha1.AnnotationSkipRevoke, res.message))
		return ctrl.Result{RequeueAfter: res.retry}, nil
	}
	r.checker.Registry.Forget(key)
	forgetTokenCounts(key)
	in := backendInputs{secretRef: r.kind.credentials(obj), dataKey: r.kind.spec(obj).CredentialsSecretRef.Key}
	r.checker.readCredential(ctx, &in)
	if in.readErr != nil {
		return ctrl.Result{}, fmt.Errorf("reading Secret %s: %w", in.secretRef, in.readErr)
	}
	if err := r.checker.syncCredentialsFinalizer(ctx, r.client, in.secret); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releasePreviousCredentials(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(T))
	controllerutil.RemoveFinalizer(obj, BackendFinalizer)
	if err := r.client.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// check gathers the backend's inputs, holding one of its namespace's check slots; ok is
// false when the namespace has no slot free (the caller requeues without a status change).
func (r *backendReconciler[T]) check(ctx context.Context, obj T) (backendInputs, bool) {
	key := r.kind.key(obj)
	release, ok := r.checker.slots.acquire(key)
	if !ok {
		return backendInputs{}, false
	}
	defer release()
	spec := r.kind.spec(obj)
	return r.checker.gather(ctx, key, spec, r.kind.credentials(obj), r.kind.allowedNamespaces(obj), spec.FullAccessNamespaces), true
}

// apply classifies the gathered inputs and makes the one registry update the outcome asks for.
func (r *backendReconciler[T]) apply(ctx context.Context, obj T, in backendInputs) checkResult {
	res := classifyBackend(in)
	switch res.registry {
	case registrySet:
		r.checker.Registry.Set(ctx, in.key, obj, in.client, in.url, in.fingerprint, in.features...)
		if !in.checkedAt.IsZero() {
			// A reused check keeps its time (Set keeps it), so the backend is asked again
			// when it runs out.
			r.checker.Registry.RecordCheck(in.key, in.self, in.checkedAt)
		}
	case registryRemove:
		r.checker.Registry.Remove(in.key)
	}
	logf.FromContext(ctx).V(1).Info("Checked backend", "ready", res.status, "reason", res.reason)
	return res
}

// setBackendDriver reports the driver and, after a successful check, what it offers and what
// each missing capability degrades; a check that could not tell leaves the last list.
func setBackendDriver(st *tokensv1alpha1.StatusBackendStatus, spec tokensv1alpha1.StatusBackendSpec, in backendInputs, res checkResult) {
	st.Driver = driverConfig(spec).Driver
	if res.registry == registrySet {
		st.Capabilities = capabilityStatus(in.features)
	}
}

// capabilityEffects says what the operator cannot do without each capability.
var capabilityEffects = map[backend.Capability]string{
	backend.CapabilityUsage:        "the least-privilege review reports Unknown (InsufficientHistory): the backend keeps no write or refused-write times",
	backend.CapabilityClaim:        "spec.adopt fails with AdoptionFailed: an existing token cannot be verified and claimed",
	backend.CapabilityUpdatedSince: "the inventory lists every token each sync interval instead of only the changed ones",
}

// capabilityStatus is status.capabilities: each capability the operator knows, whether the
// backend offers it, and what a missing one degrades.
func capabilityStatus(offered backend.Capabilities) []tokensv1alpha1.BackendCapability {
	out := make([]tokensv1alpha1.BackendCapability, 0, len(backend.AllCapabilities))
	for _, c := range backend.AllCapabilities {
		bc := tokensv1alpha1.BackendCapability{Name: string(c), Supported: offered.Has(c)}
		if !bc.Supported {
			bc.Effect = capabilityEffects[c]
		}
		out = append(out, bc)
	}
	return out
}

// setBackendReady is the one status setter of both backend kinds.
func setBackendReady(st *tokensv1alpha1.StatusBackendStatus, generation int64, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: tokensv1alpha1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends;clusterstatusbackends,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends/finalizers;clusterstatusbackends/finalizers,verbs=update
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=statusbackends/status;clusterstatusbackends/status,verbs=get;update;patch
// The credentials Secret: read, and its finalizer patched (the APIToken controller's Secret
// rights are beside writeSecret).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;patch

// SetupWithManager registers the controller: the backends themselves (spec changes and
// deletion), the APITokens that start or stop depending on them, re-check requests from the
// registry, and their credentials Secrets (metadata only).
func (r *backendReconciler[T]) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newObject(), credentialsSecretIndex, func(o client.Object) []string {
		return []string{r.kind.credentials(o.(T)).String()}
	}); err != nil {
		return err
	}
	r.checker.users.add(r.kind.kind, r.backendsReading)
	workers := r.workers
	if workers <= 0 {
		workers = DefaultBackendWorkers
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(r.kind.newObject(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&tokensv1alpha1.APIToken{}, handler.EnqueueRequestsFromMapFunc(r.backendOfToken), builder.WithPredicates(dependencyChanged())).
		WatchesRawSource(source.Channel(r.checker.Registry.Rechecks(r.kind.kind), &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Channel(r.countsChanged(), &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Kind(r.credentials, secretcache.Metadata(), handler.TypedEnqueueRequestsFromMapFunc(r.backendsForSecret))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Named(r.kind.name).
		Complete(r)
}

// countsChanged is the inventory's channel of backends of this kind whose token counts
// changed; without an inventory, a channel that never delivers.
func (r *backendReconciler[T]) countsChanged() <-chan event.GenericEvent {
	if r.inventory == nil {
		return make(chan event.GenericEvent)
	}
	return r.inventory.CountsChanged(r.kind.kind)
}

// reportTokenCounts copies the last inventory's counts into status.tokens and the gauge.
// Until the backend has been listed once, the previous counts stand.
func (r *backendReconciler[T]) reportTokenCounts(obj T) {
	if r.inventory == nil {
		return
	}
	key := r.kind.key(obj)
	n := r.inventory.TokenCounts(key)
	if n == nil {
		return
	}
	r.kind.status(obj).Tokens = n
	setTokenCountGauges(key, n)
}

// backendsReading lists the backends of this kind that read the Secret.
func (r *backendReconciler[T]) backendsReading(ctx context.Context, secret types.NamespacedName) ([]backendkey.Key, error) {
	list := r.kind.newList()
	if err := r.client.List(ctx, list, client.MatchingFields{credentialsSecretIndex: secret.String()}); err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	keys := make([]backendkey.Key, 0, len(items))
	for _, o := range items {
		if obj, ok := o.(T); ok {
			keys = append(keys, r.kind.key(obj))
		}
	}
	return keys, nil
}

func (r *backendReconciler[T]) backendsForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	keys, err := r.backendsReading(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
	if err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(keys))
	for _, k := range keys {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}})
	}
	return reqs
}

// backendOfToken maps an APIToken to its backend if it is of this kind; on an update the
// handler maps the old and the new object, so a changed backendRef wakes both backends.
func (r *backendReconciler[T]) backendOfToken(_ context.Context, o client.Object) []reconcile.Request {
	key := backendkey.For(o.(*tokensv1alpha1.APIToken))
	if key.Kind != r.kind.kind {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: key.Namespace, Name: key.Name}}}
}

// dependencyChanged passes the APIToken events that change which backends are depended on:
// creation, deletion (a deleted backend waits for its last token) and a changed backendRef.
func dependencyChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldTok, ok1 := e.ObjectOld.(*tokensv1alpha1.APIToken)
			newTok, ok2 := e.ObjectNew.(*tokensv1alpha1.APIToken)
			return ok1 && ok2 && backendkey.For(oldTok) != backendkey.For(newTok)
		},
	}
}
