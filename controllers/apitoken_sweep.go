package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file holds how the operator deactivates backend tokens. Two rules make it safe
// against a hostile backend or tenant and against partial passes:
//
//   - Ownership is checked on the object deactivated: a token is deactivated only when the
//     backend that holds it lists it, active, with this APIToken's UID as external_id. A
//     token id in status (which a tenant's own backend may have chosen) is never enough.
//   - Nothing is forgotten: a token to retire is first recorded in status.pendingDeactivation
//     together with its backend, and leaves that list only when its backend no longer lists
//     it active. A failed or interrupted pass leaves the list in status for the next one.

// backendRefFor is the status form of a backend key; uid is the live object's UID.
func backendRefFor(key BackendKey, uid string) tokensv1alpha1.BackendStatusReference {
	return tokensv1alpha1.BackendStatusReference{Kind: key.Kind, Name: key.Name, Namespace: key.Namespace, UID: uid}
}

// keyOfRef is the registry key of a recorded backend.
func keyOfRef(ref tokensv1alpha1.BackendStatusReference) BackendKey {
	return BackendKey{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
}

// currentBackendKey is the backend that holds the current token: the recorded one, or for
// objects written before status.backend existed, the one the spec names.
func currentBackendKey(tok *tokensv1alpha1.APIToken) BackendKey {
	if tok.Status.Backend != nil {
		return keyOfRef(*tok.Status.Backend)
	}
	return backendKeyFor(tok)
}

// addPendingDeactivation records a token to retire; recording it twice is a no-op.
func addPendingDeactivation(tok *tokensv1alpha1.APIToken, id string, ref tokensv1alpha1.BackendStatusReference) {
	if id == "" {
		return
	}
	for _, p := range tok.Status.PendingDeactivation {
		if p.TokenID == id && keyOfRef(p.Backend) == keyOfRef(ref) {
			return
		}
	}
	tok.Status.PendingDeactivation = append(tok.Status.PendingDeactivation, tokensv1alpha1.RetiringToken{TokenID: id, Backend: ref})
}

// sweepScope says which tokens a sweep deactivates on one backend.
type sweepScope struct {
	key BackendKey
	// keep is the one token id left active (the current token), or "" to deactivate all.
	keep string
	// explicit is a token deactivated even when the backend no longer lists it active (an
	// expired token gets its deactivated_at), once its own object shows it is ours.
	explicit string
}

// sweepBackend deactivates every active token of this APIToken on one backend except
// scope.keep, and returns the ids it saw active and deactivated. The list call is the
// ownership check: the backend's own object must carry this APIToken's UID.
func (r *APITokenReconciler) sweepBackend(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Driver, scope sweepScope) ([]string, error) {
	uid := string(tok.UID)
	list, err := cl.List(ctx, backend.ListOptions{Owner: uid, Status: backend.StatusActive})
	if err != nil {
		return nil, err
	}
	// Draining predecessors stay until they are retired (moved to pendingDeactivation),
	// wherever they are listed: two backend objects may name one account, and then this list
	// holds the tokens recorded under the other object too.
	keep := map[string]bool{scope.keep: scope.keep != ""}
	for _, p := range tok.Status.PreviousTokens {
		if r.sameAccount(ctx, keyOfRef(p.Backend), scope.key) {
			keep[p.TokenID] = true
		}
	}
	// A token labelled with another cluster's identity is that cluster's, even when its
	// external_id is this APIToken's UID (a cluster restored from another's backup): only
	// a token status names (pending deactivation, or explicit) is deactivated then.
	named := map[string]bool{scope.explicit: scope.explicit != ""}
	for _, p := range tok.Status.PendingDeactivation {
		if keyOfRef(p.Backend) == scope.key {
			named[p.TokenID] = true
		}
	}
	var done []string
	if id := scope.explicit; id != "" && !slices.ContainsFunc(list, func(t backend.Token) bool { return t.ID == id }) {
		if err := r.deactivateIfOwned(ctx, tok, cl, id); err != nil {
			return nil, err
		}
	}
	for _, t := range list {
		if keep[t.ID] || t.Owner.UID != uid || t.Status != backend.StatusActive {
			continue
		}
		if labelledForOtherCluster(t.Owner.Cluster, r.ClusterIdentity) && !named[t.ID] {
			continue
		}
		if err := r.deactivateOwned(ctx, tok, cl, t.ID); err != nil {
			return done, err
		}
		done = append(done, t.ID)
		logf.FromContext(ctx).V(1).Info("Deactivated backend token", "tokenID", t.ID, "backend", scope.key.String())
	}
	return done, nil
}

// deactivateIfOwned deactivates a token that is no longer listed active when its own object
// carries this APIToken's UID and has not been deactivated yet.
func (r *APITokenReconciler) deactivateIfOwned(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Driver, id string) error {
	t, err := cl.Get(ctx, id)
	switch {
	case backend.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case t.Owner.UID != string(tok.UID) || t.DeactivatedAt != nil:
		return nil
	}
	_, err = cl.Deactivate(ctx, id)
	if backend.IsNotFound(err) {
		return nil
	}
	return err
}

// deactivateOwned deactivates a token the backend just listed as this APIToken's. A 404 is
// not taken on trust (a wrongly escaped id also gives 404): the token must be gone from the
// backend's active list too.
func (r *APITokenReconciler) deactivateOwned(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Driver, id string) error {
	_, err := cl.Deactivate(ctx, id)
	if err == nil || !backend.IsNotFound(err) {
		return err
	}
	list, lerr := cl.List(ctx, backend.ListOptions{Owner: string(tok.UID), Status: backend.StatusActive})
	if lerr != nil {
		return lerr
	}
	for _, t := range list {
		if t.ID == id {
			return fmt.Errorf("the backend answered 404 to deactivating token %s but still lists it as active", id)
		}
	}
	return nil
}

// sweepResult is what a sweep left undone.
type sweepResult struct {
	// waiting names a backend that is not Ready, so its tokens wait.
	waiting []BackendKey
	// err is the first backend error.
	err error
}

// sweepPending works through status.pendingDeactivation and, on the current backend, every
// active token of this APIToken other than keep. Entries leave the list only once their
// backend no longer lists them active. Entries whose backend object is gone are dropped with
// a Warning Event: nothing can reach them any more.
func (r *APITokenReconciler) sweepPending(ctx context.Context, tok *tokensv1alpha1.APIToken, current BackendKey, keep string) sweepResult {
	return r.sweepPendingExplicit(ctx, tok, current, keep, "")
}

// sweepPendingExplicit is sweepPending that also deactivates explicit on the current
// backend, listed active or not.
func (r *APITokenReconciler) sweepPendingExplicit(ctx context.Context, tok *tokensv1alpha1.APIToken, current BackendKey, keep, explicit string) sweepResult {
	var res sweepResult
	scopes := []sweepScope{{key: current, keep: keep, explicit: explicit}}
	for _, p := range tok.Status.PendingDeactivation {
		k := keyOfRef(p.Backend)
		if !slices.ContainsFunc(scopes, func(s sweepScope) bool { return s.key == k }) {
			keepOn := ""
			if r.sameAccount(ctx, k, current) {
				// The current token is listed there too: another object of its account.
				keepOn = keep
			}
			scopes = append(scopes, sweepScope{key: k, keep: keepOn})
		}
	}
	for _, s := range scopes {
		cl, _, ok := r.Registry.Get(s.key)
		if !ok {
			if r.backendGone(ctx, s.key) {
				r.dropPendingOn(tok, s.key, "its backend "+s.key.String()+" no longer exists")
				continue
			}
			if s.key != current || hasPendingOn(tok, s.key) {
				res.waiting = append(res.waiting, s.key)
			}
			continue
		}
		if _, err := r.sweepBackend(ctx, tok, cl, s); err != nil {
			if res.err == nil {
				res.err = fmt.Errorf("deactivating tokens on %s: %w", s.key, err)
			}
			r.reportOutageOn(s.key, err)
			continue
		}
		removePendingOn(tok, s.key, keep)
	}
	return res
}

// sameAccount: two backend keys name the same backend account, so that each one's list holds
// the other's tokens: the same key, or two objects with the same URL. (A tenant's own backend
// at another URL chooses its token ids: a token it names is never kept on another account.)
func (r *APITokenReconciler) sameAccount(ctx context.Context, a, b BackendKey) bool {
	if a == b {
		return true
	}
	ua, ub := r.backendURL(ctx, a), r.backendURL(ctx, b)
	return ua != "" && ua == ub
}

// backendURL is the URL the registry checked for key, or else its object's spec.url; "" when
// neither is known.
func (r *APITokenReconciler) backendURL(ctx context.Context, key BackendKey) string {
	if _, url, ok := r.Registry.Get(key); ok {
		return strings.TrimRight(url, "/")
	}
	if o, err := r.readBackend(ctx, key); err == nil && o.found {
		return strings.TrimRight(o.url, "/")
	}
	return ""
}

func hasPendingOn(tok *tokensv1alpha1.APIToken, key BackendKey) bool {
	return slices.ContainsFunc(tok.Status.PendingDeactivation, func(p tokensv1alpha1.RetiringToken) bool { return keyOfRef(p.Backend) == key })
}

// removePendingOn drops the entries of one backend after a successful sweep of it (the
// sweep deactivated every active token of this APIToken there except keep).
func removePendingOn(tok *tokensv1alpha1.APIToken, key BackendKey, keep string) {
	tok.Status.PendingDeactivation = slices.DeleteFunc(tok.Status.PendingDeactivation, func(p tokensv1alpha1.RetiringToken) bool {
		return keyOfRef(p.Backend) == key && p.TokenID != keep
	})
	if len(tok.Status.PendingDeactivation) == 0 {
		tok.Status.PendingDeactivation = nil
	}
}

// dropPendingOn gives up on the entries of a backend that no longer exists.
func (r *APITokenReconciler) dropPendingOn(tok *tokensv1alpha1.APIToken, key BackendKey, why string) {
	for _, p := range tok.Status.PendingDeactivation {
		if keyOfRef(p.Backend) == key {
			r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventDeactivationAbandoned,
				fmt.Sprintf("Token %s could not be deactivated because %s; it may still be active on that service until it expires", p.TokenID, why))
		}
	}
	removePendingOn(tok, key, "")
}

// backendGone reports whether the backend object of key no longer exists (a read error
// counts as "still there", so nothing is given up on by mistake).
func (r *APITokenReconciler) backendGone(ctx context.Context, key BackendKey) bool {
	found, _, err := r.lookupBackend(ctx, key)
	return err == nil && !found
}

// pendingMessage says what a pass left to deactivate, for the Ready condition.
func pendingMessage(tok *tokensv1alpha1.APIToken, res sweepResult) string {
	ids := make([]string, 0, len(tok.Status.PendingDeactivation))
	for _, p := range tok.Status.PendingDeactivation {
		ids = append(ids, p.TokenID+" on "+keyOfRef(p.Backend).String())
	}
	msg := fmt.Sprintf("The token in Secret %s is active, but older tokens still have to be deactivated: %v.", tok.Status.SecretName, ids)
	switch {
	case res.err != nil:
		msg += " The backend failed (" + DescribeBackendError(currentBackendKey(tok), res.err) + "); retrying with backoff."
	case len(res.waiting) > 0:
		msg += fmt.Sprintf(" Waiting for %v to become Ready.", res.waiting)
	}
	return msg
}
