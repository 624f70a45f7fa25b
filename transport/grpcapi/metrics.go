package grpcapi

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/transport"
)

// metrics are the gRPC server's collectors.
type metrics struct {
	requests *prometheus.CounterVec   // streamhouse_grpc_requests_total{method,code}
	duration *prometheus.HistogramVec // streamhouse_grpc_request_duration_seconds{method}
	errors   *prometheus.CounterVec   // shared streamhouse_errors_total{kind}
	active   prometheus.Gauge         // shared streamhouse_active_connections
}

// durationBuckets match REST's: they reach 30 s for long-poll fetches.
// Subscribe streams last as long as their client keeps them open.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_grpc_requests_total",
			Help: "gRPC calls served, by full method name and status code.",
		}, []string{"method", "code"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamhouse_grpc_request_duration_seconds",
			Help:    "gRPC call latency by full method name (long-poll fetches include their wait; streams their lifetime).",
			Buckets: durationBuckets,
		}, []string{"method"})),
		errors: transport.NewErrorsCounter(reg),
		active: transport.NewActiveConnectionsGauge(reg),
	}
}

// register registers c with reg (nil = leave unregistered), returning the
// collector already registered when there is one (a second server on the
// same registry), like transport's helper of the same name.
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
	panic(fmt.Sprintf("grpcapi: registering metrics: %v", err))
}
