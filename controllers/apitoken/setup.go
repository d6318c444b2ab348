package apitoken

import (
	"context"
	"slices"
	"strings"
	"time"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/controllers/workloadrestart"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// secretNameIndex indexes APITokens by "namespace/secretName" (only names other than the
// APIToken's own).
const secretNameIndex = "spec.secretName"

// SetupWithManager registers the controller: APITokens (spec, annotation, label and
// deletion changes only, so status writes do not wake it), their Secrets, their backends,
// backend registrations and inventory changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.setupIndexes(mgr); err != nil {
		return err
	}
	notStatusOnly := predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.LabelChangedPredicate{}, deletionChanged())
	b := ctrl.NewControllerManagedBy(mgr).
		For(&tokensv1alpha1.APIToken{}, builder.WithPredicates(notStatusOnly)).
		Owns(&corev1.Secret{}).
		Watches(&tokensv1alpha1.StatusBackend{}, handler.EnqueueRequestsFromMapFunc(r.tokensForBackend), builder.WithPredicates(readyChanged())).
		Watches(&tokensv1alpha1.ClusterStatusBackend{}, handler.EnqueueRequestsFromMapFunc(r.tokensForBackend), builder.WithPredicates(readyChanged())).
		WatchesRawSource(source.Channel(r.Registry.Events(), handler.EnqueueRequestsFromMapFunc(r.tokensForBackend))).
		WatchesRawSource(source.Channel(r.Registry.SlotFreed(), slotWakeHandler())).
		// Policy is enforced, not only checked at issue: a namespace whose labels change
		// (allowedNamespaces, fullAccessNamespaces) re-checks its APITokens at once.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.tokensInNamespace), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, RateLimiter: tokenRateLimiter()}).
		Named("apitoken")
	if r.Inventory != nil {
		b = b.WatchesRawSource(source.Channel(r.Inventory.Events(), &handler.EnqueueRequestForObject{}))
	}
	if r.RestartWorkloads {
		consenting := predicate.NewPredicateFuncs(func(o client.Object) bool {
			_, ok := o.GetAnnotations()[tokensv1alpha1.AnnotationRestartOnRotate]
			return ok
		})
		for _, k := range workloadrestart.Kinds {
			b = b.WatchesMetadata(k.New(), handler.EnqueueRequestsFromMapFunc(r.tokensForWorkload), builder.WithPredicates(consenting))
		}
	}
	if r.SecretMetadata != nil {
		// Secrets that are not ours (the managed ones come through Owns): a foreign Secret in
		// the way being deleted or renamed unblocks the APIToken at once.
		foreign := predicate.NewTypedPredicateFuncs(func(o *metav1.PartialObjectMetadata) bool {
			return o.GetLabels()[tokensv1alpha1.LabelManagedBy] != tokensv1alpha1.ManagedByValue
		})
		b = b.WatchesRawSource(source.Kind(r.SecretMetadata, secretcache.Metadata(), handler.TypedEnqueueRequestsFromMapFunc(r.tokensForSecret), foreign))
	}
	return b.Complete(r)
}

// slotWakePriority is the work-queue priority of an APIToken woken because a backend slot
// freed for it (the informers' initial list is queued at -100, events at 0).
const slotWakePriority = 10

// slotWakeHandler queues an APIToken woken by a freed backend slot ahead of the queue's other
// work. It was refused before any of that work was tried, and the slots wake their waiters in
// the order they keep (replays of creates whose reply was lost first, then in the order
// refused): behind the queue, a replay waited for a whole burst's new issuances, each of
// which took the slot meant for it.
func slotWakeHandler() handler.EventHandler {
	return handler.Funcs{GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: e.Object.GetName()}}
		if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(slotWakePriority)}, req)
			return
		}
		q.Add(req)
	}}
}

// IndexBackends registers backendkey.Index, which the APIToken reconciler, the backend
// reconcilers and the inventory read.
func IndexBackends(indexer client.FieldIndexer) error {
	return indexer.IndexField(context.Background(), &tokensv1alpha1.APIToken{}, backendkey.Index, func(o client.Object) []string {
		return backendkey.Of(o.(*tokensv1alpha1.APIToken))
	})
}

// setupIndexes registers the APIToken indexes, and the holders map fed by its informer.
func (r *Reconciler) setupIndexes(mgr ctrl.Manager) error {
	if err := IndexBackends(mgr.GetFieldIndexer()); err != nil {
		return err
	}
	tokens, err := mgr.GetCache().GetInformer(context.Background(), &tokensv1alpha1.APIToken{})
	if err != nil {
		return err
	}
	if _, err := tokens.AddEventHandler(&r.holders); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &tokensv1alpha1.APIToken{}, secretNameIndex, func(o client.Object) []string {
		// Only the names other than the APIToken's own: most APITokens keep the default
		// Secret name, and tokensForSecret finds those without the index (an index entry is
		// a set per token, twice: see docs/performance.md).
		tok := o.(*tokensv1alpha1.APIToken)
		var names []string
		for _, n := range secretNamesOf(tok) {
			if n != tok.Name {
				names = append(names, tok.Namespace+"/"+n)
			}
		}
		return names
	}); err != nil {
		return err
	}
	return nil
}

func tokenRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, maxRetryDelay),
		// Overall: at most 50 retries per second (burst 300) across all APITokens.
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
}

// tokensForBackend maps a backend to the APITokens that refer to it.
func (r *Reconciler) tokensForBackend(ctx context.Context, o client.Object) []reconcile.Request {
	var key backendkey.Key
	switch o.(type) {
	case *tokensv1alpha1.StatusBackend:
		key = backendkey.Key{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: o.GetNamespace(), Name: o.GetName()}
	case *tokensv1alpha1.ClusterStatusBackend:
		key = backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: o.GetName()}
	default:
		return nil
	}
	var list tokensv1alpha1.APITokenList
	if err := r.List(ctx, &list, client.MatchingFields{backendkey.Index: key.String()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// tokensInNamespace maps a namespace to its APITokens.
func (r *Reconciler) tokensInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list tokensv1alpha1.APITokenList
	if err := r.List(ctx, &list, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// secretNamesOf are the Secrets an APIToken reads: its own, and the one to adopt from
// (whose appearing or changing wakes the adoption).
func secretNamesOf(tok *tokensv1alpha1.APIToken) []string {
	names := []string{tok.SecretNameOrDefault()}
	if a := tok.Spec.Adopt; a != nil && a.SecretRef.Name != tok.SecretNameOrDefault() {
		names = append(names, a.SecretRef.Name)
	}
	return names
}

// tokensForSecret maps a Secret to the APITokens that read it (secretNamesOf): the APIToken
// of the same name, when it reads it, and those found by secretNameIndex.
func (r *Reconciler) tokensForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	var reqs []reconcile.Request
	var same tokensv1alpha1.APIToken
	if err := r.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, &same, client.UnsafeDisableDeepCopy); err == nil &&
		slices.Contains(secretNamesOf(&same), o.GetName()) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: same.Namespace, Name: same.Name}})
	}
	var list tokensv1alpha1.APITokenList
	if err := r.List(ctx, &list, client.MatchingFields{secretNameIndex: o.GetNamespace() + "/" + o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		return reqs
	}
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// deletionChanged passes updates that set the deletion timestamp or remove our finalizer
// (someone else did; it must come back). Our own finalizer patch does not wake us: the pass
// that added it goes on, and a wake-up would ignore a Retry-After that pass was given.
func deletionChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
			(controllerutil.ContainsFinalizer(e.ObjectOld, tokensv1alpha1.Finalizer) && !controllerutil.ContainsFinalizer(e.ObjectNew, tokensv1alpha1.Finalizer))
	}}
}

// readyChanged passes backend creations, deletions and changes of the Ready condition.
func readyChanged() predicate.Predicate {
	readyOf := func(o client.Object) string {
		var conds []metav1.Condition
		switch b := o.(type) {
		case *tokensv1alpha1.StatusBackend:
			conds = b.Status.Conditions
		case *tokensv1alpha1.ClusterStatusBackend:
			conds = b.Status.Conditions
		}
		if c := meta.FindStatusCondition(conds, tokensv1alpha1.ConditionReady); c != nil {
			return string(c.Status) + "/" + c.Reason + "/" + c.Message
		}
		return ""
	}
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
			return true
		}
		// An inconclusive check (Unknown: a 429, an unreadable Secret) changes nothing for
		// the tokens; waking them would make each retry before its own Retry-After.
		return readyOf(e.ObjectOld) != readyOf(e.ObjectNew) && !strings.HasPrefix(readyOf(e.ObjectNew), string(metav1.ConditionUnknown)+"/")
	}}
}

// tokensForWorkload maps an opted-in workload (any change, status included: a completed
// rollout may let a predecessor retire) to the APITokens it names.
func (r *Reconciler) tokensForWorkload(_ context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, n := range workloadrestart.NamedTokens(o.GetAnnotations()) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: n}})
	}
	return reqs
}
