package apitoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// issue issues a token and puts it in the Secret, replacing the current one if any.
//
// Crash and error safety. The operator may be killed, or a step may fail, between any two
// of these steps:
//
//  1. owner = UID/cluster/serial, serial = the ledger's issueSerial+1, and the spec. Until
//     step 4 nothing in the ledger that they depend on changes, so every retry asks for the
//     same.
//  2. The driver's create for that owner and spec (the one backend write; the native driver
//     sends the key UID/serial/request-hash, Zabbix names the token after the owner). Killed
//     after it: the next pass asks again and the driver replays the same token and value (or
//     finds it and generates its value again). If the replay is gone (backend restarted, 24 h
//     passed), a second token is created; the first is an orphan owned by UID, which step 5
//     deactivates. A reply that is not what was asked (permission, owner, id) is refused: the
//     token is deactivated if it is ours, and the APIToken fails with BackendMismatch instead
//     of asking again.
//  3. Write the Secret. Refused or failed: the new token is in no Secret, so it is recorded
//     in the ledger's pendingDeactivation and deactivated before the pass returns, and the
//     serial advances so that the next try cannot replay a deactivated token. If the status
//     write of that pass fails too, the advance is lost: the next pass asks for the same
//     serial, the driver answers that it is spent (its token is deactivated), and the serial
//     advances then.
//  4. The ledger takes the new token; the replaced one moves to pendingDeactivation (or
//     drains, with an overlap).
//  5. Deactivate every active token of this APIToken other than the new one and the draining
//     ones: the listed ones, and any orphan of an interrupted pass. Entries leave the list
//     only when their backend confirms. Failed: the list stays in the ledger and the next
//     pass finishes it.
//  6. Report applies the ledger to status, and the deferred status patch writes it. Killed
//     before it: the Secret holds a token status does not name, so the next pass issues
//     again with the same owner and spec and replays steps 2-5.
//
// So whatever the kill point or failure, the end state is one active token owned by UID, the
// one named in status and held in the Secret, plus only the tokens status lists as draining
// or pending deactivation.
func (r *Reconciler) issue(ctx context.Context, in policy.Inputs, d policy.Decision, cl backend.Driver, out *policy.Outcome) {
	tok, l := in.Token, out.Ledger
	spec := tokenSpecFor(tok, in.Now)
	newRef := backendkey.Ref(in.Backend.Key, in.Backend.UID)
	created, serial, err := r.create(ctx, in, cl, spec, l)
	if err != nil {
		r.createFailed(ctx, in, cl, serial, err, out)
		return
	}
	if !created.Replayed {
		l.RecordIssue(in.Now, r.issuanceWindow())
	}
	if problem := r.checkCreated(tok, in.Backend.Key, spec, created); problem != "" {
		r.refuseCreated(ctx, in, serial, created, newRef, problem, out)
		return
	}
	logf.FromContext(ctx).V(1).Info("Issued backend token", "tokenID", created.ID, "serial", serial, "replayed", created.Replayed, "why", d.Why)
	if r.afterCreate != nil {
		if out.Err = r.afterCreate(ctx, tok); out.Err != nil {
			return
		}
	}
	if !r.storeIssued(ctx, in, created, newRef, serial, d.Overlap, out) {
		return
	}
	if r.finishSweep(ctx, in, out) {
		out.Err = r.retireOldSecret(ctx, tok, previousSecretOf(in))
	}
}

// create asks the driver for a token of the next serial (step 2).
func (r *Reconciler) create(ctx context.Context, in policy.Inputs, cl backend.Driver, spec backend.TokenSpec, l *policy.Ledger) (*backend.CreatedToken, int64, error) {
	tok := in.Token
	serial := l.View().IssueSerial + 1
	created, err := cl.Create(ctx, backend.Owner{UID: string(tok.UID), Cluster: r.ClusterIdentity, Serial: serial}, spec)
	// A create that failed without an answer may have been made: its replay goes first in
	// line for a slot. A refusal by the in-flight cap never reached the backend, so it
	// changes nothing (it is how the replay itself is refused while the burst runs).
	if !registry.IsBackendBusy(err) {
		r.expectations.createUncertain(tok.UID, err != nil && backend.IsTransient(err))
	}
	return created, serial, err
}

// storeIssued writes the new token to the Secret and makes it the current one in the
// ledger (steps 3 and 4); false when the Secret could not be written.
func (r *Reconciler) storeIssued(ctx context.Context, in policy.Inputs, created *backend.CreatedToken, ref tokensv1alpha1.BackendStatusReference, serial int64, overlap bool, out *policy.Outcome) bool {
	tok, l := in.Token, out.Ledger
	value := []byte(created.Value.Reveal())
	issued := policy.SecretToken{ID: created.ID, Permission: policy.APIPermission(created.Permission), ExpiresAt: policy.TimePtr(created.ExpiresAt)}
	if err := r.writeSecret(ctx, in, issued, value); err != nil {
		l.AdvanceSerial(serial)
		l.AddPending(created.ID, ref)
		r.sweepPending(ctx, tok, l, l.CurrentKey(tok), l.View().TokenID)
		r.secretWriteFailed(in, err, out)
		return false
	}
	prev := l.PredecessorOf(tok, in.Now)
	previous := l.View().TokenID
	l.Issue(tok, policy.Issued{Token: created.Token, Hint: policy.TokenHint(string(value)), Backend: ref, Serial: serial})
	if previous != "" && previous != created.ID {
		l.Supersede(prev, overlap)
	}
	if policy.RevocationRequested(tok) != "" {
		l.RetireAll("a revocation was requested (the token may have leaked)")
	}
	r.expectations.expect(tok.UID, serial, created.ID, secretcache.HashToken(value), in.Now)
	out.Issued, out.Previous = true, previous
	return true
}

// previousSecretOf is the Secret that held the token this pass replaced.
func previousSecretOf(in policy.Inputs) string { return in.Token.Status.SecretName }

// tokenSpecFor is the token the spec asks for at now. With the owner (UID, cluster, serial)
// it is all a driver's create depends on, so a retry of the same serial asks for the same.
func tokenSpecFor(tok *tokensv1alpha1.APIToken, now time.Time) backend.TokenSpec {
	return backend.TokenSpec{
		Name:        tok.Namespace + "/" + tok.Name,
		Permission:  policy.BackendPermission(tok.Spec.Permission),
		Description: tok.Spec.Description,
		ExpiresAt:   policy.RequestedBackendExpiry(tok, now),
	}
}

// createFailed handles a failed create. A 2xx whose body cannot be read may have created a
// token no Secret holds: every active token of this APIToken but the current one goes.
func (r *Reconciler) createFailed(ctx context.Context, in policy.Inputs, cl backend.Driver, serial int64, err error, out *policy.Outcome) {
	tok, l := in.Token, out.Ledger
	if backend.IsSpent(err) {
		// An earlier pass made this serial's token and deactivated it (its Secret write
		// failed), and the status write that recorded the advanced serial failed too. The
		// serial advances now, and the retry asks for the next one.
		l.AdvanceSerial(serial)
		logf.FromContext(ctx).Info("The token of this serial was deactivated by an earlier pass; retrying with the next serial", "serial", serial)
		out.Failure = progressing(tokensv1alpha1.ReasonBackendError, "An earlier attempt's token was deactivated after its Secret could not be written. Retrying with a new token.")
		out.Err = fmt.Errorf("issuing a token: %w", err)
		return
	}
	var be *backend.Error
	if errors.As(err, &be) && be.Kind == backend.KindProtocol && be.StatusCode/100 == 2 {
		l.AdvanceSerial(serial)
		keep := ""
		if r.sameAccount(ctx, in.Backend.Key, l.CurrentKey(tok)) {
			keep = l.View().TokenID
		}
		if _, serr := r.sweepBackend(ctx, tok, l, cl, sweepScope{key: in.Backend.Key, keep: keep}); serr != nil {
			logf.FromContext(ctx).Info("Deactivating a token from an unreadable create reply failed; retrying", "error", serr.Error())
			r.backendFailed(in, "cleaning up after an unreadable create reply", serr, out)
			return
		}
	}
	r.backendFailed(in, "issuing a token", err, out)
}

// checkCreated says what is wrong with a create reply, or "". Nothing of the reply but the
// known enum values is quoted: a hostile backend chooses every byte of it.
func (r *Reconciler) checkCreated(tok *tokensv1alpha1.APIToken, key backendkey.Key, req backend.TokenSpec, got *backend.CreatedToken) string {
	switch {
	case got.Owner.UID != string(tok.UID):
		return "the backend answered with a token that does not carry this APIToken's UID as its owner"
	case got.Permission != req.Permission:
		if got.Permission == backend.PermissionReadOnly || got.Permission == backend.PermissionFullAccess {
			return fmt.Sprintf("the backend issued a %s token although %s was requested", got.Permission, req.Permission)
		}
		return fmt.Sprintf("the backend issued a token without a known permission although %s was requested", req.Permission)
	case got.Status != backend.StatusActive:
		return "the backend answered with an inactive token"
	case r.heldByAnother(tok, key, got.ID):
		return fmt.Sprintf("the backend answered with token id %s, which another APIToken already holds", got.ID)
	}
	return ""
}

// heldByAnother: another APIToken's status names the same token id on the same backend.
func (r *Reconciler) heldByAnother(tok *tokensv1alpha1.APIToken, key backendkey.Key, id string) bool {
	return r.holders.heldByOther(key, id, tok.UID)
}

// refuseCreated handles a reply that is not what was asked: the token is deactivated when it
// is ours (never when it names another owner), the serial advances so no retry replays it,
// and the APIToken fails until its spec changes.
func (r *Reconciler) refuseCreated(ctx context.Context, in policy.Inputs, serial int64, created *backend.CreatedToken, ref tokensv1alpha1.BackendStatusReference, problem string, out *policy.Outcome) {
	tok, l := in.Token, out.Ledger
	l.AdvanceSerial(serial)
	if created.Owner.UID == string(tok.UID) && !r.heldByAnother(tok, in.Backend.Key, created.ID) {
		l.AddPending(created.ID, ref)
	}
	res := r.sweepPending(ctx, tok, l, l.CurrentKey(tok), l.View().TokenID)
	msg := fmt.Sprintf("The backend's answer to creating a token was refused: %s. Any token of this APIToken it made was deactivated. Check the backend (%s), then change the APIToken's spec to try again.", problem, in.Backend.Key)
	out.Failure = stalled(tokensv1alpha1.ReasonBackendMismatch, msg, tokensv1alpha1.EventBackendMismatch)
	out.Err = res.err
	if out.Err == nil {
		out.Err = terminal(errors.New(problem))
	}
}
