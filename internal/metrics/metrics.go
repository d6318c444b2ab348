// Package metrics defines the operator's Prometheus metrics and registers them on
// controller-runtime's registry, which the manager serves on --metrics-bind-address.
//
// Backend request metrics come from NewBackendObserver, which the backend client calls after
// every request. Token metrics come from a collector that, at scrape time, lists the APITokens
// from the manager's cache (no API server call, no state kept between scrapes). Reconcile
// errors are controller-runtime's own controller_runtime_reconcile_errors_total.
//
// No label ever carries a token value: the collector reads only APIToken objects, whose
// status holds the token id and its last four characters, never the value.
package metrics

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
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

// listTimeout bounds the cache read of one scrape.
const listTimeout = 10 * time.Second

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
	sharedReader   atomic.Pointer[readerBox]
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

// RegisterTokenCollector registers, on controller-runtime's metrics registry, the collector of
// the per-token metrics, reading APITokens from reader (the manager's cached client). A later
// call replaces the reader, so the newest manager in a process is the one reported.
func RegisterTokenCollector(reader client.Reader) error {
	if reader == nil {
		return errors.New("metrics: RegisterTokenCollector needs a reader")
	}
	sharedReader.Store(&readerBox{reader})
	collectorOnce.Do(func() {
		sharedTokenCol = newTokenCollector(func() client.Reader { return sharedReader.Load().reader })
		collectorErr = crmetrics.Registry.Register(sharedTokenCol)
	})
	return collectorErr
}

type readerBox struct{ reader client.Reader }

// Collectors are collectors built like the ones NewBackendObserver and RegisterTokenCollector
// register, for describing them (docs/metrics.md is checked against their names); they are
// not registered.
func Collectors() []prometheus.Collector {
	b := newBackendMetrics()
	return []prometheus.Collector{b.duration, b.errors, newTokenCollector(nil)}
}

// tokenCollector emits the token metrics from a list of APITokens taken at scrape time.
type tokenCollector struct {
	reader func() client.Reader

	tokens, expiration, lastUsed, info, success *prometheus.Desc
}

func newTokenCollector(reader func() client.Reader) *tokenCollector {
	return &tokenCollector{
		reader: reader,
		tokens: prometheus.NewDesc(Tokens,
			"APITokens by phase (Pending, Active, Inactive, Failed; Pending before the first reconcile) and permission (of the issued token, else the requested one).",
			[]string{"phase", "permission"}, nil),
		expiration: prometheus.NewDesc(TokenExpirationTimestamp,
			"Expiry of the token in each APIToken's Secret, as the backend reports it, in seconds since the Unix epoch; absent when the token never expires or none is issued.",
			[]string{"namespace", "name"}, nil),
		lastUsed: prometheus.NewDesc(TokenLastUsedTimestamp,
			"When each APIToken's token last authenticated on the backend, in seconds since the Unix epoch; absent when never used. Refreshed once per sync interval.",
			[]string{"namespace", "name"}, nil),
		info: prometheus.NewDesc(TokenInfo,
			"Always 1; labels identify the backend token of each APIToken (token_id is the backend's id, never the value).",
			[]string{"namespace", "name", "token_id", "permission", "phase"}, nil),
		success: prometheus.NewDesc(TokenCollectorSuccess,
			"1 when the APITokens could be listed for this scrape, 0 when not (the token metrics are then missing).",
			nil, nil),
	}
}

// Describe sends the descriptors of every metric the collector emits.
func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tokens, c.expiration, c.lastUsed, c.info, c.success} {
		ch <- d
	}
}

// phases and permissions are emitted even at zero, so an alert on a count has a series.
var (
	phases      = []tokensv1alpha1.APITokenPhase{tokensv1alpha1.PhasePending, tokensv1alpha1.PhaseActive, tokensv1alpha1.PhaseInactive, tokensv1alpha1.PhaseFailed}
	permissions = []tokensv1alpha1.Permission{tokensv1alpha1.PermissionReadOnly, tokensv1alpha1.PermissionFullAccess}
)

// Collect lists the APITokens and emits their metrics. A failed list is logged and reported
// as apitoken_token_collector_success 0 rather than failing the whole scrape.
func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list tokensv1alpha1.APITokenList
	if err := c.reader().List(ctx, &list); err != nil {
		logf.Log.WithName("metrics").Error(err, "Listing APITokens for metrics failed")
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 1)

	type key struct {
		phase      tokensv1alpha1.APITokenPhase
		permission tokensv1alpha1.Permission
	}
	counts := map[key]float64{}
	for _, ph := range phases {
		for _, p := range permissions {
			counts[key{ph, p}] = 0
		}
	}
	for i := range list.Items {
		t := &list.Items[i]
		phase, permission := phaseOf(t), permissionOf(t)
		counts[key{phase, permission}]++
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1,
			t.Namespace, t.Name, t.Status.TokenID, string(permission), string(phase))
		if t.Status.ExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(c.expiration, prometheus.GaugeValue,
				float64(t.Status.ExpiresAt.Unix()), t.Namespace, t.Name)
		}
		if t.Status.LastUsedAt != nil {
			ch <- prometheus.MustNewConstMetric(c.lastUsed, prometheus.GaugeValue,
				float64(t.Status.LastUsedAt.Unix()), t.Namespace, t.Name)
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.GaugeValue, n, string(k.phase), string(k.permission))
	}
}

// phaseOf is the APIToken's phase; one not yet reconciled counts as Pending.
func phaseOf(t *tokensv1alpha1.APIToken) tokensv1alpha1.APITokenPhase {
	if t.Status.Phase == "" {
		return tokensv1alpha1.PhasePending
	}
	return t.Status.Phase
}

// permissionOf is the permission of the issued token, or the requested one before any is issued.
func permissionOf(t *tokensv1alpha1.APIToken) tokensv1alpha1.Permission {
	if t.Status.Permission != "" {
		return t.Status.Permission
	}
	return t.Spec.Permission
}
