package apitoken

import (
	"context"
	"fmt"
	"slices"
	"strings"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/registry"
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

// sweepScope says which tokens a sweep deactivates on one backend.
type sweepScope struct {
	key backendkey.Key
	// keep is the one token id left active (the current token), or "" to deactivate all.
	keep string
	// explicit is a token deactivated even when the backend no longer lists it active (an
	// expired token gets its deactivated_at), once its own object shows it is ours.
	explicit string
}

// sweepBackend deactivates every active token of this APIToken on one backend except
// scope.keep, and returns the ids it saw active and deactivated. The list call is the
// ownership check: the backend's own object must carry this APIToken's UID.
func (r *Reconciler) sweepBackend(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger, cl backend.Driver, scope sweepScope) ([]string, error) {
	uid := string(tok.UID)
	list, err := cl.List(ctx, backend.ListOptions{Owner: uid, Status: backend.StatusActive})
	if err != nil {
		return nil, err
	}
	// Draining predecessors stay until they are retired (moved to pendingDeactivation),
	// wherever they are listed: two backend objects may name one account, and then this list
	// holds the tokens recorded under the other object too.
	keep := map[string]bool{scope.keep: scope.keep != ""}
	for _, p := range l.View().PreviousTokens {
		if r.sameAccount(ctx, backendkey.OfRef(p.Backend), scope.key) {
			keep[p.TokenID] = true
		}
	}
	// A token labelled with another cluster's identity is that cluster's, even when its
	// external_id is this APIToken's UID (a cluster restored from another's backup): only
	// a token status names (pending deactivation, or explicit) is deactivated then.
	named := map[string]bool{scope.explicit: scope.explicit != ""}
	for _, p := range l.View().PendingDeactivation {
		if backendkey.OfRef(p.Backend) == scope.key {
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
		if inventory.LabelledForOtherCluster(t.Owner.Cluster, r.ClusterIdentity) && !named[t.ID] {
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
func (r *Reconciler) deactivateIfOwned(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Driver, id string) error {
	t, err := cl.Get(ctx, id)
	switch {
	case backend.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case t.Owner.UID != string(tok.UID) || t.DeactivatedAt != nil:
		return nil
	}
	got, err := cl.Deactivate(ctx, id)
	if backend.IsNotFound(err) {
		return nil
	}
	return stillActive(id, got, err)
}

// stillActive turns a deactivation the backend answered with the token still active into an
// error, so the token stays listed and the deactivation is tried again: a success that did
// not happen is never believed (a backend that answers 200 but did not write).
func stillActive(id string, got *backend.Token, err error) error {
	if err == nil && got != nil && got.Status == backend.StatusActive {
		return fmt.Errorf("the backend answered the deactivation of token %s with the token still active", id)
	}
	return err
}

// deactivateOwned deactivates a token the backend just listed as this APIToken's. A 404 is
// not taken on trust (a wrongly escaped id also gives 404): the token must be gone from the
// backend's active list too.
func (r *Reconciler) deactivateOwned(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Driver, id string) error {
	got, err := cl.Deactivate(ctx, id)
	if err == nil || !backend.IsNotFound(err) {
		return stillActive(id, got, err)
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
	waiting []backendkey.Key
	// err is the first backend error.
	err error
}

// sweepPending works through the ledger's pendingDeactivation and, on the current backend,
// every active token of this APIToken other than keep. Entries leave the list only once their
// backend no longer lists them active. Entries whose backend object is gone are dropped with
// a Warning Event: nothing can reach them any more.
func (r *Reconciler) sweepPending(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger, current backendkey.Key, keep string) sweepResult {
	return r.sweepPendingExplicit(ctx, tok, l, current, keep, "")
}

// sweepPendingExplicit is sweepPending that also deactivates explicit on the current
// backend, listed active or not.
func (r *Reconciler) sweepPendingExplicit(ctx context.Context, tok *tokensv1alpha1.APIToken, l *policy.Ledger, current backendkey.Key, keep, explicit string) sweepResult {
	var res sweepResult
	for _, s := range r.sweepScopes(ctx, l, current, keep, explicit) {
		cl, _, ok := r.Registry.Get(s.key)
		if !ok {
			if r.backendGone(ctx, s.key) {
				l.DropPendingOn(s.key, "its backend "+s.key.String()+" no longer exists")
				continue
			}
			if s.key != current || l.HasPendingOn(s.key) {
				res.waiting = append(res.waiting, s.key)
			}
			continue
		}
		if _, err := r.sweepBackend(ctx, tok, l, cl, s); err != nil {
			if res.err == nil {
				res.err = fmt.Errorf("deactivating tokens on %s: %w", s.key, err)
			}
			r.reportOutageOn(s.key, err)
			continue
		}
		l.RemovePendingOn(s.key, keep)
	}
	return res
}

// sweepScopes are the backends a sweep visits: the current one, and each holding a token
// pending deactivation. The current token is kept wherever its account is listed.
func (r *Reconciler) sweepScopes(ctx context.Context, l *policy.Ledger, current backendkey.Key, keep, explicit string) []sweepScope {
	scopes := []sweepScope{{key: current, keep: keep, explicit: explicit}}
	for _, p := range l.View().PendingDeactivation {
		k := backendkey.OfRef(p.Backend)
		if !slices.ContainsFunc(scopes, func(s sweepScope) bool { return s.key == k }) {
			keepOn := ""
			if r.sameAccount(ctx, k, current) {
				// The current token is listed there too: another object of its account.
				keepOn = keep
			}
			scopes = append(scopes, sweepScope{key: k, keep: keepOn})
		}
	}
	return scopes
}

// sameAccount: two backend keys name the same backend account, so that each one's list holds
// the other's tokens: the same key, or two objects of the same driver at the same URL. (A
// tenant's own backend at another URL chooses its token ids: a token it names is never kept
// on another account.)
func (r *Reconciler) sameAccount(ctx context.Context, a, b backendkey.Key) bool {
	if a == b {
		return true
	}
	ua, ub := r.accountOf(ctx, a), r.accountOf(ctx, b)
	return ua != "" && ua == ub
}

// accountOf is the driver and URL of the backend object of key, as its spec writes them; ""
// when it is not found.
func (r *Reconciler) accountOf(ctx context.Context, key backendkey.Key) string {
	o, err := r.readBackend(ctx, key)
	if err != nil || !o.found {
		return ""
	}
	return o.driver + " " + strings.TrimRight(o.url, "/")
}

// backendGone reports whether the backend object of key no longer exists (a read error
// counts as "still there", so nothing is given up on by mistake).
func (r *Reconciler) backendGone(ctx context.Context, key backendkey.Key) bool {
	found, _, err := r.lookupBackend(ctx, key)
	return err == nil && !found
}

// pendingMessage says what a pass left to deactivate, for the Ready condition.
func pendingMessage(tok *tokensv1alpha1.APIToken, l *policy.Ledger, res sweepResult) string {
	st := l.View()
	ids := make([]string, 0, len(st.PendingDeactivation))
	for _, p := range st.PendingDeactivation {
		ids = append(ids, p.TokenID+" on "+backendkey.OfRef(p.Backend).String())
	}
	msg := fmt.Sprintf("The token in Secret %s is active, but older tokens still have to be deactivated: %v.", st.SecretName, ids)
	switch {
	case res.err != nil:
		msg += " The backend failed (" + registry.DescribeBackendError(l.CurrentKey(tok), res.err) + "); retrying with backoff."
	case len(res.waiting) > 0:
		msg += fmt.Sprintf(" Waiting for %v to become Ready.", res.waiting)
	}
	return msg
}

// finishSweep deactivates what the ledger lists (and any unlisted orphan on the current
// backend); it reports whether nothing is left. While something is, the APIToken is not
// Ready: the token in the Secret works, but an older one is still alive.
func (r *Reconciler) finishSweep(ctx context.Context, in policy.Inputs, out *policy.Outcome) bool {
	l := out.Ledger
	res := r.sweepPending(ctx, in.Token, l, l.CurrentKey(in.Token), l.View().TokenID)
	if len(l.View().PendingDeactivation) == 0 && res.err == nil {
		return true
	}
	if registry.IsBackendBusy(res.err) {
		out.Busy, out.Err = true, errBusyPass
		return false
	}
	out.Pending = &policy.ReportSpec{Kind: policy.ReportProgressing, Reason: tokensv1alpha1.ReasonDeactivationPending, Message: pendingMessage(in.Token, l, res)}
	switch {
	case res.err == nil:
		// Waiting for a backend to become Ready: its registration wakes this APIToken.
		out.RetryAt = in.Now.Add(maxRetryDelay)
	case backend.RetryAfter(res.err) > 0:
		out.RetryAt = in.Now.Add(backend.RetryAfter(res.err))
	default:
		out.Err = res.err
	}
	return false
}

// deactivateEverything carries out spec.active=false, the expiry, or a policy that no longer
// allows the token: every token of this APIToken is deactivated, with no overlap. The status
// and event Decide chose are reported only once every deactivation is confirmed.
func (r *Reconciler) deactivateEverything(ctx context.Context, in policy.Inputs, out *policy.Outcome) {
	l := out.Ledger
	l.RetireAll("the current token is being deactivated too (no overlap)")
	l.RetireCurrent(in.Token)
	current := l.View().TokenID
	res := r.sweepPendingExplicit(ctx, in.Token, l, l.CurrentKey(in.Token), "", current)
	if res.err != nil {
		r.backendFailed(in, "deactivating the token", res.err, out)
		return
	}
	if len(l.View().PendingDeactivation) > 0 {
		out.Pending = &policy.ReportSpec{Kind: policy.ReportProgressing, Reason: tokensv1alpha1.ReasonBackendNotReady, Message: pendingMessage(in.Token, l, res)}
	}
}
