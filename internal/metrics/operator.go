package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The operator's own series, beside the request and token metrics above. They are registered
// on controller-runtime's registry when this package is loaded, so every manager of a process
// (tests run several) feeds the same ones.
var (
	// PredecessorsUsedAfterGrace counts predecessors retired while still in use: the alert a
	// platform team wants, since it names a consumer that never picked up the new value.
	PredecessorsUsedAfterGrace = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_predecessor_used_after_grace_total",
		Help: "Replaced tokens that were still in use when their grace period ended and were retired anyway.",
	}, []string{"namespace", "apitoken"})

	// LeastPrivilegeFindings is one gauge per finding, 1 while it holds, absent otherwise.
	LeastPrivilegeFindings = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_least_privilege_finding",
		Help: "1 while the least-privilege review finds UnusedWritePermission or WritesDenied for an APIToken.",
	}, []string{"namespace", "apitoken", "finding"})

	// BackendTokens is status.tokens of each backend as a gauge, so that unmanaged tokens can
	// be alerted on and graphed over time (a review that goes down to zero).
	BackendTokens = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_backend_tokens",
		Help: "Active tokens on a backend by who manages them (status.tokens): managed, unmanaged_active, unmanaged_full_access (a subset of unmanaged_active), other_clusters.",
	}, []string{"kind", "namespace", "backend", "class"})

	// BackendSlotWaits counts the passes the in-flight cap refused and queued: how often a
	// backend's cap is the bottleneck (raise --max-inflight-per-backend if the backend can
	// take more), and how often a replay of a create whose reply was lost went first in line.
	BackendSlotWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_backend_slot_waits_total",
		Help: "Reconcile passes refused by a backend's in-flight cap (--max-inflight-per-backend) that waited for a slot; first=\"true\" for passes put first in line (the replay of a create whose reply was lost).",
	}, []string{"kind", "namespace", "backend", "first"})

	// WorkloadRestarts counts the rollouts of opted-in workloads.
	WorkloadRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_workload_restarts_total",
		Help: "Rollouts of opted-in workloads triggered because a named APIToken's token changed.",
	}, []string{"namespace", "apitoken", "kind", "name"})

	// UndecodableObjects counts the objects left out of the operator's cache because they did
	// not decode; the Event and the log line name each one.
	UndecodableObjects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_undecodable_objects_total",
		Help: "Objects the operator left out of its cache because they did not decode as stored (the Undecodable Event and the log name each).",
	}, []string{"kind"})
)

// operatorCollectors are the series above, in the order docs/metrics.md lists them.
var operatorCollectors = []prometheus.Collector{BackendTokens, BackendSlotWaits, PredecessorsUsedAfterGrace, WorkloadRestarts, LeastPrivilegeFindings, UndecodableObjects}

func init() {
	for _, c := range operatorCollectors {
		crmetrics.Registry.MustRegister(c)
	}
}
