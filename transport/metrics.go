package transport

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// NewErrorsCounter creates streamhouse_errors_total{kind} and registers it
// with reg (nil = not registered). The agent creates it once and passes it
// to every component that reports client-visible errors (HTTPConfig.Errors,
// grpcapi.Config.Errors, the flusher and the janitor). Every error code of
// the error table and every kind in more (the background failures) is
// exported at 0 from the start, so alerts and rate() see the first error.
func NewErrorsCounter(reg prometheus.Registerer, more ...string) *prometheus.CounterVec {
	v := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_errors_total",
		Help: "Error responses returned to clients, by kind (the API error code), and background failures by kind.",
	}, []string{"kind"})
	for _, k := range errorKinds {
		v.WithLabelValues(k.Code)
	}
	for _, k := range more {
		v.WithLabelValues(k)
	}
	return v
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

// RequestMetrics are a public listener's request counter and latency
// histogram.
type RequestMetrics struct {
	Requests *prometheus.CounterVec   // streamhouse_<proto>_requests_total{<label>,code}
	Duration *prometheus.HistogramVec // streamhouse_<proto>_request_duration_seconds{<label>}
}

// durationBuckets reach 30s because consume long-polls may wait that long.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewRequestMetrics creates streamhouse_<proto>_requests_total{label,code}
// and streamhouse_<proto>_request_duration_seconds{label} with the help
// texts given, and registers them with reg (nil = not registered).
func NewRequestMetrics(reg prometheus.Registerer, proto, label, requestsHelp, durationHelp string) RequestMetrics {
	auto := promauto.With(reg)
	return RequestMetrics{
		Requests: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_" + proto + "_requests_total", Help: requestsHelp,
		}, []string{label, "code"}),
		Duration: auto.NewHistogramVec(prometheus.HistogramOpts{
			Name: "streamhouse_" + proto + "_request_duration_seconds", Help: durationHelp, Buckets: durationBuckets,
		}, []string{label}),
	}
}

func newHTTPMetrics(reg prometheus.Registerer) RequestMetrics {
	return NewRequestMetrics(reg, "http", "route", "REST requests served, by route pattern and status code.",
		"REST request latency by route pattern (consume includes its long-poll wait).")
}
