package apitoken

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/controllers/workloadrestart"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// gather reads everything Decide needs, once: the APIToken snapshot, its Secret, its
// backend with its registration and policies, the inventory's facts, the pending rollouts,
// the issuance window and what the review reads. It writes nothing and emits nothing.
func (r *Reconciler) gather(ctx context.Context, tok *tokensv1alpha1.APIToken) (policy.Inputs, error) {
	in := policy.Inputs{Now: r.Clock(), Token: tok}
	be, err := r.gatherBackend(ctx, tok)
	if err != nil {
		return in, err
	}
	in.Backend = be
	var snap *inventory.Snapshot
	if r.Inventory != nil {
		snap = r.Inventory.Snapshot(backendkey.Current(tok))
	}
	in.Inventory = inventoryFacts(tok, snap)
	in.PredecessorUse = r.predecessorUse(tok)
	if err := r.gatherPredecessors(ctx, tok, &in); err != nil {
		return in, err
	}
	if in.RolloutsPending, in.RolloutsPaused, err = r.pendingRollouts(ctx, tok); err != nil {
		return in, err
	}
	in.Budget = r.IssuanceBudget
	in.IssuesInWindow, in.WindowEnds = issuesWithin(tok.Status.RecentIssues, in.Now, r.issuanceWindow())
	if err := r.gatherSecret(ctx, tok, &in); err != nil {
		return in, err
	}
	if policy.AdoptionPending(tok) {
		if err := r.gatherAdoption(ctx, tok, &in); err != nil {
			return in, err
		}
	}
	if inventory.RevokedOnBackend(tok, snap) {
		if in.RevokedConfirmed, err = r.confirmRevoked(ctx, tok); err != nil {
			return in, err
		}
	}
	in.Review = r.reviewFacts(tok)
	return in, nil
}

// inventoryFacts is what the inventory of the current token's backend says of it.
func inventoryFacts(tok *tokensv1alpha1.APIToken, snap *inventory.Snapshot) policy.InventoryFacts {
	f := policy.InventoryFacts{Taken: snap != nil, ExtraActive: inventory.ExtraActive(tok, snap)}
	f.Current, f.Listed = snap.Token(tok.Status.TokenID)
	return f
}

// reviewFacts is what the least-privilege review needs of the registry.
func (r *Reconciler) reviewFacts(tok *tokensv1alpha1.APIToken) policy.ReviewFacts {
	key := backendkey.Current(tok)
	_, _, registered := r.Registry.Get(key)
	return policy.ReviewFacts{Window: r.reviewWindow(), Registered: registered,
		Usage: registered && r.Registry.Features(key).Has(backend.CapabilityUsage)}
}

// gatherSecret finds the Secret named spec.secretName and whether this APIToken owns it.
func (r *Reconciler) gatherSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, in *policy.Inputs) error {
	name := types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}
	var secret corev1.Secret
	err := r.Get(ctx, name, &secret)
	// The cache's copy may have its standard labels and annotations folded away; this copy
	// gets them back, so what follows compares the Secret as the API server has it.
	secretcache.UnfoldSecretMetadata(&secret)
	switch {
	case err == nil && !metav1.IsControlledBy(&secret, tok):
		in.SecretConflict = true
		return nil
	case err == nil && secretcache.MetadataTrimmed(&secret):
		// The cache cut a tenant's oversized metadata: compare against the live Secret.
		var live corev1.Secret
		if err := r.APIReader.Get(ctx, name, &live); err != nil {
			return fmt.Errorf("reading Secret %s: %w", name, err)
		}
		in.Secret = &live
		return nil
	case err == nil:
		in.Secret = &secret
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	// The cache holds only managed Secrets. Whether a foreign one is in the way is told by
	// the metadata-only cache of the other Secrets (no API call per new token); without it, by
	// the API server.
	owner, err := r.secretOwnerMeta(ctx, name)
	if err != nil || owner == nil {
		// Absent. Should the metadata cache lag, the create fails with AlreadyExists and the
		// next pass sees the Secret.
		return err
	}
	if !metav1.IsControlledBy(owner, tok) {
		in.SecretConflict = true
		return nil
	}
	// Ours, but someone removed our label: read it whole.
	var live corev1.Secret
	if err := r.APIReader.Get(ctx, name, &live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	in.Secret = &live
	return nil
}

// secretOwnerMeta returns the metadata of a Secret the managed cache does not hold, or nil.
func (r *Reconciler) secretOwnerMeta(ctx context.Context, name types.NamespacedName) (metav1.Object, error) {
	if r.SecretMetadata != nil {
		m := secretcache.Metadata()
		if err := r.SecretMetadata.Get(ctx, name, m); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("reading Secret %s metadata: %w", name, err)
		}
		return m, nil
	}
	var live corev1.Secret
	if err := r.APIReader.Get(ctx, name, &live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return &live, nil
}

// confirmRevoked asks the backend about a current token its inventory did not list: the
// list walk can miss a token (pages shift while tokens change), so only the token's own
// object decides.
func (r *Reconciler) confirmRevoked(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, error) {
	cl, _, ok := r.Registry.Get(backendkey.Current(tok))
	if !ok {
		return false, nil
	}
	t, err := cl.Get(ctx, tok.Status.TokenID)
	switch {
	case backend.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("confirming token %s on the backend: %w", tok.Status.TokenID, err)
	}
	return t.Status != backend.StatusActive || t.Owner.UID != string(tok.UID), nil
}

// predecessorUse reads the draining predecessors' last use from their backends' inventories.
func (r *Reconciler) predecessorUse(tok *tokensv1alpha1.APIToken) map[string]*time.Time {
	if r.Inventory == nil || len(tok.Status.PreviousTokens) == 0 {
		return nil
	}
	out := map[string]*time.Time{}
	for _, p := range tok.Status.PreviousTokens {
		if t, ok := inventory.LastUsed(r.Inventory.Snapshot(backendkey.OfRef(p.Backend)), p.TokenID); ok && t != nil {
			out[p.TokenID] = t
		}
	}
	return out
}

// gatherPredecessors reads what holds of the draining predecessors beyond their last use:
// which their backends' inventories no longer list active, which are FullAccess (status, or
// the inventory for entries written before status kept the permission), and whether the
// backends holding them and the current token still allow FullAccess in this namespace.
func (r *Reconciler) gatherPredecessors(ctx context.Context, tok *tokensv1alpha1.APIToken, in *policy.Inputs) error {
	keys := []backendkey.Key{backendkey.Current(tok)}
	for _, p := range tok.Status.PreviousTokens {
		k := backendkey.OfRef(p.Backend)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		var snap *inventory.Snapshot
		if r.Inventory != nil {
			snap = r.Inventory.Snapshot(k)
		}
		if inventory.PredecessorGone(p, snap) {
			in.PredecessorsInactive = append(in.PredecessorsInactive, p.TokenID)
		}
		if p.Permission == "" && snap != nil {
			if t, ok := snap.Token(p.TokenID); ok {
				if in.PredecessorPermission == nil {
					in.PredecessorPermission = map[string]tokensv1alpha1.Permission{}
				}
				in.PredecessorPermission[p.TokenID] = policy.APIPermission(t.Permission)
			}
		}
	}
	in.FullAccessAllowedOn = map[backendkey.Key]bool{}
	for _, k := range keys {
		if k == in.Backend.Key {
			in.FullAccessAllowedOn[k] = in.Backend.FullAccessAllowed || !in.Backend.Found
			continue
		}
		o, err := r.readBackend(ctx, k)
		if err != nil {
			return err
		}
		pol, err := r.namespacePolicyOf(ctx, o, tok.Namespace)
		if err != nil {
			return err
		}
		// A backend object that is gone allows nothing to be deactivated any more either.
		in.FullAccessAllowedOn[k] = !o.found || pol.FullAccessAllowed
	}
	return nil
}

// issuesWithin counts the creations within window before now and says when the oldest of
// them leaves the window.
func issuesWithin(issues []metav1.Time, now time.Time, window time.Duration) (int, time.Time) {
	n := 0
	var oldest time.Time
	for _, t := range issues {
		if now.Sub(t.Time) < window {
			n++
			if oldest.IsZero() || t.Time.Before(oldest) {
				oldest = t.Time
			}
		}
	}
	if n == 0 {
		return 0, time.Time{}
	}
	return n, oldest.Add(window)
}

// backendObject is what the backend object of a key says.
type backendObject struct {
	found, deleting bool
	uid             string
	url             string
	// driver is the driver spec.provider names ("" for the native protocol).
	driver     string
	caBundle   []byte
	conditions []metav1.Condition
	// allowed selects the namespaces that may use the backend (ClusterStatusBackend only).
	allowed    *metav1.LabelSelector
	fullAccess *metav1.LabelSelector
	// retain and retainFullAccess select the namespaces that may retain tokens.
	retain, retainFullAccess *metav1.LabelSelector
}

// policyFor applies the backend's selectors to the namespace's labels. An unset selector
// allows, except retainFullAccess: a retained FullAccess token is a permanent credential no
// policy reaches any more, so the default keeps FullAccess tokens from being retained.
func (o backendObject) policyFor(nsLabels map[string]string) policy.NamespacePolicy {
	return policy.NamespacePolicy{
		Allowed:                 selects(o.allowed, nsLabels),
		FullAccessAllowed:       selects(o.fullAccess, nsLabels),
		RetainAllowed:           selects(o.retain, nsLabels),
		RetainFullAccessAllowed: o.retainFullAccess != nil && selects(o.retainFullAccess, nsLabels),
	}
}

// selectorsSet: the backend restricts namespaces in some way, so their labels must be read.
func (o backendObject) selectorsSet() bool {
	return o.allowed != nil || o.fullAccess != nil || o.retain != nil || o.retainFullAccess != nil
}

// readBackend reads the backend object of key from the cache, without a copy: what it keeps
// (conditions, selectors, the CA bundle) is only read.
func (r *Reconciler) readBackend(ctx context.Context, key backendkey.Key) (backendObject, error) {
	var o backendObject
	var err error
	switch key.Kind {
	case tokensv1alpha1.BackendKindStatusBackend:
		var obj tokensv1alpha1.StatusBackend
		if err = r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, &obj, client.UnsafeDisableDeepCopy); err == nil {
			o = backendObject{found: true, deleting: !obj.DeletionTimestamp.IsZero(), uid: string(obj.UID), url: obj.Spec.URL, driver: driverOf(obj.Spec.Provider), caBundle: obj.Spec.CABundle,
				conditions: obj.Status.Conditions, fullAccess: obj.Spec.FullAccessNamespaces,
				retain: obj.Spec.RetainNamespaces, retainFullAccess: obj.Spec.RetainFullAccessNamespaces}
		}
	default:
		var obj tokensv1alpha1.ClusterStatusBackend
		if err = r.Get(ctx, types.NamespacedName{Name: key.Name}, &obj, client.UnsafeDisableDeepCopy); err == nil {
			o = backendObject{found: true, deleting: !obj.DeletionTimestamp.IsZero(), uid: string(obj.UID), url: obj.Spec.URL, driver: driverOf(obj.Spec.Provider), caBundle: obj.Spec.CABundle,
				conditions: obj.Status.Conditions, allowed: obj.Spec.AllowedNamespaces, fullAccess: obj.Spec.FullAccessNamespaces,
				retain: obj.Spec.RetainNamespaces, retainFullAccess: obj.Spec.RetainFullAccessNamespaces}
		}
	}
	if apierrors.IsNotFound(err) {
		return backendObject{}, nil
	}
	return o, err
}

// lookupBackend reports whether the backend object of key exists.
func (r *Reconciler) lookupBackend(ctx context.Context, key backendkey.Key) (bool, string, error) {
	o, err := r.readBackend(ctx, key)
	return o.found, o.uid, err
}

// gatherBackend finds the referenced backend, whether it is Ready and registered, and
// whether its policies allow the APIToken's namespace.
func (r *Reconciler) gatherBackend(ctx context.Context, tok *tokensv1alpha1.APIToken) (policy.BackendState, error) {
	be := policy.BackendState{Key: backendkey.For(tok), NamespacePolicy: policy.NamespacePolicy{Allowed: true, FullAccessAllowed: true, RetainAllowed: true}}
	if be.Key.Kind == tokensv1alpha1.BackendKindStatusBackend && r.NamespacedBackendsDisabled {
		be.Disabled = true
		return be, nil
	}
	o, err := r.readBackend(ctx, be.Key)
	if err != nil || !o.found {
		return be, err
	}
	be.Found, be.Deleting, be.UID, be.CABundle = true, o.deleting, o.uid, o.caBundle
	if be.NamespacePolicy, err = r.namespacePolicyOf(ctx, o, tok.Namespace); err != nil {
		return be, err
	}
	ready := meta.FindStatusCondition(o.conditions, tokensv1alpha1.ConditionReady)
	_, url, registered := r.Registry.Get(be.Key)
	switch {
	case registered:
		// The registry holds only backends this process has just checked successfully; it
		// is fresher than the cached status.
		be.Ready, be.URL = true, url
	case ready == nil:
		be.Message = fmt.Sprintf("%s has not been checked yet; the token is issued once it is Ready.", be.Key)
	case ready.Status != metav1.ConditionTrue:
		be.Message = fmt.Sprintf("%s is not Ready (%s: %s); the token is issued once it is Ready.", be.Key, ready.Reason, ready.Message)
	default:
		be.Message = fmt.Sprintf("Waiting for the operator to check %s.", be.Key)
	}
	return be, nil
}

// driverOf names the driver a provider asks for ("" for the native protocol).
func driverOf(p *tokensv1alpha1.BackendProvider) string {
	if p != nil && p.Zabbix != nil {
		return tokensv1alpha1.DriverZabbix
	}
	return ""
}

// namespacePolicyOf is what the backend object allows the namespace; its labels are read only
// when a selector is set.
func (r *Reconciler) namespacePolicyOf(ctx context.Context, o backendObject, namespace string) (policy.NamespacePolicy, error) {
	if !o.selectorsSet() {
		return o.policyFor(nil), nil
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return policy.NamespacePolicy{}, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	return o.policyFor(ns.Labels), nil
}

// selects: an unset selector selects everything; an invalid one selects nothing.
func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}

// pendingRollouts lists the opted-in workloads naming this APIToken that have not completed a
// rollout of its current token (retirement of a predecessor waits for them, bounded by the
// grace period), and which of them are paused (they cannot roll out by themselves; Report
// says so).
func (r *Reconciler) pendingRollouts(ctx context.Context, tok *tokensv1alpha1.APIToken) (pending, paused []string, err error) {
	if !r.RestartWorkloads || len(tok.Status.PreviousTokens) == 0 {
		return nil, nil, nil
	}
	for _, k := range workloadrestart.Kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(k.Name + "List"))
		if err := r.List(ctx, list, client.InNamespace(tok.Namespace)); err != nil {
			return nil, nil, fmt.Errorf("listing %ss: %w", k.Name, err)
		}
		for _, m := range list.Items {
			names := workloadrestart.NamedTokens(m.GetAnnotations())
			if !slices.Contains(names, tok.Name) {
				continue
			}
			done, isPaused, err := r.rolledOutFor(ctx, tok, k, &m, names)
			if err != nil {
				return nil, nil, err
			}
			if isPaused {
				paused = append(paused, k.Name+" "+m.Name)
			}
			if !done {
				pending = append(pending, k.Name+"/"+m.Name)
			}
		}
	}
	return pending, paused, nil
}

// rolledOutFor: the workload's pods run a template carrying the current hash (up to tokens
// issued for the first time since), and its rollout is complete; paused when it cannot roll
// out by itself.
func (r *Reconciler) rolledOutFor(ctx context.Context, tok *tokensv1alpha1.APIToken, k workloadrestart.Kind, m *metav1.PartialObjectMetadata, names []string) (done, paused bool, err error) {
	tokens := map[string]*tokensv1alpha1.APIToken{tok.Name: tok}
	for _, n := range names {
		if n == tok.Name {
			continue
		}
		var t tokensv1alpha1.APIToken
		if err := r.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: n}, &t); err == nil {
			tokens[n] = &t
		}
	}
	hash, _ := workloadrestart.TokensHash(tokens, names)
	obj := k.New()
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(m), obj); err != nil {
		return false, false, client.IgnoreNotFound(err)
	}
	if k.Paused(obj) {
		return false, true, nil
	}
	// A token issued for the first time since the rollout rolled nothing out, and needs none.
	th := workloadrestart.TemplateHash(obj)
	return (th == hash || workloadrestart.FirstIssuesOnly(th, tokens, names)) && k.RolledOut(obj), false, nil
}
