package apitoken

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/registry"
)

// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokens.statusops.dev,resources=apitokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one APIToken towards its spec: gather, decide, act, report, and one status
// write at the end, only when it changed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	// One slot of the backend's in-flight cap for the whole pass (see WithBackendPass).
	ctx, endPass := registry.WithBackendPass(ctx)
	defer endPass()
	tok := &tokensv1alpha1.APIToken{}
	if err := r.Get(ctx, req.NamespacedName, tok); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if res, done, err := r.ensureFinalizer(ctx, tok); done {
		return res, err
	}
	before := tok.DeepCopy()
	gone, observed := false, false
	defer func() {
		if errors.Is(retErr, errBusyPass) || registry.IsBackendBusy(retErr) {
			if result, retErr = r.waitForSlot(ctx, req, tok.UID); tok.Status.TokenID == before.Status.TokenID {
				return
			}
		}
		if !gone {
			retErr = r.patchStatus(ctx, before, tok, observed, retErr)
		}
	}()
	if !tok.DeletionTimestamp.IsZero() {
		gone, result, retErr = r.reconcileDelete(ctx, tok)
		return result, retErr
	}
	in, err := r.gather(ctx, before)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.expectations.satisfied(tok, in.Secret, in.Now) {
		return ctrl.Result{RequeueAfter: cacheLagRequeue}, nil
	}
	observed = true
	return r.reconcileNormal(ctx, tok, in)
}

// ensureFinalizer adds the finalizer first, so that no backend token can exist without one.
// The pass goes on (the finalizer patch is metadata-only and does not wake the controller);
// done is true when the pass must end here.
func (r *Reconciler) ensureFinalizer(ctx context.Context, tok *tokensv1alpha1.APIToken) (ctrl.Result, bool, error) {
	has := controllerutil.ContainsFinalizer(tok, tokensv1alpha1.Finalizer)
	if r.expectations.finalizerPending(tok, has, r.Clock()) {
		return ctrl.Result{RequeueAfter: cacheLagRequeue}, true, nil
	}
	if tok.DeletionTimestamp.IsZero() && !has {
		patch := client.MergeFrom(tok.DeepCopy())
		controllerutil.AddFinalizer(tok, tokensv1alpha1.Finalizer)
		if err := r.Patch(ctx, tok, patch); err != nil {
			return ctrl.Result{}, true, fmt.Errorf("adding finalizer: %w", err)
		}
		r.expectations.expectFinalizer(tok.UID, r.Clock())
	}
	return ctrl.Result{}, false, nil
}

// waitForSlot: the pass was refused by the backend's in-flight cap. Come back when it frees a
// slot, without holding a worker, and write no status unless this pass issued a token before
// it was refused. Any refusal counts, also one of a read before the decision (the GET that
// confirms a revocation): as a reconcile error it went to the exponential backoff, and a
// hand-revoked token stayed Active for 15 s behind 100 repairs.
func (r *Reconciler) waitForSlot(ctx context.Context, req ctrl.Request, uid types.UID) (ctrl.Result, error) {
	first := r.expectations.isCreateUncertain(uid)
	logf.FromContext(ctx).V(2).Info("Waiting for a backend slot", "first", first)
	if !registry.WaitForSlot(ctx, req.NamespacedName, first) {
		return ctrl.Result{RequeueAfter: registry.BackendBusyRetryAfter()}, nil
	}
	return ctrl.Result{}, nil
}

// patchStatus is the one status write of a pass: ObservedGeneration is set only when the pass
// decided on fresh inputs and succeeded (a terminal failure is an outcome too), and the
// patch is sent only when the status changed.
func (r *Reconciler) patchStatus(ctx context.Context, before, tok *tokensv1alpha1.APIToken, observed bool, retErr error) error {
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

// reconcileNormal decides, carries out the one action decided, and reports.
func (r *Reconciler) reconcileNormal(ctx context.Context, tok *tokensv1alpha1.APIToken, in policy.Inputs) (ctrl.Result, error) {
	d := policy.Decide(in)
	out := r.act(ctx, in, d)
	pub := policy.Report(tok, in, d, out)
	r.publish(tok, pub)
	return requeueAt(in.Now, pub.RequeueAt), out.Err
}

// act carries out the decided action. It reads the APIToken only through in, and records
// what happens to which tokens in the outcome's ledger.
func (r *Reconciler) act(ctx context.Context, in policy.Inputs, d policy.Decision) policy.Outcome {
	out := policy.Outcome{Ledger: policy.NewLedger(in.Token)}
	switch d.Action {
	case policy.ActionIssue, policy.ActionAdopt:
		cl := r.driver(in.Backend.Key)
		if cl == nil {
			// Unregistered since the inputs were gathered: its next registration wakes us.
			out.Unregistered = true
			return out
		}
		if d.Action == policy.ActionIssue {
			r.issue(ctx, in, d, cl, &out)
		} else {
			r.adopt(ctx, in, cl, &out)
		}
	case policy.ActionDeactivate, policy.ActionExpire, policy.ActionRevoke:
		r.deactivateEverything(ctx, in, &out)
	case policy.ActionRetire:
		out.Ledger.Retire(d.Retire)
		if r.finishSweep(ctx, in, &out) {
			r.retireRenamedSecret(ctx, in, &out)
		}
	case policy.ActionSweep:
		if r.finishSweep(ctx, in, &out) {
			r.retireRenamedSecret(ctx, in, &out)
		}
	case policy.ActionUpdateSecret:
		if err := r.writeSecret(ctx, in, policy.SecretTokenOf(in.Token), nil); err != nil {
			r.secretWriteFailed(in, err, &out)
			return out
		}
		r.retireRenamedSecret(ctx, in, &out)
	case policy.ActionNone:
		r.retireRenamedSecret(ctx, in, &out)
	}
	return out
}
