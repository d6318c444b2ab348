package apitoken

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken/policy"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Reconciler issues, replaces, expires and revokes the backend token of each APIToken and
// keeps its Secret.
type Reconciler struct {
	// Client is the manager's cached client; Secrets in its cache are only the managed ones.
	client.Client
	// APIReader reads uncached, to tell a foreign Secret from a missing one.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Registry gives the drivers of Ready backends (its read side).
	Registry registry.Getter
	// Inventory gives each backend's last list of tokens; nil leaves it out.
	Inventory *inventory.Inventory
	// Clock is injected so that decisions never call time.Now deep in logic.
	Clock func() time.Time
	// MaxConcurrentReconciles bounds parallel reconciles; the work is I/O bound.
	MaxConcurrentReconciles int
	// SecretMetadata is the metadata-only cache of all Secrets. It lets a token in
	// SecretConflict proceed as soon as the foreign Secret is removed.
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
	// ClusterIdentity is put on every token this cluster creates (the owner's cluster); a
	// token of another identity is never deactivated as an orphan nor adopted.
	ClusterIdentity string

	expectations writeExpectations
	// holders knows which APIToken holds which backend token (heldByAnother).
	holders tokenHolders
	// afterCreate is the crash-test seam (WithAfterCreate).
	afterCreate func(ctx context.Context, tok *tokensv1alpha1.APIToken) error
}

// Option sets what is not configuration: test seams.
type Option func(*Reconciler)

// WithAfterCreate is the crash-test seam: f runs after the backend create succeeded and
// before the Secret is written; an error aborts the pass there, as a crash would.
func WithAfterCreate(f func(ctx context.Context, tok *tokensv1alpha1.APIToken) error) Option {
	return func(r *Reconciler) { r.afterCreate = f }
}

// With applies options and returns the reconciler.
func (r *Reconciler) With(opts ...Option) *Reconciler {
	for _, o := range opts {
		o(r)
	}
	return r
}

// DefaultIssuanceBudget and DefaultIssuanceWindow bound how many tokens one APIToken can
// make the operator create: defence in depth against a backend that answers wrongly or a
// loop nobody foresaw. Normal use needs one create per spec change or rotation.
const (
	DefaultIssuanceBudget = 5
	DefaultIssuanceWindow = 10 * time.Minute
)

func (r *Reconciler) issuanceWindow() time.Duration {
	if r.IssuanceWindow > 0 {
		return r.IssuanceWindow
	}
	return DefaultIssuanceWindow
}

// DefaultPermissionReviewWindow is --permission-review-window's default.
const DefaultPermissionReviewWindow = policy.DefaultPermissionReviewWindow

func (r *Reconciler) reviewWindow() time.Duration {
	if r.PermissionReviewWindow != nil {
		return *r.PermissionReviewWindow
	}
	return DefaultPermissionReviewWindow
}

// errBusyPass is how a failed call tells Reconcile that the pass was refused by the
// backend's in-flight cap (registry.IsBackendBusy).
var errBusyPass = errors.New("backend busy: pass refused by the in-flight cap")

// cacheLagRequeue is how soon a pass whose cache lags behind our own writes runs again.
const cacheLagRequeue = 100 * time.Millisecond

// maxRetryDelay caps the per-APIToken backoff. The default (1000 s) would leave tokens
// waiting many minutes after a backend outage of one minute; retries are cheap reads and
// one idempotent create, so a 30 s cap recovers quickly without hammering the backend.
const maxRetryDelay = 30 * time.Second

// driver is the registered driver of a Ready backend, or nil. The decision's inputs hold no
// driver: they are data only.
func (r *Reconciler) driver(key backendkey.Key) backend.Driver {
	cl, _, ok := r.Registry.Get(key)
	if !ok {
		return nil
	}
	return cl
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
