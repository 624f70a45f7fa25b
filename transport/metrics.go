package transport

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// NewErrorsCounter creates streamhouse_errors_total{kind} and registers it
// with reg (nil = not registered). The counter is shared by the packages that
// report client-visible errors; if reg already holds it, the existing counter
// is returned, so every package may call this with the agent's registry.
func NewErrorsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_errors_total",
		Help: "Error responses returned to clients, by kind (the API error code).",
	}, []string{"kind"}))
}

// NewActiveConnectionsGauge creates streamhouse_active_connections and
// registers it with reg (nil = not registered). Like NewErrorsCounter, it
// returns the already registered gauge when reg holds one, so the public
// listeners (REST, gRPC) of one agent all report into a single gauge.
func NewActiveConnectionsGauge(reg prometheus.Registerer) prometheus.Gauge {
	return register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_active_connections",
		Help: "Client connections currently open to this agent's public listeners.",
	}))
}

// httpMetrics are the REST server's own collectors.
type httpMetrics struct {
	active   prometheus.Gauge
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// durationBuckets reach 30s because consume long-polls may wait that long.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	return &httpMetrics{
		active: NewActiveConnectionsGauge(reg),
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_http_requests_total",
			Help: "REST requests served, by route pattern and status code.",
		}, []string{"route", "code"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamhouse_http_request_duration_seconds",
			Help:    "REST request latency by route pattern (consume includes its long-poll wait).",
			Buckets: durationBuckets,
		}, []string{"route"})),
	}
}

// register registers c with reg (nil = leave unregistered). When an equal
// collector is already registered (a second server on the same registry, or
// the shared errors counter), the existing one is returned so both report
// into it. Any other registration error is a programming error and panics,
// like prometheus.MustRegister.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("transport: registering metrics: %v", err))
}
