// Package controllers is the operator's composition root, kubebuilder's main.go made
// importable: Options, NewManager and Run (manager.go), what the manager's cache keeps
// (cache.go), the shared machinery and the reconcilers wired together (setup.go), and the
// recorder, REST mapper and undecodable-object reporter every reconciler shares.
//
// # The packages below it
//
//	apitoken/         the APIToken reconciler: gather -> decide -> act -> report -> one status write
//	apitoken/policy/  pure: Decide (the whole policy), Report (the only writer of conditions and
//	                  phase), the Ledger of token changes, rotation, the least-privilege review,
//	                  the managed Secret as it should be. No client, no context, no clock.
//	statusbackend/    StatusBackend and ClusterStatusBackend, one generic reconciler; the backend
//	                  check (classifyBackend is its pure decision) and the credentials finalizer
//	workloadrestart/  rolls out opted-in workloads when a named token changes
//	registry/         the drivers of Ready backends (a read side, Getter); the in-flight bulkhead;
//	                  the tenant-safe wording of backend errors
//	inventory/        lists each registered backend once per interval; what a listing says about
//	                  one APIToken; whose token is whose (cluster identity)
//	backendkey/       names a backend; the backends an APIToken depends on; their index
//	secretcache/      what the cache keeps of a managed Secret: metadata and a hash of the token
//
// # Which may import which (test/install/imports_test.go holds it)
//
//	controllers (root)          -> every controllers/* package, internal/{metricsauth,logging,metrics,backend}, api
//	controllers/apitoken        -> apitoken/policy, registry, inventory, backendkey, secretcache, workloadrestart, internal/{backend,metrics}, api
//	controllers/statusbackend   -> registry, inventory, backendkey, secretcache, internal/{backend,metrics}, api
//	controllers/workloadrestart -> internal/metrics, api
//	controllers/inventory       -> registry, backendkey, internal/backend, api
//	controllers/registry        -> backendkey, internal/{backend,metrics}
//	controllers/apitoken/policy -> backendkey, secretcache, internal/backend (types only), api
//	controllers/backendkey      -> api (no client: apitoken.IndexBackends registers its index)
//	controllers/secretcache     -> api
//
// No reconciler imports another; nothing but cmd/ and tests imports this root; policy imports
// no client, context or clock; nothing under internal/ imports controllers/...; and
// internal/backend (the port and its drivers) imports no Kubernetes package.
package controllers
