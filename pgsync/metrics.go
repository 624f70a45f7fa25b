package pgsync

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Checkpointer's collectors.
type metrics struct {
	lag       prometheus.Gauge
	total     prometheus.Counter
	failures  prometheus.Counter
	duration  prometheus.Histogram
	raftIndex prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		lag: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_checkpoint_lag_seconds",
			Help: "On the Raft leader, seconds since the capture of the newest state known to be in PostgreSQL (grows while checkpoints fail); 0 elsewhere.",
		})),
		total: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_checkpoints_total",
			Help: "Checkpoints written to PostgreSQL by this agent.",
		})),
		failures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_checkpoint_failures_total",
			Help: "Checkpoint attempts that failed (PostgreSQL unreachable or slow, cluster mismatch, ...); stale-guard rejections are not failures.",
		})),
		duration: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamhouse_checkpoint_duration_seconds",
			Help:    "Duration of checkpoint writes to PostgreSQL, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		})),
		raftIndex: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_checkpoint_raft_index",
			Help: "Raft index of the last checkpoint this agent wrote (or found unchanged).",
		})),
	}
}

// register registers c with reg (nil = leave unregistered). When an equal
// collector is already registered (a second Checkpointer on the same
// registry), the existing one is returned so both report into it. Any other
// registration error is a programming error and panics, like
// prometheus.MustRegister.
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
	panic(fmt.Sprintf("pgsync: registering metrics: %v", err))
}
