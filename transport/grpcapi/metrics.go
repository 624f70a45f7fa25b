package grpcapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/streamhouse/streamhouse/transport"
)

// metrics are the gRPC server's collectors.
type metrics struct {
	requests *prometheus.CounterVec   // streamhouse_grpc_requests_total{method,code}
	duration *prometheus.HistogramVec // streamhouse_grpc_request_duration_seconds{method}
	errors   *prometheus.CounterVec   // shared streamhouse_errors_total{kind} (Config.Errors)
	active   prometheus.Gauge         // shared streamhouse_active_connections (Config.Connections)
}

// newMetrics registers the server's own collectors with cfg.Registerer
// (REST's duration buckets: they reach 30 s for long-poll fetches;
// Subscribe streams last as long as their client keeps them open) and
// takes the shared ones from cfg (nil: not counted).
func newMetrics(cfg Config) *metrics {
	auto := promauto.With(cfg.Registerer)
	m := &metrics{
		requests: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_grpc_requests_total",
			Help: "gRPC calls served, by full method name and status code.",
		}, []string{"method", "code"}),
		duration: auto.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamhouse_grpc_request_duration_seconds",
			Help:    "gRPC call latency by full method name (long-poll fetches include their wait; streams their lifetime).",
			Buckets: transport.DurationBuckets,
		}, []string{"method"}),
		errors: cfg.Errors,
		active: cfg.Connections,
	}
	if m.errors == nil {
		m.errors = transport.NewErrorsCounter(nil)
	}
	if m.active == nil {
		m.active = transport.NewActiveConnectionsGauge(nil)
	}
	return m
}
