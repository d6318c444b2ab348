package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	"github.com/statusops/apitoken-operator/internal/backend"
)

// backendRefIndex indexes APITokens by BackendKey.String(), so a backend event wakes
// exactly its tokens.
const backendRefIndex = "spec.backendRef"

// secretNameIndex indexes APITokens by "namespace/secretName".
const secretNameIndex = "spec.secretName"

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
	// NamespacedBackendsDisabled is set by --namespaced-backends=false: StatusBackends are not
	// reconciled, and an APIToken referring to one waits with a message saying so.
	NamespacedBackendsDisabled bool
	// AfterCreate is a test seam: when set, it runs after the backend create succeeded and
	// before the Secret is written; an error aborts the pass there, as a crash would.
	AfterCreate func(ctx context.Context, tok *tokensv1alpha1.APIToken) error

	expectations writeExpectations
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
	// The pass holds at most one slot of its backend's in-flight cap, from its first backend
	// call to its end.
	ctx, endPass := WithBackendPass(ctx)
	defer endPass()
	tok := &tokensv1alpha1.APIToken{}
	if err := r.Get(ctx, req.NamespacedName, tok); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	// Finalizer first, so that no backend token can exist without one. The pass goes on
	// (the finalizer patch is metadata-only and does not wake the controller again).
	if tok.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer) {
		patch := client.MergeFrom(tok.DeepCopy())
		controllerutil.AddFinalizer(tok, tokensv1alpha1.Finalizer)
		if err := r.Patch(ctx, tok, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	before := tok.DeepCopy()
	gone := false
	defer func() {
		if errors.Is(retErr, errBusyPass) {
			// Refused by the backend's in-flight cap: come back soon without holding a worker,
			// and write no status unless this pass issued a token before it was refused.
			result, retErr = ctrl.Result{RequeueAfter: BackendBusyRetryAfter()}, nil
			if tok.Status.TokenID == before.Status.TokenID {
				return
			}
		}
		if gone || equality.Semantic.DeepEqual(before.Status, tok.Status) {
			return
		}
		patch := client.MergeFrom(before)
		if log := logf.FromContext(ctx); log.V(2).Enabled() {
			if data, err := patch.Data(tok); err == nil {
				log.V(2).Info("Patching status", "patch", string(data))
			}
		}
		if err := r.Status().Patch(ctx, tok, patch); err != nil && !apierrors.IsNotFound(err) {
			r.expectations.forget(tok.UID)
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()

	if !tok.DeletionTimestamp.IsZero() {
		var err error
		gone, result, err = r.reconcileDelete(ctx, tok)
		return result, err
	}
	return r.reconcileNormal(ctx, tok)
}

// reconcileNormal gathers the inputs, decides, and carries out the one action decided.
func (r *APITokenReconciler) reconcileNormal(ctx context.Context, tok *tokensv1alpha1.APIToken) (ctrl.Result, error) {
	in, err := r.gather(ctx, tok)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.expectations.satisfied(tok, in.secret, in.now) {
		return ctrl.Result{RequeueAfter: cacheLagRequeue}, nil
	}
	tok.Status.SecretName = tok.SecretNameOrDefault()
	d := decide(in)
	needsBackend := d.action == actionIssue || d.action == actionDeactivate || d.action == actionExpire
	if needsBackend && !in.backend.ready {
		d = decision{action: actionWait}
	}

	switch d.action {
	case actionFail:
		if cond := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady); cond == nil || cond.Reason != d.reason {
			r.event(tok, corev1.EventTypeWarning, "Failed", d.why)
		}
		markFailed(tok, d.reason, d.why)
		return ctrl.Result{}, nil

	case actionWait:
		markProgressing(tok, tokensv1alpha1.ReasonBackendNotReady, in.backend.message)
		// The spec was observed; waiting is the outcome (a backend watch wakes us).
		tok.Status.ObservedGeneration = tok.Generation
		return ctrl.Result{}, nil

	case actionIssue:
		return r.issueToken(ctx, tok, in, d)

	case actionDeactivate:
		if err := r.deactivateCurrent(ctx, tok, in.backend.client); err != nil {
			return r.backendFailed(ctx, tok, "deactivating the token", err)
		}
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.ReasonDeactivated,
			fmt.Sprintf("Deactivated token %s because spec.active is false", tok.Status.TokenID))
		markDeactivated(tok)
		return ctrl.Result{}, nil

	case actionExpire:
		if err := r.deactivateCurrent(ctx, tok, in.backend.client); err != nil {
			return r.backendFailed(ctx, tok, "deactivating the expired token", err)
		}
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.ReasonExpired,
			fmt.Sprintf("Token %s expired at %s and was deactivated", tok.Status.TokenID, formatTime(tok.Spec.ExpiresAt)))
		markExpired(tok)
		return ctrl.Result{}, nil

	case actionUpdateSecret:
		if err := r.writeSecret(ctx, tok, in, in.secret.Data[tokensv1alpha1.SecretKeyToken]); err != nil {
			return ctrl.Result{}, err
		}
	}

	// actionNone and actionUpdateSecret: report the steady state.
	switch {
	case !tok.IsActiveRequested():
		markDeactivated(tok)
	case tok.Status.Phase == tokensv1alpha1.PhaseInactive:
		markExpired(tok)
	default:
		if lastUsed, ok := lastUsedFromInventory(in.inventory, tok.Status.TokenID); ok && lastUsed != nil {
			t := metav1.NewTime(lastUsed.UTC().Truncate(time.Second))
			tok.Status.LastUsedAt = &t
		}
		markIssued(tok)
	}
	return requeueAt(in.now, d.requeueAt), nil
}

// issueToken issues a token and puts it in the Secret, replacing the current one if any.
//
// Crash safety. The operator may be killed between any two of these steps; each restart
// recomputes the same idempotency key from what status still says, so:
//
//  1. key = UID/serial/request-hash, serial = status.issueSerial+1. Status is written only
//     in step 5, so until then every retry computes the same key.
//  2. POST /api_tokens with that key (the one backend write). Killed after it: the next pass
//     sends the same key and the backend replays the same token and value, so no second token
//     is created. If the replay is gone (backend restarted, 24 h passed, or the spec changed so
//     the request hash differs), a new token is created and the first one becomes an orphan
//     that carries external_id = UID: step 4 deactivates it.
//  3. Write the Secret. Killed after it: the replayed value equals what the Secret holds, so
//     the rewrite is a no-op; otherwise the Secret is overwritten by the newer token.
//  4. Deactivate every other active backend token whose external_id is this UID: the token
//     being replaced, and any orphan of an earlier interrupted pass. Killed during it: the
//     next pass repeats it (deactivation is idempotent).
//  5. Patch status (tokenID, serial, ...). Killed before it: steps 1-4 repeat as above and
//     end in the same state.
//
// So whatever the kill point, the end state is one active token with external_id = UID, the
// one named in status and held in the Secret.
func (r *APITokenReconciler) issueToken(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, d decision) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	previous := tok.Status.TokenID
	req := backend.CreateRequest{
		Name:        tok.Namespace + "/" + tok.Name,
		Permission:  backendPermission(tok.Spec.Permission),
		Description: tok.Spec.Description,
		ExternalID:  string(tok.UID),
		Labels:      backendTokenLabels,
	}
	if tok.Spec.ExpiresAt != nil {
		t := tok.Spec.ExpiresAt.UTC()
		req.ExpiresAt = &t
	}
	serial := tok.Status.IssueSerial + 1
	key := idempotencyKey(tok.UID, serial, req)

	created, err := in.backend.client.CreateToken(ctx, key, req)
	if err != nil {
		var be *backend.Error
		if errors.As(err, &be) && be.Kind == backend.KindProtocol && be.StatusCode/100 == 2 {
			// The backend said yes but its reply cannot be read: a token may exist that no
			// Secret holds. Deactivate it (best effort) rather than leave it active.
			if sweepErr := r.deactivateAll(ctx, tok, in.backend.client, tok.Status.TokenID); sweepErr != nil {
				logf.FromContext(ctx).Info("Deactivating a token from an unreadable create reply failed; retrying", "error", sweepErr.Error())
				return r.backendFailed(ctx, tok, "cleaning up after an unreadable create reply", sweepErr)
			}
		}
		return r.backendFailed(ctx, tok, "issuing a token", err)
	}
	log.V(1).Info("Issued backend token", "tokenID", created.ID, "serial", serial, "replayed", created.Replayed, "why", d.why)
	if r.AfterCreate != nil {
		if err := r.AfterCreate(ctx, tok); err != nil {
			return ctrl.Result{}, err
		}
	}

	tok.Status.TokenID = created.ID
	tok.Status.TokenHint = "..." + created.Last4
	tok.Status.Permission = apiPermission(created.Permission)
	issuedAt := metav1.NewTime(created.CreatedAt.UTC())
	tok.Status.IssuedAt = &issuedAt
	tok.Status.ExpiresAt = nil
	if created.ExpiresAt != nil {
		t := metav1.NewTime(created.ExpiresAt.UTC())
		tok.Status.ExpiresAt = &t
	}
	tok.Status.LastUsedAt = nil
	tok.Status.IssueSerial = serial
	if v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]; v != "" {
		tok.Status.RotationHandled = v
	}
	value := []byte(created.Value.Reveal())
	if err := r.writeSecret(ctx, tok, in, value); err != nil {
		return ctrl.Result{}, err
	}
	r.expectations.expect(tok.UID, serial, hashToken(value), in.now)
	if err := r.deactivateAll(ctx, tok, in.backend.client, created.ID); err != nil {
		return r.backendFailed(ctx, tok, "deactivating the replaced token", err)
	}
	markIssued(tok)

	switch {
	case previous == "":
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.ReasonIssued,
			fmt.Sprintf("Issued %s token %s (%s) into Secret %s", tok.Status.Permission, created.ID, tok.Status.TokenHint, tok.Status.SecretName))
	case d.reason == eventRevoked:
		r.event(tok, corev1.EventTypeWarning, eventRevoked,
			fmt.Sprintf("Token %s was revoked on the backend; issued %s into Secret %s", previous, created.ID, tok.Status.SecretName))
	case d.reason == tokensv1alpha1.ReasonIssued:
		r.event(tok, corev1.EventTypeNormal, tokensv1alpha1.ReasonIssued,
			fmt.Sprintf("Issued %s token %s (%s) into Secret %s because %s", tok.Status.Permission, created.ID, tok.Status.TokenHint, tok.Status.SecretName, d.why))
	default:
		r.event(tok, corev1.EventTypeNormal, eventReplaced,
			fmt.Sprintf("Replaced token %s with %s because %s", previous, created.ID, d.why))
	}
	return requeueAt(in.now, expiryOf(tok)), nil
}

// idempotencyKey is deterministic in the APIToken, the issue serial and the request, so a
// retried create replays; a changed request gets a new key instead of a 422.
func idempotencyKey(uid types.UID, serial int64, req backend.CreateRequest) string {
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%s-%d-%s", uid, serial, hex.EncodeToString(sum[:8]))
}

// deactivateCurrent deactivates the token named in status (explicitly, even when the backend
// already reports it inactive because it expired) and every other active one of this APIToken.
func (r *APITokenReconciler) deactivateCurrent(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Client) error {
	if id := tok.Status.TokenID; id != "" {
		if _, err := cl.DeactivateToken(ctx, id); err != nil && !backend.IsNotFound(err) {
			return err
		}
	}
	return r.deactivateAll(ctx, tok, cl, tok.Status.TokenID)
}

// deactivateAll deactivates every active backend token of this APIToken except keep.
func (r *APITokenReconciler) deactivateAll(ctx context.Context, tok *tokensv1alpha1.APIToken, cl backend.Client, keep string) error {
	list, err := cl.ListTokens(ctx, backend.ListOptions{ExternalID: string(tok.UID), Status: backend.StatusActive})
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.ID == keep || t.ExternalID != string(tok.UID) {
			continue
		}
		if _, err := cl.DeactivateToken(ctx, t.ID); err != nil && !backend.IsNotFound(err) {
			return err
		}
		logf.FromContext(ctx).V(1).Info("Deactivated backend token", "tokenID", t.ID)
	}
	return nil
}

// writeSecret creates or updates the Secret with the token value and the derived keys.
func (r *APITokenReconciler) writeSecret(ctx context.Context, tok *tokensv1alpha1.APIToken, in tokenInputs, value []byte) error {
	want := desiredSecretMeta(tok, in.backend.url)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tok.SecretNameOrDefault(), Namespace: tok.Namespace}}
	exists := in.secret != nil
	if exists {
		secret = in.secret.DeepCopy()
	}
	if secret.Labels == nil {
		secret.Labels = map[string]string{}
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	for k, v := range want.labels {
		secret.Labels[k] = v
	}
	for k, v := range want.annotations {
		secret.Annotations[k] = v
	}
	secret.Annotations[annotationTokenSHA256] = hashToken(value)
	secret.Type = corev1.SecretTypeOpaque
	secret.Data = map[string][]byte{tokensv1alpha1.SecretKeyToken: value}
	for k, v := range want.data {
		secret.Data[k] = []byte(v)
	}
	if err := controllerutil.SetControllerReference(tok, secret, r.Scheme); err != nil {
		return fmt.Errorf("setting owner of Secret %s: %w", secret.Name, err)
	}
	if exists {
		if err := r.Update(ctx, secret); err != nil {
			return fmt.Errorf("updating Secret %s: %w", secret.Name, err)
		}
		return nil
	}
	if err := r.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s: %w", secret.Name, err)
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
	if backend.IsTransient(err) || backend.IsUnauthorized(err) {
		markProgressing(tok, tokensv1alpha1.ReasonBackendError,
			fmt.Sprintf("The backend failed while %s: %v. Retrying with backoff.", doing, err))
		if ra := backend.RetryAfter(err); ra > 0 {
			logf.FromContext(ctx).V(1).Info("Backend asked to retry later", "after", ra.String(), "error", err.Error())
			return ctrl.Result{RequeueAfter: ra}, nil
		}
		return ctrl.Result{}, fmt.Errorf("%s: %w", doing, err)
	}
	msg := fmt.Sprintf("The backend refused %s: %v. Fix the request or the backend, then change the APIToken to retry.", doing, err)
	r.event(tok, corev1.EventTypeWarning, "Failed", msg)
	markFailed(tok, tokensv1alpha1.ReasonBackendRejected, msg)
	return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s: %w", doing, err))
}

// reportOutage asks for a re-check of the backend when a call failed as if it were down
// (no answer, 5xx, or a credential that stopped working); not for 429 or 409, which are the
// backend working as designed.
func (r *APITokenReconciler) reportOutage(tok *tokensv1alpha1.APIToken, err error) {
	var be *backend.Error
	if !errors.As(err, &be) {
		return
	}
	if (be.Kind == backend.KindTransient && be.StatusCode != http.StatusTooManyRequests) || be.Kind == backend.KindUnauthorized {
		r.Registry.ReportOutage(backendKeyFor(tok))
	}
}

// reconcileDelete deactivates the backend token (Revoke), removes the Secret and then the
// finalizer. It reports gone=true once the finalizer is removed.
func (r *APITokenReconciler) reconcileDelete(ctx context.Context, tok *tokensv1alpha1.APIToken) (bool, ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer) {
		return false, ctrl.Result{}, nil
	}
	be, err := r.gatherBackend(ctx, tok)
	if err != nil {
		return false, ctrl.Result{}, err
	}
	cl, _, registered := r.Registry.Get(be.key)
	switch {
	case registered:
		keep := ""
		if tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain {
			keep = tok.Status.TokenID
		}
		err := r.deactivateAll(ctx, tok, cl, keep)
		if err != nil && keep != "" {
			// Retain never blocks on the backend: the sweep of other tokens is best effort
			// (this is also the documented way out when a backend is gone for good).
			r.event(tok, corev1.EventTypeWarning, "Retained", fmt.Sprintf("Could not check %s for other tokens of this APIToken (%v); token %s was left active (deletionPolicy Retain)", be.key, err, tok.Status.TokenID))
			err = nil
		}
		if err != nil {
			r.reportOutage(tok, err)
			msg := fmt.Sprintf("Deactivating token %s on %s failed: %v. The finalizer stays until the backend answers.", tok.Status.TokenID, be.key, err)
			markDeleting(tok, msg)
			if ra := backend.RetryAfter(err); ra > 0 {
				return false, ctrl.Result{RequeueAfter: ra}, nil
			}
			return false, ctrl.Result{}, errors.New(msg)
		}
		if keep == "" && tok.Status.TokenID != "" && tok.Status.Phase == tokensv1alpha1.PhaseActive {
			r.event(tok, corev1.EventTypeNormal, "Revoked", fmt.Sprintf("Deactivated token %s because the APIToken was deleted", tok.Status.TokenID))
		}
	case tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain:
		// Retain asks for the backend token to stay: with no working backend, nothing else
		// is attempted.
		r.event(tok, corev1.EventTypeWarning, "Retained", fmt.Sprintf("%s is not Ready; token %s and any other token of this APIToken were left as they are (deletionPolicy Retain)", be.key, tok.Status.TokenID))
	case !be.found || be.deleting:
		// The backend is gone (or being deleted, and waiting for this very token) and this
		// process has no working client for it: nothing can be deactivated, and keeping the
		// finalizer would block the namespace (or the backend) forever.
		if tok.Status.TokenID != "" {
			r.event(tok, corev1.EventTypeWarning, "Failed", fmt.Sprintf("%s is gone or being deleted and not Ready; token %s could not be deactivated", be.key, tok.Status.TokenID))
		}
	default:
		markDeleting(tok, fmt.Sprintf("Waiting for %s to become Ready to deactivate token %s (%s). The finalizer stays until then; to give up, remove the finalizer %s by hand.", be.key, tok.Status.TokenID, be.message, tokensv1alpha1.Finalizer))
		return false, ctrl.Result{}, nil
	}

	if tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain {
		if err := r.releaseOwnedSecret(ctx, tok); err != nil {
			return false, ctrl.Result{}, err
		}
	} else if err := r.deleteOwnedSecret(ctx, tok); err != nil {
		return false, ctrl.Result{}, err
	}
	patch := client.MergeFrom(tok.DeepCopy())
	controllerutil.RemoveFinalizer(tok, tokensv1alpha1.Finalizer)
	if err := r.Patch(ctx, tok, patch); err != nil && !apierrors.IsNotFound(err) {
		return false, ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	return true, ctrl.Result{}, nil
}

// annotationRetainedFrom marks a Secret left behind by a deleted APIToken with Retain.
const annotationRetainedFrom = "tokens.statusops.dev/retained-from"

// releaseOwnedSecret keeps the Secret of an APIToken deleted with deletionPolicy Retain: the
// backend token stays active, so its only copy of the value stays too. The owner reference
// and the managed-by label go (garbage collection and this operator leave it alone from
// now on), and an annotation says where it came from.
func (r *APITokenReconciler) releaseOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	var secret corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}, &secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&secret, tok) {
		return nil
	}
	patch := client.MergeFrom(secret.DeepCopy())
	refs := secret.OwnerReferences[:0]
	for _, ref := range secret.OwnerReferences {
		if ref.UID != tok.UID {
			refs = append(refs, ref)
		}
	}
	secret.OwnerReferences = refs
	delete(secret.Labels, tokensv1alpha1.LabelManagedBy)
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations[annotationRetainedFrom] = tok.Namespace + "/" + tok.Name + " (" + string(tok.UID) + ")"
	if err := r.Patch(ctx, &secret, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing Secret %s: %w", secret.Name, err)
	}
	return nil
}

func (r *APITokenReconciler) deleteOwnedSecret(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
	var secret corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}, &secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&secret, tok) {
		return nil
	}
	if err := r.Delete(ctx, &secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s: %w", secret.Name, err)
	}
	return nil
}

// gather reads everything decide needs.
func (r *APITokenReconciler) gather(ctx context.Context, tok *tokensv1alpha1.APIToken) (tokenInputs, error) {
	in := tokenInputs{now: r.Clock(), token: tok}
	be, err := r.gatherBackend(ctx, tok)
	if err != nil {
		return in, err
	}
	in.backend = be
	if r.Inventory != nil {
		in.inventory = r.Inventory.Snapshot(be.key)
	}

	name := types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}
	var secret corev1.Secret
	err = r.Get(ctx, name, &secret)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(&secret, tok) {
			in.secretConflict = true
		} else {
			in.secret = &secret
		}
	case apierrors.IsNotFound(err):
		// The cache holds only managed Secrets. Whether a foreign one is in the way is told
		// by the metadata-only cache of all Secrets (no API call per new token); without it,
		// by the API server.
		var owner metav1.Object
		if r.SecretMetadata != nil {
			m := secretMetadata()
			if err := r.SecretMetadata.Get(ctx, name, m); err == nil {
				owner = m
			} else if !apierrors.IsNotFound(err) {
				return in, fmt.Errorf("reading Secret %s metadata: %w", name, err)
			}
		} else {
			var live corev1.Secret
			if err := r.APIReader.Get(ctx, name, &live); err == nil {
				owner = &live
			} else if !apierrors.IsNotFound(err) {
				return in, fmt.Errorf("reading Secret %s: %w", name, err)
			}
		}
		switch {
		case owner == nil:
			// Absent. Should the metadata cache lag, the create fails with AlreadyExists and
			// the next pass sees the Secret.
		case metav1.IsControlledBy(owner, tok):
			// Ours, but someone removed our label: read it whole.
			var live corev1.Secret
			if err := r.APIReader.Get(ctx, name, &live); err != nil {
				return in, fmt.Errorf("reading Secret %s: %w", name, err)
			}
			in.secret = &live
		default:
			in.secretConflict = true
		}
	default:
		return in, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return in, nil
}

// gatherBackend finds the referenced backend, whether it is Ready and registered, and
// whether it allows the APIToken's namespace.
func (r *APITokenReconciler) gatherBackend(ctx context.Context, tok *tokensv1alpha1.APIToken) (backendState, error) {
	be := backendState{key: backendKeyFor(tok), allowed: true}
	var conditions []metav1.Condition
	switch be.key.Kind {
	case tokensv1alpha1.BackendKindStatusBackend:
		if r.NamespacedBackendsDisabled {
			be.found, be.message = true, fmt.Sprintf("%s cannot be used: this installation turns namespaced StatusBackends off (--namespaced-backends=false). Point spec.backendRef at a ClusterStatusBackend.", be.key)
			return be, nil
		}
		var obj tokensv1alpha1.StatusBackend
		if err := r.Get(ctx, types.NamespacedName{Namespace: be.key.Namespace, Name: be.key.Name}, &obj); err != nil {
			if apierrors.IsNotFound(err) {
				return be, nil
			}
			return be, err
		}
		be.found, be.deleting, conditions = true, !obj.DeletionTimestamp.IsZero(), obj.Status.Conditions
	default:
		var obj tokensv1alpha1.ClusterStatusBackend
		if err := r.Get(ctx, types.NamespacedName{Name: be.key.Name}, &obj); err != nil {
			if apierrors.IsNotFound(err) {
				return be, nil
			}
			return be, err
		}
		be.found, be.deleting, conditions = true, !obj.DeletionTimestamp.IsZero(), obj.Status.Conditions
		if obj.Spec.AllowedNamespaces != nil {
			sel, err := metav1.LabelSelectorAsSelector(obj.Spec.AllowedNamespaces)
			if err != nil {
				be.allowed = false
			} else {
				var ns corev1.Namespace
				if err := r.Get(ctx, types.NamespacedName{Name: tok.Namespace}, &ns); err != nil {
					return be, fmt.Errorf("reading namespace %s: %w", tok.Namespace, err)
				}
				be.allowed = sel.Matches(labelsSet(ns.Labels))
			}
		}
	}
	ready := meta.FindStatusCondition(conditions, tokensv1alpha1.ConditionReady)
	cl, url, registered := r.Registry.Get(be.key)
	switch {
	case registered:
		// The registry holds only backends this process has just checked successfully; it
		// is fresher than the cached status.
		be.ready, be.client, be.url = true, cl, url
	case ready == nil:
		be.message = fmt.Sprintf("%s has not been checked yet; the token is issued once it is Ready.", be.key)
	case ready.Status != metav1.ConditionTrue:
		be.message = fmt.Sprintf("%s is not Ready (%s: %s); the token is issued once it is Ready.", be.key, ready.Reason, ready.Message)
	default:
		be.message = fmt.Sprintf("Waiting for the operator to check %s.", be.key)
	}
	return be, nil
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
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &tokensv1alpha1.APIToken{}, backendRefIndex, func(o client.Object) []string {
		return []string{backendKeyFor(o.(*tokensv1alpha1.APIToken)).String()}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &tokensv1alpha1.APIToken{}, secretNameIndex, func(o client.Object) []string {
		tok := o.(*tokensv1alpha1.APIToken)
		return []string{tok.Namespace + "/" + tok.SecretNameOrDefault()}
	}); err != nil {
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
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, RateLimiter: tokenRateLimiter()}).
		Named("apitoken")
	if r.Inventory != nil {
		b = b.WatchesRawSource(source.Channel(r.Inventory.Events(), &handler.EnqueueRequestForObject{}))
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
	if err := r.List(ctx, &list, client.MatchingFields{backendRefIndex: key.String()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// tokensForSecret maps a Secret to the APITokens whose secretName it is.
func (r *APITokenReconciler) tokensForSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	var list tokensv1alpha1.APITokenList
	if err := r.List(ctx, &list, client.MatchingFields{secretNameIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
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
		return readyOf(e.ObjectOld) != readyOf(e.ObjectNew) || e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
	}}
}
