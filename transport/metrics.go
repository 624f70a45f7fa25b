package transport

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// NewErrorsCounter creates streamhouse_errors_total{kind} and registers it
// with reg (nil = not registered). The agent creates it once and passes it
// to every component that reports client-visible errors (HTTPConfig.Errors,
// grpcapi.Config.Errors, the flusher and the janitor).
func NewErrorsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	return promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_errors_total",
		Help: "Error responses returned to clients, by kind (the API error code).",
	}, []string{"kind"})
}

// NewActiveConnectionsGauge creates streamhouse_active_connections and
// registers it with reg (nil = not registered). Like NewErrorsCounter, it is
// created once and passed to the public listeners (HTTPConfig.Connections,
// grpcapi.Config.Connections), which all report into it.
func NewActiveConnectionsGauge(reg prometheus.Registerer) prometheus.Gauge {
	return promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_active_connections",
		Help: "Client connections currently open to this agent's public listeners.",
	})
}

// httpMetrics are the REST server's own collectors.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// DurationBuckets are the request-latency buckets of REST and gRPC: they
// reach 30s because consume long-polls may wait that long.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	auto := promauto.With(reg)
	return &httpMetrics{
		requests: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_http_requests_total",
			Help: "REST requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: auto.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamhouse_http_request_duration_seconds",
			Help:    "REST request latency by route pattern (consume includes its long-poll wait).",
			Buckets: DurationBuckets,
		}, []string{"route"}),
	}
}
