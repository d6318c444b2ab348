package controllers

import (
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
	metrics.Registry.MustRegister(predecessorsUsedAfterGrace)
}
