package grpcapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/transport"
)

// metrics are the gRPC server's collectors.
type metrics struct {
	// streamhouse_grpc_requests_total{method,code} and
	// streamhouse_grpc_request_duration_seconds{method} (REST's buckets:
	// they reach 30 s for long-poll fetches; Subscribe streams last as long
	// as their client keeps them open).
	transport.RequestMetrics
	errors *prometheus.CounterVec // shared streamhouse_errors_total{kind} (Config.Errors)
	active prometheus.Gauge       // shared streamhouse_active_connections (Config.Connections)
}

// newMetrics registers the server's own collectors with cfg.Registerer and
// takes the shared ones from cfg (nil: not counted).
func newMetrics(cfg Config) *metrics {
	m := &metrics{
		RequestMetrics: transport.NewRequestMetrics(cfg.Registerer, "grpc", "method",
			"gRPC calls served, by full method name and status code.",
			"gRPC call latency by full method name (long-poll fetches include their wait; streams their lifetime)."),
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
