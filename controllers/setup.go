package controllers

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/apitoken"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/controllers/statusbackend"
	"github.com/statusops/apitoken-operator/controllers/workloadrestart"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/drivers"
)

// shared is the machinery the reconcilers share: the registry of Ready backends, the
// backend checker, the inventory, the credentials cache, the event recorder and the cluster's
// identity.
type shared struct {
	registry  *registry.Registry
	checker   *statusbackend.Checker
	inventory *inventory.Inventory
	credCache cache.Cache
	recorder  *oneOffRecorder
	cluster   string
}

// setupReconcilers builds the shared machinery and registers every reconciler.
func setupReconcilers(mgr manager.Manager, scheme *runtime.Scheme, logger logr.Logger, o Options) error {
	s, err := newShared(mgr, scheme, logger, o)
	if err != nil {
		return err
	}
	if !o.DisableNamespacedBackends {
		if err := (&statusbackend.StatusBackendReconciler{Client: mgr.GetClient(), Checker: s.checker, CredentialsCache: s.credCache, Inventory: s.inventory}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if err := (&statusbackend.ClusterStatusBackendReconciler{Client: mgr.GetClient(), Checker: s.checker, CredentialsCache: s.credCache, Inventory: s.inventory}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := mgr.Add(s.inventory); err != nil {
		return err
	}
	if err := (&apitoken.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: scheme, Recorder: s.recorder,
		Registry: s.registry, Inventory: s.inventory, SecretMetadata: s.credCache, Clock: o.Clock,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles, IssuanceBudget: issuanceBudget(o.IssuanceBudget),
		PermissionReviewWindow: o.PermissionReviewWindow, RestartWorkloads: o.RestartWorkloads,
		NamespacedBackendsDisabled: o.DisableNamespacedBackends, ClusterIdentity: s.cluster,
	}).With(o.ReconcilerOptions...).SetupWithManager(mgr); err != nil {
		return err
	}
	if !o.RestartWorkloads {
		return nil
	}
	return workloadrestart.SetupRestarters(mgr, workloadrestart.WorkloadRestarter{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: s.recorder,
		Clock: o.Clock, Debounce: orDefault(o.RestartDebounce, workloadrestart.DefaultRestartDebounce),
		Limit: workloadrestart.NewRolloutLimit(orDefault(o.MaxConcurrentRestarts, workloadrestart.DefaultMaxConcurrentRestarts),
			orDefault(o.RestartSlotTimeout, workloadrestart.DefaultRestartSlotTimeout), o.Clock),
	})
}

// newShared builds the shared machinery and adds its runnables to the manager.
func newShared(mgr manager.Manager, scheme *runtime.Scheme, logger logr.Logger, o Options) (*shared, error) {
	credCache, err := newCredentialsCache(mgr, scheme)
	if err != nil {
		return nil, err
	}
	cluster, err := inventory.ResolveClusterIdentity(context.Background(), mgr.GetAPIReader(), o.ClusterName)
	if err != nil {
		return nil, err
	}
	recorder, err := newRecorder(mgr, scheme)
	if err != nil {
		return nil, err
	}
	// An object the informers cannot decode is left out of the cache (api/v1alpha1's lists) and
	// reported where its owner sees it.
	if err := mgr.Add(NewUndecodableReporter(recorder, logger.WithName("undecodable"))); err != nil {
		return nil, err
	}
	reg := registry.New(registry.WithMaxInFlightPerBackend(o.MaxInFlightPerBackend))
	inv := inventory.New(reg, mgr.GetClient(), o.SyncInterval, o.Clock)
	inv.ClusterIdentity = cluster
	inv.TokensOf = inventory.IndexedTokens(mgr.GetCache())
	checker := statusbackend.NewChecker(mgr.GetAPIReader(), reg, driverFactory(o, cluster))
	return &shared{registry: reg, checker: checker, inventory: inv, credCache: credCache, recorder: recorder, cluster: cluster}, nil
}

// driverFactory builds the driver each backend names (drivers.New), with the cluster's
// identity and the request observer.
func driverFactory(o Options, cluster string) backend.Factory {
	newDriver := o.NewBackendClient
	if newDriver == nil {
		newDriver = drivers.New
	}
	return func(c backend.Config) (backend.Driver, error) {
		c.Cluster = cluster
		if o.BackendObserver != nil {
			c.Observer = o.BackendObserver
		}
		return newDriver(c)
	}
}

// newCredentialsCache is the metadata-only cache of the Secrets the manager's cache leaves
// out. Credentials Secrets carry no label of ours, so they are watched through it: a few
// hundred bytes each, whatever their data size. It also tells a foreign Secret in an
// APIToken's way, and wakes the APIToken when it goes. The managed Secrets are left out (the
// managed cache holds them): the two selectors split the Secrets between the caches, so none
// is cached twice. (A credentials Secret that carried our managed-by label would not be
// watched; a backend's admin token is never one the operator issued.)
func newCredentialsCache(mgr manager.Manager, scheme *runtime.Scheme) (cache.Cache, error) {
	notManaged, err := labels.Parse(tokensv1alpha1.LabelManagedBy + "!=" + tokensv1alpha1.ManagedByValue)
	if err != nil {
		return nil, err
	}
	credCache, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: scheme, Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		DefaultTransform: chainTransforms(trimSecretMetadata, internObject), DefaultLabelSelector: notManaged,
	})
	if err != nil {
		return nil, fmt.Errorf("creating credentials cache: %w", err)
	}
	return credCache, mgr.Add(credCache)
}

// newRecorder is the operator's event recorder. Normal Events skip client-go's series cache,
// which would hold each for minutes. They are sent as protobuf, which the API server decodes
// for less than JSON: one Event per issuance is a fifth of the writes of a burst.
func newRecorder(mgr manager.Manager, scheme *runtime.Scheme) (*oneOffRecorder, error) {
	eventsConfig := rest.CopyConfig(mgr.GetConfig())
	eventsConfig.ContentType = runtime.ContentTypeProtobuf
	eventsConfig.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	eventsClient, err := eventsv1client.NewForConfigAndClient(eventsConfig, mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("creating the events client: %w", err)
	}
	recorder := newOneOffRecorder(mgr.GetEventRecorder("apitoken-operator"), eventsClient, scheme, "apitoken-operator")
	return recorder, mgr.Add(recorder)
}

// cacheOptions is what the manager's cache keeps. It caches only the Secrets this operator
// manages: unrelated Secrets (which can be large and many) cost no memory. Credentials
// Secrets are watched metadata-only and read uncached.
func cacheOptions(o Options) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue})
	opts := cache.Options{
		// managedFields and kubectl's last-applied copy are a large share of every cached
		// object and are never read here.
		DefaultTransform: chainTransforms(trimForCache, internObject),
		ByObject: map[client.Object]cache.ByObject{
			// Anyone who may create a Secret can give it the managed-by label: the cache
			// keeps only what the operator reads and a hash of the token, so such Secrets
			// cost bounded memory and no token value sits in the operator's heap.
			&corev1.Secret{}: {Label: managed, Transform: chainTransforms(trimForCache, secretcache.TrimManagedSecret, internObject)},
		},
	}
	if len(o.WatchNamespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.WatchNamespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}
