package controllers

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/logging"
	apimetrics "github.com/statusops/apitoken-operator/internal/metrics"
	"github.com/statusops/apitoken-operator/internal/metricsauth"
)

// Options configure the manager. Zero values take the defaults of cmd/manager's flags.
type Options struct {
	MetricsAddr string
	// InsecureMetrics serves metrics over plain HTTP to anyone who can reach the port. The
	// default is HTTPS where only a bearer token allowed to get /metrics (a TokenReview and a
	// SubjectAccessReview) may read them: the series carry token ids and namespaces. make dev
	// and the bench scrape plainly.
	InsecureMetrics bool
	// MetricsCertDir holds the metrics server's certificate (MetricsCertName, MetricsKeyName;
	// default tls.crt and tls.key); empty means a self-signed one generated at start.
	MetricsCertDir, MetricsCertName, MetricsKeyName string
	// PprofAddr serves net/http/pprof when set ("0" or empty: off).
	PprofAddr               string
	HealthAddr              string
	LeaderElection          bool
	LeaderElectionID        string
	LeaderElectionNamespace string
	SyncInterval            time.Duration
	MaxConcurrentReconciles int
	// MaxInFlightPerBackend caps the requests in flight to one backend (a bulkhead); calls
	// beyond it fail at once and their APITokens requeue. 0 means 4; negative means no cap.
	MaxInFlightPerBackend int
	// DisableNamespacedBackends turns StatusBackends off (--namespaced-backends=false), for
	// clusters that allow only cluster-scoped backends (a tenant's URL is an SSRF probe).
	DisableNamespacedBackends bool
	// WatchNamespaces limits the APITokens and StatusBackends watched; empty means all.
	WatchNamespaces []string
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	// NewBackendClient builds backend drivers; nil means drivers.New (the driver each backend
	// object names).
	NewBackendClient backend.Factory
	// BackendObserver, when set, is called after every backend request (metrics).
	BackendObserver func(op string, code int, d time.Duration, err error)
	// ClusterName is this cluster's identity on shared backends (--cluster-name), put on
	// every token it creates; empty means the kube-system namespace's UID.
	ClusterName string
	// PermissionReviewWindow is the least-privilege review's window; nil means the default
	// (720h), 0 turns the review off.
	PermissionReviewWindow *time.Duration
	// RestartWorkloads turns on rolling out opted-in workloads on rotation
	// (--restart-workloads); it needs patch rights on Deployments, StatefulSets, DaemonSets.
	RestartWorkloads bool
	// MaxConcurrentRestarts caps rollouts in flight cluster-wide, a quarter of it per
	// namespace (0: the default, 10).
	MaxConcurrentRestarts int
	// RestartDebounce is how long after the last token change a workload is rolled out
	// (0: the default, 10 s).
	RestartDebounce time.Duration
	// RestartSlotTimeout is how long one rollout holds a slot of MaxConcurrentRestarts at
	// most, so a rollout that never completes blocks no other (0: the default, 10 m).
	RestartSlotTimeout time.Duration
	// IssuanceBudget is how many tokens one APIToken may have created within 10 minutes;
	// 0 means the default (apitoken.DefaultIssuanceBudget), negative means no limit.
	IssuanceBudget int
	// ReconcilerOptions are test seams of the APIToken controller (apitoken.WithAfterCreate).
	ReconcilerOptions []apitoken.Option
	// SkipNameValidation allows several managers in one process (tests).
	SkipNameValidation bool
	// Logger, when set, is the manager's logger (tests capture it); default ctrl.Log.
	Logger *logr.Logger
	// Setup, when set, is called with the manager before it starts (metrics registration).
	Setup func(mgr manager.Manager) error
}

// orDefault is v, or def when v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// issuanceBudget maps the option to the reconciler's field (0 there means no limit).
func issuanceBudget(n int) int {
	switch {
	case n == 0:
		return apitoken.DefaultIssuanceBudget
	case n < 0:
		return 0
	}
	return n
}

// Scheme has the Kubernetes kinds and the operator's kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := tokensv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewManager builds a manager with every controller registered.
func NewManager(cfg *rest.Config, o Options) (manager.Manager, error) {
	o = withDefaults(o)
	logger := ctrl.Log
	if o.Logger != nil {
		logger = *o.Logger
	}
	logger = logging.CapVerbosity(logger, logging.MaxVerbosity)
	metricsOpts, err := metricsServerOptions(o)
	if err != nil {
		return nil, err
	}
	scheme := Scheme()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger:                        logger,
		Controller:                    config.Controller{SkipNameValidation: &o.SkipNameValidation},
		Scheme:                        scheme,
		Cache:                         cacheOptions(o),
		MapperProvider:                newMemoMapper,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.HealthAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := setupReconcilers(mgr, scheme, logger, o); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	if o.Setup != nil {
		if err := o.Setup(mgr); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// withDefaults fills the options a zero value leaves unset.
func withDefaults(o Options) Options {
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Minute
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = 16
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = "apitoken-operator.statusops.dev"
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.MaxInFlightPerBackend == 0 {
		o.MaxInFlightPerBackend = 4
	}
	return o
}

// streamedScrape serves /metrics with apimetrics.Handler, which writes the per-token series
// straight from their store instead of gathering them (see internal/metrics/stream.go);
// controller-runtime's server offers no other way to replace its handler than the filter
// it wraps every path's handler in. Other paths go to next.
func streamedScrape(next http.Handler) http.Handler {
	scrape := apimetrics.Handler(crmetrics.Registry)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			scrape.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// metricsServerOptions serves metrics as the kubebuilder scaffold does, HTTPS where a
// TokenReview and a SubjectAccessReview check each scraper unless InsecureMetrics, but with
// metricsauth.Filter instead of controller-runtime's filter (which imports k8s.io/apiserver).
func metricsServerOptions(o Options) (metricsserver.Options, error) {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.InsecureMetrics {
		m.FilterProvider = func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
			return func(_ logr.Logger, next http.Handler) (http.Handler, error) { return streamedScrape(next), nil }, nil
		}
		return m, nil
	}
	m.SecureServing = true
	m.FilterProvider = func(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
		auth, err := metricsauth.Filter(cfg, hc)
		if err != nil {
			return nil, err
		}
		return func(log logr.Logger, next http.Handler) (http.Handler, error) { return auth(log, streamedScrape(next)) }, nil
	}
	// HTTP/2 is off, as in the scaffold: its stream handling had denial-of-service bugs
	// (CVE-2023-44487, CVE-2023-39325) and a scraper needs only HTTP/1.1.
	m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	if o.MetricsCertDir == "" {
		// controller-runtime looks for certificates in a default directory under /tmp
		// before it generates a self-signed one; a directory of our own that never has
		// any makes "no cert flags" mean self-signed, whatever /tmp holds.
		m.CertDir = filepath.Join(os.TempDir(), "apitoken-operator-no-metrics-certs")
		return m, nil
	}
	m.CertDir, m.CertName, m.KeyName = o.MetricsCertDir, o.MetricsCertName, o.MetricsKeyName
	for _, f := range []string{cmp.Or(m.CertName, "tls.crt"), cmp.Or(m.KeyName, "tls.key")} {
		// Without the files controller-runtime silently falls back to a self-signed
		// certificate; a configured certificate that is missing is an error instead.
		if _, err := os.Stat(filepath.Join(m.CertDir, f)); err != nil {
			return m, fmt.Errorf("metrics certificate: %w", err)
		}
	}
	return m, nil
}

// Run builds the manager and runs it until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	mgr, err := NewManager(cfg, o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// SplitNamespaces parses a comma-separated namespace list.
func SplitNamespaces(s string) []string {
	var out []string
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// lastAppliedAnnotation is kubectl's copy of the applied manifest: for a Secret applied with
// kubectl it holds the Secret's data, so it must never sit in the operator's memory.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// trimForCache drops managedFields and the last-applied annotation from cached objects.
func trimForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, has := a[lastAppliedAnnotation]; has {
				delete(a, lastAppliedAnnotation)
				m.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}

// chainTransforms applies the transforms in order. A ByObject transform replaces the
// DefaultTransform rather than adding to it, hence the chain.
func chainTransforms(fs ...toolscache.TransformFunc) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		for _, f := range fs {
			var err error
			if obj, err = f(obj); err != nil {
				return nil, err
			}
		}
		return obj, nil
	}
}

// trimSecretMetadata keeps of every Secret's metadata only what the operator reads: name,
// namespace, the managed-by label and the controller owner reference. Anyone who may create
// a Secret can give it labels, annotations and owner references up to the object size limit,
// and this cache holds every Secret in the cluster but the managed ones: the rest is dropped.
func trimSecretMetadata(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
		m.SetFinalizers(nil)
		m.SetLabels(managedByLabelOnly(m.GetLabels()))
		m.SetOwnerReferences(controllerRefOnly(m.GetOwnerReferences()))
	}
	return obj, nil
}

// managedByLabelOnly keeps the managed-by label, which tells a foreign Secret from ours.
func managedByLabelOnly(l map[string]string) map[string]string {
	v, ok := l[tokensv1alpha1.LabelManagedBy]
	if !ok {
		return nil
	}
	return map[string]string{tokensv1alpha1.LabelManagedBy: v}
}

// controllerRefOnly keeps the controller owner reference, the one metav1.IsControlledBy reads.
func controllerRefOnly(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if ref := metav1.GetControllerOfNoCopy(&metav1.ObjectMeta{OwnerReferences: refs}); ref != nil {
		return []metav1.OwnerReference{*ref}
	}
	return nil
}
