package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// backendRefIndex indexes APITokens by BackendKey.String(), so a backend event wakes
// exactly its tokens.
const backendRefIndex = "spec.backendRef"

// secretNameIndex indexes APITokens by "namespace/secretName".
const secretNameIndex = "spec.secretName"

// backendsOf lists every backend an APIToken depends on: the one its spec names, the one
// that holds its current token, those holding draining predecessors, and those holding
// tokens still to be deactivated. A backend (and its credential) is kept while any of them
// is in use, and its inventory looks at them all.
func backendsOf(tok *tokensv1alpha1.APIToken) []string {
	keys := []string{backendKeyFor(tok).String()}
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	add(currentBackendKey(tok).String())
	for _, p := range tok.Status.PreviousTokens {
		add(keyOfRef(p.Backend).String())
	}
	for _, p := range tok.Status.PendingDeactivation {
		add(keyOfRef(p.Backend).String())
	}
	return keys
}

// APITokenReconciler issues, replaces, expires and revokes the backend token of each
// APIToken and keeps its Secret.
type APITokenReconciler struct {
	// Client is the manager's cached client; Secrets in its cache are only the managed ones.
	client.Client
	// APIReader reads uncached, to tell a foreign Secret from a missing one.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Registry  *BackendRegistry
	Inventory *Inventory
	// Clock is injected so that decisions never call time.Now deep in logic.
	Clock func() time.Time
	// MaxConcurrentReconciles bounds parallel reconciles; the work is I/O bound.
	MaxConcurrentReconciles int
	// SecretMetadata is the metadata-only cache of all Secrets (see StatusBackendReconciler).
	// It lets a token in SecretConflict proceed as soon as the foreign Secret is removed.
	SecretMetadata cache.Cache
	// IssuanceBudget is how many tokens one APIToken may have created within IssuanceWindow
	// (0: no limit); past it the APIToken is Stalled with reason IssuanceLimited.
	IssuanceBudget int
	IssuanceWindow time.Duration
	// PermissionReviewWindow is the least-privilege review's window (nil: the default; 0
	// turns the review off).
	PermissionReviewWindow *time.Duration
	// RestartWorkloads: retirement of a predecessor waits for the opted-in workloads naming
	// this APIToken to roll out (--restart-workloads).
	RestartWorkloads bool
	// NamespacedBackendsDisabled turns StatusBackend references into a failure
	// (--namespaced-backends=false).
	NamespacedBackendsDisabled bool
	// ClusterIdentity labels every token this cluster creates (LabelCluster); a token
	// labelled with another identity is never deactivated as an orphan nor adopted.
	ClusterIdentity string

	expectations writeExpectations
	// holders knows which APIToken holds which backend token (heldByAnother).
	holders tokenHolders
	// afterCreate is the crash-test seam (WithAfterCreate).
	afterCreate func(ctx context.Context, tok *tokensv1alpha1.APIToken) error
}

// Option sets what is not configuration: test seams.
type Option func(*APITokenReconciler)

// WithAfterCreate is the crash-test seam: f runs after the backend create succeeded and
// before the Secret is written; an error aborts the pass there, as a crash would.
func WithAfterCreate(f func(ctx context.Context, tok *tokensv1alpha1.APIToken) error) Option {
	return func(r *APITokenReconciler) { r.afterCreate = f }
}

// With applies options and returns the reconciler.
func (r *APITokenReconciler) With(opts ...Option) *APITokenReconciler {
	for _, o := range opts {
		o(r)
	}
	return r
}

// errBusyPass is how backendFailed tells Reconcile that the pass was refused by the
// backend's in-flight cap (IsBackendBusy).
var errBusyPass = errors.New("backend busy: pass refused by the in-flight cap")

// cacheLagRequeue is how soon a pass whose cache lags behind our own writes runs again.
const cacheLagRequeue = 100 * time.Millisecond

// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one APIToken towards its spec. Status is written once, at the end, and only
// when it changed.
func (r *APITokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	// One slot of the backend's in-flight cap for the whole pass (see WithBackendPass).
	ctx, endPass := WithBackendPass(ctx)
	defer endPass()
	tok := &tokensv1alpha1.APIToken{}
	if err := r.Get(ctx, req.NamespacedName, tok); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	// Finalizer first, so that no backend token can exist without one. The pass goes on
	// (the finalizer patch is metadata-only and does not wake the controller again).
	has := controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer)
	if r.expectations.finalizerPending(tok, has, r.Clock()) {
		return ctrl.Result{RequeueAfter: cacheLagRequeue}, nil
	}
	if tok.DeletionTimestamp.IsZero() && !has {
		patch := client.MergeFrom(tok.DeepCopy())
		controllerutil.AddFinalizer(tok, tokensv1alpha1.Finalizer)
		if err := r.Patch(ctx, tok, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
		r.expectations.expectFinalizer(tok.UID, r.Clock())
	}

	before := tok.DeepCopy()
	gone, observed := false, false
	defer func() {
		if errors.Is(retErr, errBusyPass) || IsBackendBusy(retErr) {
			// Refused by the backend's in-flight cap: come back when it frees a slot, without
			// holding a worker, and write no status unless this pass issued a token before it
			// was refused. Any refusal counts, also one of a read before the decision (the GET
			// that confirms a revocation): as a reconcile error it went to the exponential
			// backoff, and a hand-revoked token stayed Active for 15 s behind 100 repairs.
			result, retErr = ctrl.Result{}, nil
			first := r.expectations.isCreateUncertain(tok.UID)
			logf.FromContext(ctx).V(2).Info("Waiting for a backend slot", "first", first)
			if !WaitForSlot(ctx, req.NamespacedName, first) {
				result = ctrl.Result{RequeueAfter: BackendBusyRetryAfter()}
			}
			if tok.Status.TokenID == before.Status.TokenID {
				return
			}
		}
		if !gone {
			retErr = r.patchStatus(ctx, before, tok, observed, retErr)
		}
	}()

	if !tok.DeletionTimestamp.IsZero() {
		var err error
		gone, result, err = r.reconcileDelete(ctx, tok)
		if gone {
			forgetReview(tok)
			r.expectations.forget(tok.UID)
		}
		return result, err
	}
	in, err := r.gather(ctx, tok)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.expectations.satisfied(tok, in.secret, in.now) {
		return ctrl.Result{RequeueAfter: cacheLagRequeue}, nil
	}
	observed = true
	return r.reconcileNormal(ctx, tok, in)
}

// patchStatus is the one status write of a pass: ObservedGeneration is set only when the pass
// decided on fresh inputs and succeeded (a terminal failure is an outcome too), and the
// patch is sent only when the status changed.
func (r *APITokenReconciler) patchStatus(ctx context.Context, before, tok *tokensv1alpha1.APIToken, observed bool, retErr error) error {
	if observed && (retErr == nil || errors.Is(retErr, reconcile.TerminalError(nil))) {
		tok.Status.ObservedGeneration = tok.Generation
	}
	tok.Status.Draining = int32(len(tok.Status.PreviousTokens))
	if equality.Semantic.DeepEqual(before.Status, tok.Status) {
		return retErr
	}
	patch := client.MergeFrom(before)
	if log := logf.FromContext(ctx); log.V(2).Enabled() {
		if data, err := patch.Data(tok); err == nil {
			log.V(2).Info("Patching status", "patch", string(data))
		}
	}
	if err := r.Status().Patch(ctx, tok, patch); err != nil {
		r.expectations.forget(tok.UID)
		if apierrors.IsNotFound(err) {
			return retErr
		}
		return kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
	}
	r.expectations.expectStatus(tok.UID, &tok.Status, r.Clock())
	return retErr
}

// reconcileNormal decides, and carries out the one action decided.
func (r *APITokenReconciler) reconcileNormal(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs) (ctrl.Result, error) {
	if tok.Status.TokenID == "" {
		tok.Status.SecretName = tok.SecretNameOrDefault()
	}
	d := decide(in)
	var cl backend.Driver
	if d.action == actionIssue || d.action == actionAdopt {
		if cl = r.backendClient(in.backend.key); cl == nil {
			// Unregistered since the inputs were gathered: its next registration wakes us.
			d = withOutcome(in, decision{action: actionWait})
			d.report.message = fmt.Sprintf("%s is being checked again; the token is issued once it is Ready.", in.backend.key)
		}
	}
	switch d.action {
	case actionFail:
		r.emit(tok, d.event)
		d.report.apply(tok)
		return requeueAt(in.now, d.requeueAt), nil
	case actionWait:
		// The spec was observed; waiting is the outcome (a backend watch wakes us).
		d.report.apply(tok)
		return ctrl.Result{}, nil
	case actionIssue:
		return r.issueToken(ctx, tok, in, d, cl)
	case actionAdopt:
		return r.adoptToken(ctx, tok, in, cl)
	case actionDeactivate, actionExpire, actionRevoke:
		return r.deactivateEverything(ctx, tok, d)
	case actionRetire:
		r.retirePredecessors(tok, d.retire)
		if res, err := r.finishSweep(ctx, tok); err != nil || !res.IsZero() {
			return res, err
		}
	case actionSweep:
		if res, err := r.finishSweep(ctx, tok); err != nil || !res.IsZero() {
			return res, err
		}
	case actionUpdateSecret:
		if err := r.writeSecret(ctx, tok, in, secretTokenOf(tok), nil); err != nil {
			return r.secretWriteFailed(tok, err)
		}
	}
	return r.reportSteadyState(ctx, tok, in, d)
}

// backendClient is the registered client of a Ready backend, or nil. The decision's inputs
// hold no client: they are data only.
func (r *APITokenReconciler) backendClient(key BackendKey) backend.Driver {
	cl, _, ok := r.Registry.Get(key)
	if !ok {
		return nil
	}
	return cl
}

// reportSteadyState: nothing is left to do on the backend; finish the Secret rename and
// report what holds.
func (r *APITokenReconciler) reportSteadyState(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, d decision) (ctrl.Result, error) {
	if in.secret != nil && tok.Status.SecretName != tok.SecretNameOrDefault() {
		if err := r.retireOldSecret(ctx, tok, tok.Status.SecretName); err != nil {
			return ctrl.Result{}, err
		}
		tok.Status.SecretName = tok.SecretNameOrDefault()
	}
	refreshPredecessorUse(tok, in.predecessorUse)
	if lifetimeOf(tok) == 0 {
		tok.Status.RenewalTime = nil
	}
	if d.report.kind == reportIssued {
		if lastUsed, ok := lastUsedFromInventory(in.inventory, tok.Status.TokenID); ok && lastUsed != nil {
			t := metav1.NewTime(lastUsed.UTC().Truncate(time.Second))
			tok.Status.LastUsedAt = &t
		}
		if gracePeriodOf(tok) > 0 {
			// Known from the start (0), so an alert on its increase works from the first one.
			predecessorsUsedAfterGrace.WithLabelValues(tok.Namespace, tok.Name).Add(0)
		}
		if at := r.applyReview(tok, in); !at.IsZero() && (d.requeueAt.IsZero() || at.Before(d.requeueAt)) {
			d.requeueAt = at
		}
	}
	d.report.apply(tok)
	return requeueAt(in.now, d.requeueAt), nil
}

// deactivateEverything carries out spec.active=false, the expiry, or a policy that no longer
// allows the token: every token of this APIToken is deactivated, with no overlap. The status
// and event decide chose are reported only once every deactivation is confirmed.
func (r *APITokenReconciler) deactivateEverything(ctx context.Context, tok *tokensv1alpha1.APIToken, d decision) (ctrl.Result, error) {
	r.retireAllPredecessors(tok, "the current token is being deactivated too (no overlap)")
	if tok.Status.TokenID != "" {
		ref := backendRefFor(currentBackendKey(tok), "")
		if tok.Status.Backend != nil {
			ref = *tok.Status.Backend
		}
		addPendingDeactivation(tok, tok.Status.TokenID, ref)
	}
	res := r.sweepPendingExplicit(ctx, tok, currentBackendKey(tok), "", tok.Status.TokenID)
	if res.err != nil {
		return r.backendFailed(ctx, tok, "deactivating the token", res.err)
	}
	if len(tok.Status.PendingDeactivation) > 0 {
		markProgressing(tok, tokensv1alpha1.ReasonBackendNotReady, pendingMessage(tok, res))
		return ctrl.Result{}, nil
	}
	r.emit(tok, d.event)
	d.report.apply(tok)
	return ctrl.Result{}, nil
}

// emit records a decided event, if any.
func (r *APITokenReconciler) emit(tok *tokensv1alpha1.APIToken, ev *eventSpec) {
	if ev != nil {
		r.event(tok, ev.typ, ev.reason, ev.note)
	}
}

func (r *APITokenReconciler) event(tok *tokensv1alpha1.APIToken, typ, reason, note string) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(tok, nil, typ, reason, reason, "%s", note)
}

// requeueAt schedules the next pass at a deadline, to the second; zero means none.
func requeueAt(now, at time.Time) ctrl.Result {
	if at.IsZero() {
		return ctrl.Result{}
	}
	d := at.Sub(now)
	if d <= 0 {
		d = time.Millisecond
	}
	return ctrl.Result{RequeueAfter: d}
}

// SetupWithManager registers the controller: APITokens (spec, annotation, label and
// deletion changes only, so status writes do not wake it), their Secrets, their backends,
// backend registrations and inventory changes.
func (r *APITokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
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
		for _, k := range workloadKinds {
			b = b.WatchesMetadata(k.new(), handler.EnqueueRequestsFromMapFunc(r.tokensForWorkload), builder.WithPredicates(consenting))
		}
	}
	if r.SecretMetadata != nil {
		// Secrets that are not ours (the managed ones come through Owns): a foreign Secret in
		// the way being deleted or renamed unblocks the APIToken at once.
		foreign := predicate.NewTypedPredicateFuncs(func(o *metav1.PartialObjectMetadata) bool {
			return o.GetLabels()[tokensv1alpha1.LabelManagedBy] != tokensv1alpha1.ManagedByValue
		})
		b = b.WatchesRawSource(source.Kind(r.SecretMetadata, secretMetadata(), handler.TypedEnqueueRequestsFromMapFunc(r.tokensForSecret), foreign))
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

// IndexBackendRefs registers the index of APITokens by backend (BackendKey.String()) that
// the reconciler and the inventory read.
func IndexBackendRefs(indexer client.FieldIndexer) error {
	return indexer.IndexField(context.Background(), &tokensv1alpha1.APIToken{}, backendRefIndex, func(o client.Object) []string {
		return backendsOf(o.(*tokensv1alpha1.APIToken))
	})
}

// setupIndexes registers the APIToken indexes, and the holders map fed by its informer.
func (r *APITokenReconciler) setupIndexes(mgr ctrl.Manager) error {
	if err := IndexBackendRefs(mgr.GetFieldIndexer()); err != nil {
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

// maxRetryDelay caps the per-APIToken backoff. The default (1000 s) would leave tokens
// waiting many minutes after a backend outage of one minute; retries are cheap reads and
// one idempotent create, so a 30 s cap recovers quickly without hammering the backend.
const maxRetryDelay = 30 * time.Second

func tokenRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, maxRetryDelay),
		// Overall: at most 50 retries per second (burst 300) across all APITokens.
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
}

// tokensForBackend maps a backend to the APITokens that refer to it.
func (r *APITokenReconciler) tokensForBackend(ctx context.Context, o client.Object) []reconcile.Request {
	var key BackendKey
	switch o.(type) {
	case *tokensv1alpha1.StatusBackend:
		key = BackendKey{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: o.GetNamespace(), Name: o.GetName()}
	case *tokensv1alpha1.ClusterStatusBackend:
		key = BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: o.GetName()}
	default:
		return nil
	}
	var list tokensv1alpha1.APITokenList
	if err := r.List(ctx, &list, client.MatchingFields{backendRefIndex: key.String()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// tokensInNamespace maps a namespace to its APITokens.
func (r *APITokenReconciler) tokensInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
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
func (r *APITokenReconciler) tokensForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
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
