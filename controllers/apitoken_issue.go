package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// DefaultIssuanceBudget and DefaultIssuanceWindow bound how many tokens one APIToken can
// make the operator create: defence in depth against a backend that answers wrongly or a
// loop nobody foresaw. Normal use needs one create per spec change or rotation.
const (
	DefaultIssuanceBudget = 5
	DefaultIssuanceWindow = 10 * time.Minute
)

func (r *APITokenReconciler) issuanceWindow() time.Duration {
	if r.IssuanceWindow > 0 {
		return r.IssuanceWindow
	}
	return DefaultIssuanceWindow
}

// issueToken issues a token and puts it in the Secret, replacing the current one if any.
//
// Crash and error safety. The operator may be killed, or a step may fail, between any two
// of these steps:
//
//  1. owner = UID/cluster/serial, serial = status.issueSerial+1, and the spec. Until step 4
//     nothing in status that they depend on changes, so every retry asks for the same.
//  2. The driver's create for that owner and spec (the one backend write; the native driver
//     sends the key UID/serial/request-hash, Zabbix names the token after the owner). Killed
//     after it: the next pass asks again and the driver replays the same token and value (or
//     finds it and generates its value again). If the replay is gone (backend restarted, 24 h
//     passed), a second token is created; the first is an orphan owned by UID, which step 5
//     deactivates. A reply that is not what was asked (permission, owner, id) is refused: the
//     token is deactivated if it is ours, and the APIToken fails with BackendMismatch instead
//     of asking again.
//  3. Write the Secret. Refused or failed: the new token is in no Secret, so it is recorded
//     in status.pendingDeactivation and deactivated before the pass returns, and the serial
//     advances so that the next try cannot replay a deactivated token.
//  4. Status takes the new token; the replaced one moves to status.pendingDeactivation.
//  5. Deactivate every active token of this APIToken other than the new one: the listed
//     ones, and any orphan of an interrupted pass. Entries leave the list only when their
//     backend confirms. Failed: the list stays in status and the next pass finishes it.
//  6. The deferred status patch. Killed before it: the Secret holds a token status does not
//     name, so the next pass issues again with the same key and replays steps 2-5.
//
// So whatever the kill point or failure, the end state is one active token with
// external_id = UID, the one named in status and held in the Secret, plus only the tokens
// status lists as pending deactivation.
func (r *APITokenReconciler) issueToken(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, d decision, cl backend.Driver) (ctrl.Result, error) {
	serial := tok.Status.IssueSerial + 1
	owner := backend.Owner{UID: string(tok.UID), Cluster: r.ClusterIdentity, Serial: serial}
	spec := tokenSpecFor(tok, in.now)
	newRef := backendRefFor(in.backend.key, in.backend.uid)
	created, err := cl.Create(ctx, owner, spec)
	// A create that failed without an answer may have been made: its replay goes first in
	// line for a slot. A refusal by the in-flight cap never reached the backend, so it
	// changes nothing (it is how the replay itself is refused while the burst runs).
	if !IsBackendBusy(err) {
		r.expectations.createUncertain(tok.UID, err != nil && backend.IsTransient(err))
	}
	if err != nil {
		return r.createFailed(ctx, tok, in, cl, serial, err)
	}
	if !created.Replayed {
		tok.Status.RecentIssues = recordIssue(tok.Status.RecentIssues, in.now, r.issuanceWindow())
	}
	if problem := r.checkCreated(ctx, tok, in.backend.key, spec, created); problem != "" {
		return r.refuseCreated(ctx, tok, in, serial, created, newRef, problem)
	}
	logf.FromContext(ctx).V(1).Info("Issued backend token", "tokenID", created.ID, "serial", serial, "replayed", created.Replayed, "why", d.why)
	if r.afterCreate != nil {
		if err := r.afterCreate(ctx, tok); err != nil {
			return ctrl.Result{}, err
		}
	}
	value := []byte(created.Value.Reveal())
	issued := secretToken{id: created.ID, permission: apiPermission(created.Permission), expiresAt: timePtr(created.ExpiresAt)}
	if err := r.writeSecret(ctx, tok, in, issued, value); err != nil {
		tok.Status.IssueSerial = serial
		addPendingDeactivation(tok, created.ID, newRef)
		r.sweepPending(ctx, tok, currentBackendKey(tok), tok.Status.TokenID)
		return r.secretWriteFailed(tok, err)
	}
	prev := predecessorOf(tok, in.now)
	previous, previousSecret := tok.Status.TokenID, tok.Status.SecretName
	revoking := revocationRequested(tok) != ""
	adoptIssued(tok, created, string(value), newRef, serial)
	switch {
	case previous == "" || previous == created.ID:
	case d.overlap:
		r.addPredecessor(tok, prev)
	default:
		addPendingDeactivation(tok, previous, prev.Backend)
	}
	if revoking {
		r.retireAllPredecessors(tok, "a revocation was requested (the token may have leaked)")
	}
	r.expectations.expect(tok.UID, serial, created.ID, hashToken(value), in.now)
	if d.event != nil {
		r.event(tok, d.event.typ, d.event.reason, issuedNote(d.event, previous, tok.Status))
	}
	if res, err := r.finishSweep(ctx, tok); err != nil || !res.IsZero() {
		return res, err
	}
	if err := r.retireOldSecret(ctx, tok, previousSecret); err != nil {
		return ctrl.Result{}, err
	}
	next := nextDeadline(tok)
	if at := r.applyReview(tok, in); !at.IsZero() && (next.IsZero() || at.Before(next)) {
		next = at
	}
	d.report.apply(tok)
	return requeueAt(in.now, next), nil
}

// tokenSpecFor is the token the spec asks for at now. With the owner (UID, cluster, serial)
// it is all a driver's create depends on, so a retry of the same serial asks for the same.
func tokenSpecFor(tok *tokensv1alpha1.APIToken, now time.Time) backend.TokenSpec {
	return backend.TokenSpec{
		Name:        tok.Namespace + "/" + tok.Name,
		Permission:  backendPermission(tok.Spec.Permission),
		Description: tok.Spec.Description,
		ExpiresAt:   requestedBackendExpiry(tok, now),
	}
}

// adoptIssued makes the new token, now held by the Secret, the current one in status.
func adoptIssued(tok *tokensv1alpha1.APIToken, created *backend.CreatedToken, value string, ref tokensv1alpha1.BackendStatusReference, serial int64) {
	st := &tok.Status
	st.TokenID = created.ID
	st.TokenHint = tokenHint(value)
	st.Permission = apiPermission(created.Permission)
	issuedAt := metav1.NewTime(created.CreatedAt.UTC())
	st.IssuedAt = &issuedAt
	st.ExpiresAt = timePtr(created.ExpiresAt)
	st.RequestedExpiresAt = nil
	if tok.Spec.ExpiresAt != nil {
		t := metav1.NewTime(tok.Spec.ExpiresAt.UTC())
		st.RequestedExpiresAt = &t
	}
	st.LastUsedAt = nil
	st.IssueSerial = serial
	st.Backend = &ref
	st.SecretName = tok.SecretNameOrDefault()
	st.RenewalTime = renewalTimeFor(tok, st.ExpiresAt, created.CreatedAt, serial)
	if v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]; v != "" {
		st.RotationHandled = v
	}
	if v := tok.Annotations[tokensv1alpha1.AnnotationRevokeRequestedAt]; v != "" {
		st.RevocationHandled = v
	}
}

// predecessorOf describes the current token as a predecessor superseded at now: it drains
// for the grace period, never past its own backend expiry.
func predecessorOf(tok *tokensv1alpha1.APIToken, now time.Time) tokensv1alpha1.PreviousToken {
	st := tok.Status
	ref := backendRefFor(currentBackendKey(tok), "")
	if st.Backend != nil {
		ref = *st.Backend
	}
	retire := now.Add(gracePeriodOf(tok))
	if st.ExpiresAt != nil && st.ExpiresAt.Before(&metav1.Time{Time: retire}) {
		retire = st.ExpiresAt.Time
	}
	return tokensv1alpha1.PreviousToken{
		TokenID: st.TokenID, TokenHint: st.TokenHint, Permission: st.Permission, Backend: ref, LastUsedAt: st.LastUsedAt,
		SupersededAt: metav1.NewTime(now.UTC().Truncate(time.Second)), RetireAt: metav1.NewTime(retire.UTC().Truncate(time.Second)),
	}
}

// addPredecessor lets a replaced token drain; a third one retires the oldest at once.
func (r *APITokenReconciler) addPredecessor(tok *tokensv1alpha1.APIToken, p tokensv1alpha1.PreviousToken) {
	tok.Status.PreviousTokens = append(tok.Status.PreviousTokens, p)
	for len(tok.Status.PreviousTokens) > maxPreviousTokens {
		oldest := tok.Status.PreviousTokens[0]
		tok.Status.PreviousTokens = tok.Status.PreviousTokens[1:]
		addPendingDeactivation(tok, oldest.TokenID, oldest.Backend)
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because a newer replacement superseded it (at most %d drain at once)", oldest.TokenID, oldest.TokenHint, maxPreviousTokens))
	}
}

// retireAllPredecessors ends every overlap at once (deactivation, expiry, deletion, a
// policy, a revocation): no old value keeps working.
func (r *APITokenReconciler) retireAllPredecessors(tok *tokensv1alpha1.APIToken, why string) {
	for _, p := range tok.Status.PreviousTokens {
		addPendingDeactivation(tok, p.TokenID, p.Backend)
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because %s", p.TokenID, p.TokenHint, why))
	}
	tok.Status.PreviousTokens = nil
}

// finishSweep deactivates what status lists (and any unlisted orphan on the current
// backend). While something is left, the APIToken is not Ready: the token in the Secret
// works, but an older one is still alive.
func (r *APITokenReconciler) finishSweep(ctx context.Context, tok *tokensv1alpha1.APIToken) (ctrl.Result, error) {
	res := r.sweepPending(ctx, tok, currentBackendKey(tok), tok.Status.TokenID)
	if len(tok.Status.PendingDeactivation) == 0 && res.err == nil {
		return ctrl.Result{}, nil
	}
	if IsBackendBusy(res.err) {
		return ctrl.Result{}, errBusyPass
	}
	markProgressing(tok, tokensv1alpha1.ReasonDeactivationPending, pendingMessage(tok, res))
	if res.err == nil {
		// Waiting for a backend to become Ready: its registration wakes this APIToken.
		return ctrl.Result{RequeueAfter: maxRetryDelay}, nil
	}
	if ra := backend.RetryAfter(res.err); ra > 0 {
		return ctrl.Result{RequeueAfter: ra}, nil
	}
	return ctrl.Result{}, res.err
}

// createFailed handles a failed create. A 2xx whose body cannot be read may have created a
// token no Secret holds: every active token of this APIToken but the current one goes.
func (r *APITokenReconciler) createFailed(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, cl backend.Driver, serial int64, err error) (ctrl.Result, error) {
	var be *backend.Error
	if errors.As(err, &be) && be.Kind == backend.KindProtocol && be.StatusCode/100 == 2 {
		tok.Status.IssueSerial = serial
		keep := ""
		if r.sameAccount(ctx, in.backend.key, currentBackendKey(tok)) {
			keep = tok.Status.TokenID
		}
		if _, serr := r.sweepBackend(ctx, tok, cl, sweepScope{key: in.backend.key, keep: keep}); serr != nil {
			logf.FromContext(ctx).Info("Deactivating a token from an unreadable create reply failed; retrying", "error", serr.Error())
			return r.backendFailed(ctx, tok, "cleaning up after an unreadable create reply", serr)
		}
	}
	return r.backendFailed(ctx, tok, "issuing a token", err)
}

// checkCreated says what is wrong with a create reply, or "". Nothing of the reply but the
// known enum values is quoted: a hostile backend chooses every byte of it.
func (r *APITokenReconciler) checkCreated(ctx context.Context, tok *tokensv1alpha1.APIToken, key BackendKey, req backend.TokenSpec, got *backend.CreatedToken) string {
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
	case r.heldByAnother(ctx, tok, key, got.ID):
		return fmt.Sprintf("the backend answered with token id %s, which another APIToken already holds", got.ID)
	}
	return ""
}

// heldByAnother: another APIToken's status names the same token id on the same backend.
func (r *APITokenReconciler) heldByAnother(_ context.Context, tok *tokensv1alpha1.APIToken, key BackendKey, id string) bool {
	return r.holders.heldByOther(key, id, tok.UID)
}

// refuseCreated handles a reply that is not what was asked: the token is deactivated when it
// is ours (never when it names another owner), the serial advances so no retry replays it,
// and the APIToken fails until its spec changes.
func (r *APITokenReconciler) refuseCreated(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, serial int64, created *backend.CreatedToken, ref tokensv1alpha1.BackendStatusReference, problem string) (ctrl.Result, error) {
	tok.Status.IssueSerial = serial
	if created.Owner.UID == string(tok.UID) && !r.heldByAnother(ctx, tok, in.backend.key, created.ID) {
		addPendingDeactivation(tok, created.ID, ref)
	}
	res := r.sweepPending(ctx, tok, currentBackendKey(tok), tok.Status.TokenID)
	msg := fmt.Sprintf("The backend's answer to creating a token was refused: %s. Any token of this APIToken it made was deactivated. Check the backend (%s), then change the APIToken's spec to try again.", problem, in.backend.key)
	r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventBackendMismatch, msg)
	markStalled(tok, tokensv1alpha1.ReasonBackendMismatch, msg)
	if res.err != nil {
		return ctrl.Result{}, res.err
	}
	return ctrl.Result{}, reconcile.TerminalError(errors.New(problem))
}

// secretWriteFailed reports a Secret the API server did not take. A refusal (invalid, too
// large, forbidden, rejected by a webhook) needs a person and carries the server's message;
// anything else is retried with backoff.
func (r *APITokenReconciler) secretWriteFailed(tok *tokensv1alpha1.APIToken, err error) (ctrl.Result, error) {
	msg := fmt.Sprintf("Writing Secret %s failed: %v. The token issued for it was deactivated.", tok.SecretNameOrDefault(), err)
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) || apierrors.IsRequestEntityTooLargeError(err) {
		msg += " Fix spec.secretTemplate (or what refuses the Secret), then change the APIToken to retry."
		r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventSecretWriteFailed, msg)
		markStalled(tok, tokensv1alpha1.ReasonSecretWriteFailed, msg)
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	markProgressing(tok, tokensv1alpha1.ReasonSecretWriteFailed, msg+" Retrying with backoff.")
	return ctrl.Result{}, fmt.Errorf("writing Secret: %w", err)
}

// recordIssue appends a creation time and forgets those older than the window.
func recordIssue(issues []metav1.Time, now time.Time, window time.Duration) []metav1.Time {
	out := make([]metav1.Time, 0, len(issues)+1)
	for _, t := range issues {
		if now.Sub(t.Time) < window {
			out = append(out, t)
		}
	}
	out = append(out, metav1.NewTime(now.UTC().Truncate(time.Second)))
	if len(out) > 32 {
		out = out[len(out)-32:]
	}
	return out
}

func timePtr(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	m := metav1.NewTime(t.UTC())
	return &m
}

// The managed Secrets: created, patched, and deleted when renamed or the APIToken goes.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// writeSecret creates the Secret, or patches the one this APIToken owns, with the operator's
// labels and annotations and the keys describing t; value, when set, is the token itself.
// The cached Secret is never written back: the cache keeps no token value (only its hash),
// so the write is a merge patch of exactly the fields the operator sets.
func (r *APITokenReconciler) writeSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, t secretToken, value []byte) error {
	want := desiredSecretMeta(tok, in.backend.url, t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tok.SecretNameOrDefault(), Namespace: tok.Namespace, Labels: want.labels, Annotations: want.annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{},
	}
	for k, v := range want.data {
		secret.Data[k] = []byte(v)
	}
	if value != nil {
		secret.Data[tokensv1alpha1.SecretKeyToken] = value
		secret.Annotations[annotationTokenSHA256] = hashToken(value)
	}
	if in.secret != nil {
		secret.OwnerReferences = in.secret.OwnerReferences
	}
	if err := controllerutil.SetControllerReference(tok, secret, r.Scheme); err != nil {
		return fmt.Errorf("setting owner of Secret %s: %w", secret.Name, err)
	}
	if in.secret == nil {
		if err := r.Create(ctx, secret); err != nil {
			return fmt.Errorf("creating Secret %s: %w", secret.Name, err)
		}
		return nil
	}
	if err := r.Patch(ctx, secret, client.Merge); err != nil {
		return fmt.Errorf("updating Secret %s: %w", secret.Name, err)
	}
	return nil
}

// backendFailed reports a failed backend call: transient errors are retried with backoff
// (or after Retry-After), others need a person.
func (r *APITokenReconciler) backendFailed(ctx context.Context, tok *tokensv1alpha1.APIToken, doing string, err error) (ctrl.Result, error) {
	if IsBackendBusy(err) {
		// The backend's in-flight cap is reached (a bulkhead, not an outage): Reconcile
		// requeues soon, changes no condition and reports no outage.
		return ctrl.Result{}, errBusyPass
	}
	r.reportOutage(tok, err)
	// For a tenant's own StatusBackend, only the category of a connection error reaches
	// status (its URL is the tenant's choice, so details would make an SSRF probe).
	desc := DescribeBackendError(backendKeyFor(tok), err)
	if backend.IsTransient(err) || backend.IsUnauthorized(err) {
		markProgressing(tok, tokensv1alpha1.ReasonBackendError,
			fmt.Sprintf("The backend failed while %s: %s. Retrying with backoff.", doing, desc))
		if ra := backend.RetryAfter(err); ra > 0 {
			logf.FromContext(ctx).V(1).Info("Backend asked to retry later", "after", ra.String(), "error", err.Error())
			return ctrl.Result{RequeueAfter: ra}, nil
		}
		return ctrl.Result{}, fmt.Errorf("%s: %w", doing, err)
	}
	msg := fmt.Sprintf("The backend refused %s: %s. Fix the request or the backend, then change the APIToken to retry.", doing, desc)
	r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventFailed, msg)
	markStalled(tok, tokensv1alpha1.ReasonBackendRejected, msg)
	return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s: %w", doing, err))
}

// reportOutage asks for a re-check of the backend when a call failed as if it were down
// (no answer, 5xx, or a credential that stopped working); not for 429 or 409, which are the
// backend working as designed.
func (r *APITokenReconciler) reportOutage(tok *tokensv1alpha1.APIToken, err error) {
	r.reportOutageOn(backendKeyFor(tok), err)
}

func (r *APITokenReconciler) reportOutageOn(key BackendKey, err error) {
	var be *backend.Error
	if !errors.As(err, &be) {
		return
	}
	if (be.Kind == backend.KindTransient && be.StatusCode != http.StatusTooManyRequests) || be.Kind == backend.KindUnauthorized {
		r.Registry.ReportOutage(key)
	}
}

// retirePredecessors moves the predecessors due for retirement to pendingDeactivation (the
// sweep that follows deactivates them) and says why in an Event each. One still in use when
// its grace ended is retired anyway, with a Warning naming it: a consumer never picked up
// the new value.
func (r *APITokenReconciler) retirePredecessors(tok *tokensv1alpha1.APIToken, due []retirement) {
	for _, ret := range due {
		i := slices.IndexFunc(tok.Status.PreviousTokens, func(p tokensv1alpha1.PreviousToken) bool { return p.TokenID == ret.tokenID })
		if i < 0 {
			continue
		}
		p := tok.Status.PreviousTokens[i]
		tok.Status.PreviousTokens = slices.Delete(tok.Status.PreviousTokens, i, i+1)
		addPendingDeactivation(tok, p.TokenID, p.Backend)
		if ret.stillInUse {
			predecessorsUsedAfterGrace.WithLabelValues(tok.Namespace, tok.Name).Inc()
			r.event(tok, corev1.EventTypeWarning, tokensv1alpha1.EventPredecessorStillInUse,
				fmt.Sprintf("Retired predecessor %s (%s) because %s. Find the workload still using it and make it read the Secret %s again.", p.TokenID, p.TokenHint, ret.why, tok.Status.SecretName))
			continue
		}
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because %s", p.TokenID, p.TokenHint, ret.why))
	}
	if len(tok.Status.PreviousTokens) == 0 {
		tok.Status.PreviousTokens = nil
	}
}
