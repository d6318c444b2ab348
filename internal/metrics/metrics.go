// Package metrics defines the operator's Prometheus metrics and registers them on
// controller-runtime's registry, which the manager serves on --metrics-bind-address.
//
// Backend request metrics come from NewBackendObserver, which the backend client calls after
// every request. Token metrics come from a store fed by the manager's APIToken informer
// (see tokens.go): it keeps the few fields each token's series need, so a scrape neither lists
// nor copies the APITokens; the counts are collected, the per-token series are written by the
// scrape itself (Handler, stream.go). Reconcile errors are
// controller-runtime's own controller_runtime_reconcile_errors_total.
//
// No label ever carries a token value: the collector reads only APIToken objects, whose
// status holds the token id and its last four characters, never the value.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric names, exported so tests and docs refer to one spelling.
const (
	BackendRequestDuration   = "apitoken_backend_request_duration_seconds"
	BackendRequestErrors     = "apitoken_backend_request_errors_total"
	Tokens                   = "apitoken_tokens"
	TokenExpirationTimestamp = "apitoken_token_expiration_timestamp_seconds"
	TokenLastUsedTimestamp   = "apitoken_token_last_used_timestamp_seconds"
	TokenInfo                = "apitoken_token_info"
	TokenCollectorSuccess    = "apitoken_token_collector_success"
)

// backendMetrics are the request metrics fed by a backend observer.
type backendMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newBackendMetrics() *backendMetrics {
	return &backendMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: BackendRequestDuration,
			Help: "Duration of requests to status backends, by operation (create, get, list, deactivate, ping, self) and HTTP status code (0 when no response arrived).",
			// From a fast local backend to the client's request timeout.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: BackendRequestErrors,
			Help: "Requests to status backends that failed (transport error, non-2xx answer or undecodable reply), by operation and HTTP status code (0 when no response arrived).",
		}, []string{"operation", "code"}),
	}
}

func (m *backendMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.duration, m.errors} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observe records one backend request.
func (m *backendMetrics) observe(op string, code int, d time.Duration, err error) {
	c := strconv.Itoa(code)
	m.duration.WithLabelValues(op, c).Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues(op, c).Inc()
	}
}

var (
	backendOnce    sync.Once
	backendShared  *backendMetrics
	collectorOnce  sync.Once
	collectorErr   error
	sharedStore    atomic.Pointer[tokenStore]
	sharedTokenCol *tokenCollector
)

// NewBackendObserver returns the observer to set as the backend client's Observer. It feeds
// apitoken_backend_request_duration_seconds and apitoken_backend_request_errors_total on
// controller-runtime's metrics registry. Every call returns an observer of the same metrics,
// so several managers in one process (tests) share them.
func NewBackendObserver() func(op string, code int, d time.Duration, err error) {
	backendOnce.Do(func() {
		backendShared = newBackendMetrics()
		if err := backendShared.register(crmetrics.Registry); err != nil {
			// Only a programming error (a clashing name) gets here; metrics must not stop the operator.
			logf.Log.WithName("metrics").Error(err, "Registering backend metrics failed")
		}
	})
	return backendShared.observe
}

// Collectors are every metric of the operator, for describing them (docs/metrics.md is
// checked against their names): the operator's own series, and collectors built like the ones
// NewBackendObserver and RegisterTokenCollector register (those are not registered).
func Collectors() []prometheus.Collector {
	b := newBackendMetrics()
	return append(append([]prometheus.Collector{}, operatorCollectors...), b.duration, b.errors, newTokenCollector(nil))
}
