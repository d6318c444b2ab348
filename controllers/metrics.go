package controllers

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// predecessorsUsedAfterGrace counts predecessors retired while still in use: the alert a
// platform team wants, since it names a consumer that never picked up the new value.
var predecessorsUsedAfterGrace = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apitoken_predecessor_used_after_grace_total",
	Help: "Replaced tokens that were still in use when their grace period ended and were retired anyway.",
}, []string{"namespace", "apitoken"})

func init() {
	registerMetric(predecessorsUsedAfterGrace)
}

// collectors are the controllers' own metrics, in the order they were registered.
var collectors []prometheus.Collector

// registerMetric registers c with controller-runtime's registry (served on /metrics) and
// remembers it for Collectors.
func registerMetric(c prometheus.Collector) {
	metrics.Registry.MustRegister(c)
	collectors = append(collectors, c)
}

// Collectors are the metrics the controllers registered, so that their reference
// (docs/metrics.md) is checked against what is served, not against a hand-kept list.
func Collectors() []prometheus.Collector { return slices.Clone(collectors) }
