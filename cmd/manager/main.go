// Command manager runs the apitoken-operator controllers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/logging"
	"github.com/statusops/apitoken-operator/internal/memlimit"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

func main() {
	var (
		o          controllers.Options
		namespaces string
		logLevel   string
		logFormat  string
		qps        float64
		burst      int
		namespaced bool
	)
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	secureMetrics := flag.Bool("metrics-secure", true, "Serve metrics over HTTPS to authenticated and authorized clients only (a bearer token allowed to get the non-resource URL /metrics); false serves plain HTTP to anyone.")
	flag.StringVar(&o.MetricsCertDir, "metrics-cert-path", "", "Directory holding the metrics server's certificate and key; empty generates a self-signed certificate.")
	flag.StringVar(&o.MetricsCertName, "metrics-cert-name", "tls.crt", "File name of the metrics server's certificate in --metrics-cert-path.")
	flag.StringVar(&o.MetricsKeyName, "metrics-cert-key", "tls.key", "File name of the metrics server's key in --metrics-cert-path.")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "Address of the net/http/pprof endpoints, for profiling; \"0\" disables them.")
	flag.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&o.LeaderElection, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&o.LeaderElectionID, "leader-election-id", "apitoken-operator.statusops.dev", "Name of the leader-election Lease.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the Pod's namespace).")
	flag.DurationVar(&o.SyncInterval, "sync-interval", time.Minute, "How often each backend's token list is read for last-used information and revocations.")
	flag.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 16, "APITokens reconciled in parallel.")
	reviewWindow := flag.Duration("permission-review-window", 720*time.Hour, "Window of the least-privilege review: a FullAccess token with no write in it is reported (LeastPrivilege=False, UnusedWritePermission). 0 turns the review off.")
	flag.StringVar(&o.ClusterName, "cluster-name", "", "This cluster's identity, put as a label on every token it creates, so that clusters sharing a backend account never count or clean up each other's tokens; empty means the kube-system namespace's UID. Changing it later makes the tokens already issued count as another cluster's.")
	flag.BoolVar(&o.RestartWorkloads, "restart-workloads", false, "Roll out the Deployments, StatefulSets and DaemonSets annotated tokens.statusops.dev/restart-on-rotate when a named APIToken's token changes (needs patch rights on those kinds).")
	flag.IntVar(&o.MaxConcurrentRestarts, "max-concurrent-restarts", 10, "Rollouts of opted-in workloads in flight at once, cluster-wide; one namespace may hold a quarter of them (rounded up, at least one).")
	flag.DurationVar(&o.RestartSlotTimeout, "restart-slot-timeout", 10*time.Minute, "Longest time one rollout counts against --max-concurrent-restarts; a rollout still in progress after it blocks no other. A failed (ProgressDeadlineExceeded) or deleted workload gives its slot back at once.")
	flag.DurationVar(&o.RestartDebounce, "restart-debounce", 10*time.Second, "How long after the last token change an opted-in workload is rolled out, so tokens rotating together cause one rollout.")
	flag.IntVar(&o.IssuanceBudget, "issuance-budget", 5, "Most tokens one APIToken may have created within 10 minutes; past it the APIToken is Stalled (IssuanceLimited). Negative: no limit.")
	flag.IntVar(&o.MaxInFlightPerBackend, "max-inflight-per-backend", 4, "Requests in flight to one backend at most; APITokens beyond it requeue shortly, so a hanging backend holds only this many workers. Negative: no cap.")
	flag.BoolVar(&namespaced, "namespaced-backends", true, "Reconcile namespaced StatusBackends. Off allows only ClusterStatusBackends: a StatusBackend's URL is chosen by a tenant and called from the operator's network.")
	flag.StringVar(&namespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	flag.StringVar(&logLevel, "log-level", "info", "Log level: debug, info, error, or a number N for verbosity V(N).")
	flag.StringVar(&logFormat, "log-format", "json", "Log format: json or console.")
	flag.Float64Var(&qps, "kube-api-qps", 300, "Queries per second to the Kubernetes API server (client-side limit; the server's priority and fairness still applies).")
	flag.IntVar(&burst, "kube-api-burst", 600, "Burst of queries to the Kubernetes API server.")
	flag.Parse()

	level, err := logging.ParseLogLevel(logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Every logger of the process (controller-runtime's, klog's, client-go's) is capped at
	// logging.MaxVerbosity, whatever --log-level says: above it client-go logs Secret bodies.
	if err := logging.SetGlobalLoggers(logging.NewLogger(level, logFormat == "console", nil), level); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if memlimit.SetGCPercentDefault() {
		ctrl.Log.V(1).Info("Set the garbage collector's target; GOGC overrides it", "gcPercent", memlimit.DefaultGCPercent)
	}
	if soft := memlimit.SetMemoryLimitFromCgroup(); soft > 0 {
		ctrl.Log.Info("Set the Go memory limit from the container's", "bytes", soft)
	}
	o.InsecureMetrics = !*secureMetrics
	o.WatchNamespaces = controllers.SplitNamespaces(namespaces)
	o.PermissionReviewWindow = reviewWindow
	o.DisableNamespacedBackends = !namespaced
	o.BackendObserver = metrics.NewBackendObserver()
	o.Setup = func(mgr manager.Manager) error {
		return metrics.RegisterTokenCollector(context.Background(), mgr.GetCache())
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		ctrl.Log.Error(err, "Loading kubeconfig failed")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	if err := controllers.Run(ctrl.SetupSignalHandler(), cfg, o); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}
