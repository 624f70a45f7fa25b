package pgsync

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the Checkpointer's collectors.
type metrics struct {
	lag       prometheus.Gauge
	total     prometheus.Counter
	failures  prometheus.Counter
	duration  prometheus.Histogram
	raftIndex prometheus.Gauge
}

// newMetrics creates the collectors and registers them with reg (nil = not
// registered): one Checkpointer per registry.
func newMetrics(reg prometheus.Registerer) *metrics {
	auto := promauto.With(reg)
	return &metrics{
		lag: auto.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_checkpoint_lag_seconds",
			Help: "On the Raft leader, seconds since the capture of the newest state known to be in PostgreSQL (grows while checkpoints fail); 0 elsewhere.",
		}),
		total: auto.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_checkpoints_total",
			Help: "Checkpoints written to PostgreSQL by this agent.",
		}),
		failures: auto.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_checkpoint_failures_total",
			Help: "Checkpoint attempts that failed (PostgreSQL unreachable or slow, cluster mismatch, ...); stale-guard rejections are not failures.",
		}),
		duration: auto.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamhouse_checkpoint_duration_seconds",
			Help:    "Duration of checkpoint writes to PostgreSQL, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		raftIndex: auto.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_checkpoint_raft_index",
			Help: "Raft index of the last checkpoint this agent wrote (or found unchanged).",
		}),
	}
}
