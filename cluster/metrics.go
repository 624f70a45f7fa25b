package cluster

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg          prometheus.Registerer
	applyLatency prometheus.Histogram
	collectors   []prometheus.Collector
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{reg: reg}
	m.applyLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "streamhouse_raft_apply_duration_seconds",
		Help:    "Time from proposing a command to its apply result on this node.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	m.collectors = []prometheus.Collector{
		m.applyLatency,
		gauge("streamhouse_raft_state", "Raft state of this node: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
			func() float64 { return float64(n.raft.State()) }),
		gauge("streamhouse_raft_is_leader", "1 if this node is the Raft leader.", func() float64 {
			if n.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("streamhouse_raft_term", "Current Raft term.", func() float64 { return float64(n.raft.CurrentTerm()) }),
		gauge("streamhouse_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.raft.CommitIndex()) }),
		gauge("streamhouse_raft_applied_index", "Raft applied index.", func() float64 { return float64(n.raft.AppliedIndex()) }),
		gauge("streamhouse_raft_last_index", "Last Raft log index.", func() float64 { return float64(n.raft.LastIndex()) }),
		gauge("streamhouse_raft_has_leader", "1 if this node knows a Raft leader.", func() float64 {
			if addr, _ := n.raft.LeaderWithID(); addr != "" {
				return 1
			}
			return 0
		}),
	}
	for _, c := range m.collectors {
		reg.MustRegister(c)
	}
	return m
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
