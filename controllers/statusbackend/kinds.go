package statusbackend

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/inventory"
)

// The two backend kinds differ only in scope, where their credential lives and
// allowedNamespaces; each wrapper below says that much and hands the rest to
// backendReconciler.

// statusBackendKind: namespaced; the credential is in the backend's own namespace; every
// APIToken of that namespace may use it.
var statusBackendKind = backendKind[*tokensv1alpha1.StatusBackend]{
	kind:                 tokensv1alpha1.BackendKindStatusBackend,
	name:                 "statusbackend",
	newObject:            func() *tokensv1alpha1.StatusBackend { return &tokensv1alpha1.StatusBackend{} },
	newList:              func() client.ObjectList { return &tokensv1alpha1.StatusBackendList{} },
	spec:                 func(b *tokensv1alpha1.StatusBackend) tokensv1alpha1.StatusBackendSpec { return b.Spec },
	status:               func(b *tokensv1alpha1.StatusBackend) *tokensv1alpha1.StatusBackendStatus { return &b.Status },
	credentialsNamespace: func(b *tokensv1alpha1.StatusBackend) string { return b.Namespace },
	allowedNamespaces:    func(*tokensv1alpha1.StatusBackend) *metav1.LabelSelector { return nil },
}

// clusterStatusBackendKind: cluster-scoped; the credential's namespace is in the spec;
// allowedNamespaces selects who may use it.
var clusterStatusBackendKind = backendKind[*tokensv1alpha1.ClusterStatusBackend]{
	kind:      tokensv1alpha1.BackendKindClusterStatusBackend,
	name:      "clusterstatusbackend",
	newObject: func() *tokensv1alpha1.ClusterStatusBackend { return &tokensv1alpha1.ClusterStatusBackend{} },
	newList:   func() client.ObjectList { return &tokensv1alpha1.ClusterStatusBackendList{} },
	spec: func(b *tokensv1alpha1.ClusterStatusBackend) tokensv1alpha1.StatusBackendSpec {
		return b.Spec.StatusBackendSpec
	},
	status: func(b *tokensv1alpha1.ClusterStatusBackend) *tokensv1alpha1.StatusBackendStatus { return &b.Status },
	credentialsNamespace: func(b *tokensv1alpha1.ClusterStatusBackend) string {
		return b.Spec.CredentialsSecretRef.Namespace
	},
	allowedNamespaces: func(b *tokensv1alpha1.ClusterStatusBackend) *metav1.LabelSelector {
		return b.Spec.AllowedNamespaces
	},
}

// StatusBackendReconciler checks StatusBackends.
type StatusBackendReconciler struct {
	client.Client
	Checker *Checker
	// CredentialsCache is a metadata-only cache of all Secrets, separate from the manager's
	// cache (which holds only managed Secrets), so a credentials Secret created or fixed
	// later is noticed at once.
	CredentialsCache cache.Cache
	// MaxConcurrentReconciles is the number of backend workers; 0 means DefaultBackendWorkers.
	MaxConcurrentReconciles int
	// Inventory gives status.tokens; nil leaves it unset.
	Inventory *inventory.Inventory
}

// SetupWithManager registers the controller and its watches.
func (r *StatusBackendReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return setupKind(mgr, r, statusBackendKind)
}

// ClusterStatusBackendReconciler checks ClusterStatusBackends; its fields are
// StatusBackendReconciler's.
type ClusterStatusBackendReconciler StatusBackendReconciler

// SetupWithManager registers the controller and its watches.
func (r *ClusterStatusBackendReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return setupKind(mgr, (*StatusBackendReconciler)(r), clusterStatusBackendKind)
}

// setupKind registers the one generic reconciler for a backend kind.
func setupKind[T client.Object](mgr ctrl.Manager, r *StatusBackendReconciler, kind backendKind[T]) error {
	return (&backendReconciler[T]{
		client: r.Client, checker: r.Checker, credentials: r.CredentialsCache, kind: kind, workers: r.MaxConcurrentReconciles, inventory: r.Inventory,
	}).SetupWithManager(mgr)
}
