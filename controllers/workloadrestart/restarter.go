// Package workloadrestart rolls out the workloads that opted in (--restart-workloads) when a
// named APIToken's token changes, and tells the APIToken reconciler which of them have not
// finished rolling out its current token (retirement waits for them).
package workloadrestart

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

// This file rolls out the workloads that opted in (--restart-workloads). Consent lives on the
// workload: a Deployment, StatefulSet or DaemonSet annotated
// tokens.statusops.dev/restart-on-rotate: "<APIToken names>", so nobody who can only create
// APITokens can restart anything.
//
// Idempotent by construction: the workload remembers, in a metadata label that causes no
// rollout, the hash of the named APITokens' token ids it last rolled out for. Opting in
// records the hash and rolls nothing, nor does a named APIToken's first token (only a
// change of a token id that was set is a rotation); an operator restart or a re-sync finds the hashes equal
// and patches nothing; tokens rotating together within the debounce cause one rollout, which
// sets the pod-template annotation tokens-hash and the remembered hash in one patch.

// labelObservedTokensHash is the workload's memory of the last hash it rolled out for. A label,
// not an annotation: the API server bumps a Deployment's generation on any change of its
// annotations (they are copied to its ReplicaSets), not of its labels. Versions before kept it
// in an annotation of the same key, which is still read (observedTokensHash).
const labelObservedTokensHash = "tokens.statusops.dev/observed-tokens-hash"

// Restart defaults (--restart-debounce, --max-concurrent-restarts, --restart-slot-timeout).
// A rollout holds its slot for ten minutes at most: a Deployment's default
// progressDeadlineSeconds (600), after which Kubernetes itself calls its rollout failed.
// StatefulSets and DaemonSets have no such deadline; the bound frees their slots.
const (
	DefaultRestartDebounce       = 10 * time.Second
	DefaultMaxConcurrentRestarts = 10
	DefaultRestartSlotTimeout    = 10 * time.Minute
)

// reasonProgressDeadlineExceeded is the Deployment controller's reason on Progressing=False
// when a rollout made no progress within progressDeadlineSeconds.
const reasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"

// Kind is one of the three kinds that can opt in.
type Kind struct {
	Name string
	New  func() client.Object
	// RolledOut: the rollout of the current pod template is complete.
	RolledOut func(client.Object) bool
	// Paused: the workload cannot roll out until a person resumes it.
	Paused func(client.Object) bool
	// failed: the workload's controller gave up on the rollout of the current pod template.
	failed func(client.Object) bool
}

var Kinds = []Kind{
	{Name: "Deployment", New: func() client.Object { return &appsv1.Deployment{} },
		RolledOut: func(o client.Object) bool {
			d := o.(*appsv1.Deployment)
			r := replicasOf(d.Spec.Replicas)
			return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == r && d.Status.AvailableReplicas == r && d.Status.Replicas == r
		},
		Paused: func(o client.Object) bool { return o.(*appsv1.Deployment).Spec.Paused },
		failed: func(o client.Object) bool {
			d := o.(*appsv1.Deployment)
			if d.Status.ObservedGeneration < d.Generation {
				return false // the condition is about an older template
			}
			for _, c := range d.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == reasonProgressDeadlineExceeded {
					return true
				}
			}
			return false
		}},
	{Name: "StatefulSet", New: func() client.Object { return &appsv1.StatefulSet{} },
		RolledOut: func(o client.Object) bool {
			s := o.(*appsv1.StatefulSet)
			r := replicasOf(s.Spec.Replicas)
			return s.Status.ObservedGeneration >= s.Generation && s.Status.UpdatedReplicas == r && s.Status.AvailableReplicas == r && s.Status.Replicas == r
		},
		Paused: func(client.Object) bool { return false },
		failed: func(client.Object) bool { return false }},
	{Name: "DaemonSet", New: func() client.Object { return &appsv1.DaemonSet{} },
		RolledOut: func(o client.Object) bool {
			d := o.(*appsv1.DaemonSet)
			n := d.Status.DesiredNumberScheduled
			return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedNumberScheduled == n && d.Status.NumberAvailable == n
		},
		Paused: func(client.Object) bool { return false },
		failed: func(client.Object) bool { return false }},
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func workloadMetadata(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(kind))
	return m
}

// namedTokens parses the consent annotation.
func NamedTokens(annotations map[string]string) []string {
	var out []string
	for _, n := range strings.Split(annotations[tokensv1alpha1.AnnotationRestartOnRotate], ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// tokensHash is the hash of the named APITokens' current token ids (sorted), and the
// latest issue time among them (the debounce counts from it).
func TokensHash(tokens map[string]*tokensv1alpha1.APIToken, names []string) (string, time.Time) {
	var last time.Time
	for _, n := range names {
		if t := tokens[n]; t != nil && t.Status.IssuedAt != nil && t.Status.IssuedAt.After(last) {
			last = t.Status.IssuedAt.Time
		}
	}
	return idsHash(tokenIDs(tokens, names), names), last
}

// tokenIDs maps each name to its APIToken's current token id: "" when it has none yet or
// does not exist.
func tokenIDs(tokens map[string]*tokensv1alpha1.APIToken, names []string) map[string]string {
	ids := make(map[string]string, len(names))
	for _, n := range names {
		if t := tokens[n]; t != nil {
			ids[n] = t.Status.TokenID
		}
	}
	return ids
}

// idsHash is the hash workloads remember. Every version computes it so: changing it would roll
// out every opted-in workload once on upgrade.
func idsHash(ids map[string]string, names []string) string {
	sum := sha256.New()
	for _, n := range names {
		fmt.Fprintf(sum, "%s=%s\n", n, ids[n])
	}
	return hex.EncodeToString(sum.Sum(nil))[:32]
}

// maxFirstIssueNames bounds firstIssuesOnly's search to 2^10 hashes. A workload naming more
// issued APITokens than that is rolled out on any change of the hash, as before.
const maxFirstIssueNames = 10

// firstIssuesOnly reports whether recorded, a hash the workload holds, is the hash of the
// named tokens' current ids with some of them blank: those APITokens had no token then and
// have been issued their first since. That is no rotation (Pods waiting for the Secret start
// by themselves), so it rolls nothing out; only a change of an id that was set does. The hash
// keeps no ids, so every subset of the names with an id is tried.
func FirstIssuesOnly(recorded string, tokens map[string]*tokensv1alpha1.APIToken, names []string) bool {
	ids := tokenIDs(tokens, names)
	var issued []string
	for _, n := range names {
		if ids[n] != "" {
			issued = append(issued, n)
		}
	}
	if len(issued) > maxFirstIssueNames {
		return false
	}
	for subset := 1; subset < 1<<len(issued); subset++ {
		blanked := maps.Clone(ids)
		for i, n := range issued {
			if subset&(1<<i) != 0 {
				blanked[n] = ""
			}
		}
		if idsHash(blanked, names) == recorded {
			return true
		}
	}
	return false
}

// WorkloadRestarter rolls out opted-in workloads of one kind.
type WorkloadRestarter struct {
	client.Client
	// APIReader reads workloads whole (the cache holds only their metadata).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     func() time.Time
	Debounce  time.Duration
	Limit     *RolloutLimit
	kind      Kind
}

// RolloutLimit caps the rollouts in flight: cluster-wide (--max-concurrent-restarts) and per
// namespace, so that one tenant's rollouts that never complete cannot hold every slot. A slot
// is held from the patch that starts a rollout until the rollout completes or fails, its
// workload or consent goes, or the hold bound (--restart-slot-timeout) passes, whichever
// comes first. Slots live in memory: an operator restart frees them all.
type RolloutLimit struct {
	mu           sync.Mutex
	max          int
	perNamespace int
	maxHold      time.Duration
	clock        func() time.Time
	inFlight     map[string]rolloutSlot
}

type rolloutSlot struct {
	namespace string
	since     time.Time
}

// NewRolloutLimit returns a cap of capacity concurrent rollouts, of which one namespace may
// hold its share (namespaceShare), each for maxHold at most as clock tells.
func NewRolloutLimit(capacity int, maxHold time.Duration, clock func() time.Time) *RolloutLimit {
	return &RolloutLimit{max: capacity, perNamespace: namespaceShare(capacity), maxHold: maxHold, clock: clock, inFlight: map[string]rolloutSlot{}}
}

// namespaceShare is how many of the capacity slots one namespace may hold: a quarter, rounded
// up, at least one. So at least four namespaces roll out at once whatever the others do, and
// the one knob (--max-concurrent-restarts) still sets both: a single-tenant cluster that wants
// more in parallel raises the cap.
func namespaceShare(capacity int) int {
	return max(1, (capacity+3)/4)
}

// take gives key, a workload of namespace ns, a slot; true when key holds one. A workload that
// already holds one keeps it, with its first start time: rotating again extends no bound.
func (l *RolloutLimit) take(key, ns string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	if _, ok := l.inFlight[key]; ok {
		return true
	}
	inNamespace := 0
	for _, s := range l.inFlight {
		if s.namespace == ns {
			inNamespace++
		}
	}
	if len(l.inFlight) >= l.max || inNamespace >= l.perNamespace {
		return false
	}
	l.inFlight[key] = rolloutSlot{namespace: ns, since: l.clock()}
	return true
}

// holds reports whether key holds a slot that has not passed the bound.
func (l *RolloutLimit) holds(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	_, ok := l.inFlight[key]
	return ok
}

// done gives key's slot back; giving back a slot not held does nothing.
func (l *RolloutLimit) done(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inFlight, key)
}

// expire gives back the slots held for maxHold or longer. Called with mu held.
func (l *RolloutLimit) expire() {
	now := l.clock()
	for k, s := range l.inFlight {
		if now.Sub(s.since) >= l.maxHold {
			delete(l.inFlight, k)
		}
	}
}

// The RBAC for this (apps deployments, statefulsets, daemonsets: get, list, watch, patch) is
// not a kubebuilder marker on purpose: it exists only when --restart-workloads is on, in
// config/rbac/restart_workloads_role.yaml and the chart's restartWorkloads.enabled.

// Reconcile brings one opted-in workload's remembered hash up to date, rolling it out when a
// named token changed and the debounce has passed.
func (w *WorkloadRestarter) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := w.kind.Name + "/" + req.String()
	m := workloadMetadata(w.kind.Name)
	if err := w.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			w.Limit.done(key) // the workload is gone, and its rollout with it
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	names := NamedTokens(m.GetAnnotations())
	if len(names) == 0 || !m.GetDeletionTimestamp().IsZero() {
		w.Limit.done(key)
		return ctrl.Result{}, nil
	}
	tokens, err := w.namedAPITokens(ctx, m, names)
	if err != nil {
		return ctrl.Result{}, err
	}
	hash, lastChange := TokensHash(tokens, names)
	observed := observedTokensHash(m)
	switch {
	case observed == "":
		// Opting in rolls nothing out: only the workload's memory is set.
		return ctrl.Result{}, w.patch(ctx, m, hash, false)
	case observed == hash:
		return w.watchRollout(ctx, m, key)
	case FirstIssuesOnly(observed, tokens, names):
		// A first token is no rotation: only the workload's memory follows it.
		return ctrl.Result{}, w.patch(ctx, m, hash, false)
	}
	// IssuedAt has a second's precision: the change happened somewhere in that second, so
	// the debounce counts from its end (else a 1 s debounce could be no wait at all).
	if due := lastChange.Add(time.Second + w.Debounce); w.Clock().Before(due) {
		return ctrl.Result{RequeueAfter: due.Sub(w.Clock())}, nil
	}
	if !w.Limit.take(key, m.GetNamespace()) {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if err := w.patch(ctx, m, hash, true); err != nil {
		w.Limit.done(key)
		return ctrl.Result{}, err
	}
	w.rolloutEvents(m, names, tokens)
	return ctrl.Result{RequeueAfter: time.Second}, nil
}

// observedTokensHash is the workload's memory: the label, else the annotation an older version
// wrote. That annotation is left in place (removing it would bump a Deployment's generation
// once more); the label, written with the next rollout, takes precedence over it.
func observedTokensHash(m metav1.Object) string {
	if h := m.GetLabels()[labelObservedTokensHash]; h != "" {
		return h
	}
	return m.GetAnnotations()[labelObservedTokensHash]
}

// namedAPITokens reads the named APITokens; a missing one gets a Warning on the workload.
func (w *WorkloadRestarter) namedAPITokens(ctx context.Context, m *metav1.PartialObjectMetadata, names []string) (map[string]*tokensv1alpha1.APIToken, error) {
	out := map[string]*tokensv1alpha1.APIToken{}
	for _, n := range names {
		var t tokensv1alpha1.APIToken
		err := w.Get(ctx, types.NamespacedName{Namespace: m.GetNamespace(), Name: n}, &t)
		switch {
		case apierrors.IsNotFound(err):
			w.Recorder.Eventf(m, nil, corev1.EventTypeWarning, tokensv1alpha1.EventRestartTargetMissing, tokensv1alpha1.EventRestartTargetMissing,
				"Annotation %s names APIToken %q, which does not exist in namespace %s", tokensv1alpha1.AnnotationRestartOnRotate, n, m.GetNamespace())
		case err != nil:
			return nil, err
		default:
			out[n] = &t
		}
	}
	return out, nil
}

// patch sets the workload's memory of the hash and, for a rollout, the pod-template
// annotation, in one merge patch.
func (w *WorkloadRestarter) patch(ctx context.Context, m *metav1.PartialObjectMetadata, hash string, rollout bool) error {
	body := map[string]any{"metadata": map[string]any{"labels": map[string]string{labelObservedTokensHash: hash}}}
	if rollout {
		body["spec"] = map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{tokensv1alpha1.AnnotationTokensHash: hash}}}}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	obj := w.kind.New()
	obj.SetNamespace(m.GetNamespace())
	obj.SetName(m.GetName())
	if err := w.Patch(ctx, obj, client.RawPatch(types.MergePatchType, data)); err != nil {
		return fmt.Errorf("patching %s %s/%s: %w", w.kind.Name, m.GetNamespace(), m.GetName(), err)
	}
	logf.FromContext(ctx).V(1).Info("Patched workload", "kind", w.kind.Name, "rollout", rollout, "tokensHash", hash)
	return nil
}

// watchRollout gives the rollout slot back once the rollout is over: complete, failed or
// paused, or the workload gone. A workload that holds no slot is not read at all.
func (w *WorkloadRestarter) watchRollout(ctx context.Context, m *metav1.PartialObjectMetadata, key string) (ctrl.Result, error) {
	if !w.Limit.holds(key) {
		return ctrl.Result{}, nil
	}
	obj := w.kind.New()
	if err := w.APIReader.Get(ctx, client.ObjectKeyFromObject(m), obj); err != nil {
		if apierrors.IsNotFound(err) {
			w.Limit.done(key)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if w.kind.RolledOut(obj) || w.kind.Paused(obj) || w.kind.failed(obj) {
		w.Limit.done(key)
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
}

func (w *WorkloadRestarter) rolloutEvents(m *metav1.PartialObjectMetadata, names []string, tokens map[string]*tokensv1alpha1.APIToken) {
	note := fmt.Sprintf("Rolled out %s %s because the token of APIToken(s) %s changed", w.kind.Name, m.GetName(), strings.Join(names, ", "))
	w.Recorder.Eventf(m, nil, corev1.EventTypeNormal, tokensv1alpha1.EventRolloutTriggered, tokensv1alpha1.EventRolloutTriggered, "%s", note)
	for _, n := range names {
		if t := tokens[n]; t != nil {
			w.Recorder.Eventf(t, nil, corev1.EventTypeNormal, tokensv1alpha1.EventRolloutTriggered, tokensv1alpha1.EventRolloutTriggered, "%s", note)
			metrics.WorkloadRestarts.WithLabelValues(m.GetNamespace(), n, w.kind.Name, m.GetName()).Inc()
		}
	}
}

// SetupRestarters registers one restarter per workload kind: metadata-only watches of the
// workloads that carry the consent annotation, and of APITokens whose token changed.
func SetupRestarters(mgr ctrl.Manager, proto WorkloadRestarter) error {
	consenting := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetAnnotations()[tokensv1alpha1.AnnotationRestartOnRotate]
		return ok
	})
	for _, k := range Kinds {
		w := proto
		w.kind = k
		err := ctrl.NewControllerManagedBy(mgr).
			Named("restart-"+strings.ToLower(k.Name)).
			WatchesMetadata(k.New(), &handler.EnqueueRequestForObject{}, builder.WithPredicates(consenting)).
			Watches(&tokensv1alpha1.APIToken{}, handler.EnqueueRequestsFromMapFunc(w.workloadsNaming), builder.WithPredicates(tokenIDChanged())).
			Complete(&w)
		if err != nil {
			return err
		}
	}
	return nil
}

// workloadsNaming maps an APIToken to the workloads of this kind in its namespace that name it.
func (w *WorkloadRestarter) workloadsNaming(ctx context.Context, o client.Object) []reconcile.Request {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(w.kind.Name + "List"))
	if err := w.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, m := range list.Items {
		if slices.Contains(NamedTokens(m.GetAnnotations()), o.GetName()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return reqs
}

// tokenIDChanged passes APIToken events that change which token is current.
func tokenIDChanged() predicate.Predicate {
	id := func(o client.Object) string {
		if t, ok := o.(*tokensv1alpha1.APIToken); ok {
			return t.Status.TokenID
		}
		return ""
	}
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return id(e.ObjectOld) != id(e.ObjectNew) }}
}

// templateHash is the pod-template annotation the operator set on a workload.
func TemplateHash(o client.Object) string {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return w.Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]
	case *appsv1.StatefulSet:
		return w.Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]
	case *appsv1.DaemonSet:
		return w.Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]
	}
	return ""
}
