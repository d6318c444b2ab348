package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// gather reads everything decide needs.
func (r *APITokenReconciler) gather(ctx context.Context, tok *tokensv1alpha1.APIToken) (tokenInputs, error) {
	in := tokenInputs{now: r.Clock(), token: tok}
	be, err := r.gatherBackend(ctx, tok)
	if err != nil {
		return in, err
	}
	in.backend = be
	if r.Inventory != nil {
		in.inventory = r.Inventory.Snapshot(currentBackendKey(tok))
	}
	in.extraActive = extraActiveTokens(tok, in.inventory)
	in.predecessorUse = r.predecessorUse(tok)
	if err := r.gatherPredecessors(ctx, tok, &in); err != nil {
		return in, err
	}
	if in.rolloutsPending, err = r.pendingRollouts(ctx, tok); err != nil {
		return in, err
	}
	in.budget = r.IssuanceBudget
	in.issuesInWindow, in.windowEnds = issuesWithin(tok.Status.RecentIssues, in.now, r.issuanceWindow())
	if err := r.gatherSecret(ctx, tok, &in); err != nil {
		return in, err
	}
	if adoptionPending(tok) {
		if err := r.gatherAdoption(ctx, tok, &in); err != nil {
			return in, err
		}
	}
	if revokedOnBackend(in) {
		if in.revokedConfirmed, err = r.confirmRevoked(ctx, tok); err != nil {
			return in, err
		}
	}
	return in, nil
}

// gatherSecret finds the Secret named spec.secretName and whether this APIToken owns it.
func (r *APITokenReconciler) gatherSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, in *tokenInputs) error {
	name := types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}
	var secret corev1.Secret
	err := r.Get(ctx, name, &secret)
	// The cache's copy may have its standard labels and annotations folded away; this copy
	// gets them back, so what follows compares the Secret as the API server has it.
	UnfoldSecretMetadata(&secret)
	switch {
	case err == nil && !metav1.IsControlledBy(&secret, tok):
		in.secretConflict = true
		return nil
	case err == nil && MetadataTrimmed(&secret):
		// The cache cut a tenant's oversized metadata: compare against the live Secret.
		var live corev1.Secret
		if err := r.APIReader.Get(ctx, name, &live); err != nil {
			return fmt.Errorf("reading Secret %s: %w", name, err)
		}
		in.secret = &live
		return nil
	case err == nil:
		in.secret = &secret
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
		in.secretConflict = true
		return nil
	}
	// Ours, but someone removed our label: read it whole.
	var live corev1.Secret
	if err := r.APIReader.Get(ctx, name, &live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	in.secret = &live
	return nil
}

// secretOwnerMeta returns the metadata of a Secret the managed cache does not hold, or nil.
func (r *APITokenReconciler) secretOwnerMeta(ctx context.Context, name types.NamespacedName) (metav1.Object, error) {
	if r.SecretMetadata != nil {
		m := secretMetadata()
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
func (r *APITokenReconciler) confirmRevoked(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, error) {
	cl, _, ok := r.Registry.Get(currentBackendKey(tok))
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

// extraActiveTokens are the inventory's active tokens of this APIToken that status names
// neither as current nor as pending deactivation.
func extraActiveTokens(tok *tokensv1alpha1.APIToken, snap *inventorySnapshot) []string {
	if snap == nil {
		return nil
	}
	known := map[string]bool{tok.Status.TokenID: true}
	for _, p := range tok.Status.PreviousTokens {
		known[p.TokenID] = true
	}
	for _, p := range tok.Status.PendingDeactivation {
		known[p.TokenID] = true
	}
	var out []string
	for _, id := range snap.byExternalID[string(tok.UID)] {
		if !known[id] {
			out = append(out, id)
		}
	}
	return out
}

// predecessorUse reads the draining predecessors' last use from their backends' inventories.
func (r *APITokenReconciler) predecessorUse(tok *tokensv1alpha1.APIToken) map[string]*time.Time {
	if r.Inventory == nil || len(tok.Status.PreviousTokens) == 0 {
		return nil
	}
	out := map[string]*time.Time{}
	for _, p := range tok.Status.PreviousTokens {
		if t, ok := lastUsedFromInventory(r.Inventory.Snapshot(keyOfRef(p.Backend)), p.TokenID); ok && t != nil {
			out[p.TokenID] = t
		}
	}
	return out
}

// gatherPredecessors reads what holds of the draining predecessors beyond their last use:
// which their backends' inventories no longer list active, which are FullAccess (status, or
// the inventory for entries written before status kept the permission), and whether the
// backends holding them and the current token still allow FullAccess in this namespace.
func (r *APITokenReconciler) gatherPredecessors(ctx context.Context, tok *tokensv1alpha1.APIToken, in *tokenInputs) error {
	keys := []BackendKey{currentBackendKey(tok)}
	for _, p := range tok.Status.PreviousTokens {
		k := keyOfRef(p.Backend)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		var snap *inventorySnapshot
		if r.Inventory != nil {
			snap = r.Inventory.Snapshot(k)
		}
		if predecessorGone(p, snap) {
			in.predecessorsInactive = append(in.predecessorsInactive, p.TokenID)
		}
		if p.Permission == "" && snap != nil {
			if e, ok := snap.active[p.TokenID]; ok {
				if in.predecessorPermission == nil {
					in.predecessorPermission = map[string]tokensv1alpha1.Permission{}
				}
				in.predecessorPermission[p.TokenID] = apiPermission(e.permission)
			}
		}
	}
	in.fullAccessAllowedOn = map[BackendKey]bool{}
	for _, k := range keys {
		if k == in.backend.key {
			in.fullAccessAllowedOn[k] = in.backend.fullAccessAllowed || !in.backend.found
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
		in.fullAccessAllowedOn[k] = !o.found || pol.fullAccessAllowed
	}
	return nil
}

// predecessorGone: the inventory of its backend, taken well after it was superseded, does not
// list it active (deactivated by hand, expired, or by another object on the same account).
func predecessorGone(p tokensv1alpha1.PreviousToken, snap *inventorySnapshot) bool {
	if snap == nil || snap.takenAt.Sub(p.SupersededAt.Time) < revocationGrace {
		return false
	}
	_, active := snap.active[p.TokenID]
	return !active
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
	caBundle        []byte
	conditions      []metav1.Condition
	// allowed selects the namespaces that may use the backend (ClusterStatusBackend only).
	allowed    *metav1.LabelSelector
	fullAccess *metav1.LabelSelector
	// retain and retainFullAccess select the namespaces that may retain tokens.
	retain, retainFullAccess *metav1.LabelSelector
}

// namespacePolicy is what a backend's selectors allow one namespace.
type namespacePolicy struct {
	allowed, fullAccessAllowed, retainAllowed, retainFullAccessAllowed bool
}

// policyFor applies the backend's selectors to the namespace's labels. An unset selector
// allows, except retainFullAccess: a retained FullAccess token is a permanent credential no
// policy reaches any more, so the default keeps FullAccess tokens from being retained.
func (o backendObject) policyFor(nsLabels map[string]string) namespacePolicy {
	return namespacePolicy{
		allowed:                 selects(o.allowed, nsLabels),
		fullAccessAllowed:       selects(o.fullAccess, nsLabels),
		retainAllowed:           selects(o.retain, nsLabels),
		retainFullAccessAllowed: o.retainFullAccess != nil && selects(o.retainFullAccess, nsLabels),
	}
}

// selectorsSet: the backend restricts namespaces in some way, so their labels must be read.
func (o backendObject) selectorsSet() bool {
	return o.allowed != nil || o.fullAccess != nil || o.retain != nil || o.retainFullAccess != nil
}

// readBackend reads the backend object of key from the cache, without a copy: what it keeps
// (conditions, selectors, the CA bundle) is only read.
func (r *APITokenReconciler) readBackend(ctx context.Context, key BackendKey) (backendObject, error) {
	var o backendObject
	var err error
	switch key.Kind {
	case tokensv1alpha1.BackendKindStatusBackend:
		var obj tokensv1alpha1.StatusBackend
		if err = r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, &obj, client.UnsafeDisableDeepCopy); err == nil {
			o = backendObject{found: true, deleting: !obj.DeletionTimestamp.IsZero(), uid: string(obj.UID), url: obj.Spec.URL, caBundle: obj.Spec.CABundle,
				conditions: obj.Status.Conditions, fullAccess: obj.Spec.FullAccessNamespaces,
				retain: obj.Spec.RetainNamespaces, retainFullAccess: obj.Spec.RetainFullAccessNamespaces}
		}
	default:
		var obj tokensv1alpha1.ClusterStatusBackend
		if err = r.Get(ctx, types.NamespacedName{Name: key.Name}, &obj, client.UnsafeDisableDeepCopy); err == nil {
			o = backendObject{found: true, deleting: !obj.DeletionTimestamp.IsZero(), uid: string(obj.UID), url: obj.Spec.URL, caBundle: obj.Spec.CABundle,
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
func (r *APITokenReconciler) lookupBackend(ctx context.Context, key BackendKey) (bool, string, error) {
	o, err := r.readBackend(ctx, key)
	return o.found, o.uid, err
}

// gatherBackend finds the referenced backend, whether it is Ready and registered, and
// whether its policies allow the APIToken's namespace.
func (r *APITokenReconciler) gatherBackend(ctx context.Context, tok *tokensv1alpha1.APIToken) (backendState, error) {
	be := backendState{key: backendKeyFor(tok), namespacePolicy: namespacePolicy{allowed: true, fullAccessAllowed: true, retainAllowed: true}}
	if be.key.Kind == tokensv1alpha1.BackendKindStatusBackend && r.NamespacedBackendsDisabled {
		be.disabled = true
		return be, nil
	}
	o, err := r.readBackend(ctx, be.key)
	if err != nil || !o.found {
		return be, err
	}
	be.found, be.deleting, be.uid, be.caBundle = true, o.deleting, o.uid, o.caBundle
	if be.namespacePolicy, err = r.namespacePolicyOf(ctx, o, tok.Namespace); err != nil {
		return be, err
	}
	ready := meta.FindStatusCondition(o.conditions, tokensv1alpha1.ConditionReady)
	_, url, registered := r.Registry.Get(be.key)
	switch {
	case registered:
		// The registry holds only backends this process has just checked successfully; it
		// is fresher than the cached status.
		be.ready, be.url = true, url
	case ready == nil:
		be.message = fmt.Sprintf("%s has not been checked yet; the token is issued once it is Ready.", be.key)
	case ready.Status != metav1.ConditionTrue:
		be.message = fmt.Sprintf("%s is not Ready (%s: %s); the token is issued once it is Ready.", be.key, ready.Reason, ready.Message)
	default:
		be.message = fmt.Sprintf("Waiting for the operator to check %s.", be.key)
	}
	return be, nil
}

// namespacePolicyOf is what the backend object allows the namespace; its labels are read only
// when a selector is set.
func (r *APITokenReconciler) namespacePolicyOf(ctx context.Context, o backendObject, namespace string) (namespacePolicy, error) {
	if !o.selectorsSet() {
		return o.policyFor(nil), nil
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return namespacePolicy{}, fmt.Errorf("reading namespace %s: %w", namespace, err)
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
	return s.Matches(labelsSet(l))
}
