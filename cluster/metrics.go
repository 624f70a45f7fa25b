package cluster

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the cluster's counters. Every one is exported at 0 from
// the start (newMetrics), so dashboards and rate() see the first event.
const (
	changeAddNonvoter   = "add_nonvoter"
	changePromote       = "promote"
	changeRemove        = "remove"
	changeUpdateAddress = "update_address"

	rpcRequestVote     = "request_vote"
	rpcRequestPreVote  = "request_pre_vote"
	rpcAppendEntries   = "append_entries"
	rpcHeartbeat       = "heartbeat"
	rpcInstallSnapshot = "install_snapshot"
	rpcTimeoutNow      = "timeout_now"
	rpcOther           = "other"
)

var (
	leadershipReasons = []string{moveUnassigned, moveNotMember, moveFailover, moveRebalance}
	membershipChanges = []string{changeAddNonvoter, changePromote, changeRemove, changeUpdateAddress}
	forwardOutcomes   = []string{outcomeOK, outcomeNotApplied, outcomeUnknown, outcomeInvalid}
	refusedRPCs       = []string{rpcRequestVote, rpcRequestPreVote, rpcAppendEntries, rpcHeartbeat, rpcInstallSnapshot, rpcTimeoutNow} // not rpcOther: never expected
)

// withLabels creates the series of every value (at 0) and returns v.
func withLabels(v *prometheus.CounterVec, values []string) *prometheus.CounterVec {
	for _, l := range values {
		v.WithLabelValues(l)
	}
	return v
}

type metrics struct {
	reg             prometheus.Registerer
	applyLatency    prometheus.Histogram
	leadershipMoves *prometheus.CounterVec
	membership      *prometheus.CounterVec
	forwarded       *prometheus.CounterVec
	leaderElections prometheus.Counter
	collectors      []prometheus.Collector
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{reg: reg}
	m.applyLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "streamhouse_raft_apply_duration_seconds",
		Help:    "Time from proposing a command to its apply result on this node.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	}
	m.leadershipMoves = counterVec("streamhouse_partition_leadership_changes_total",
		"Partition leadership changes made by this agent's controller (while Raft leader), by reason: unassigned, not_member, failover, rebalance.",
		"reason")
	m.membership = counterVec("streamhouse_raft_membership_changes_total",
		"Raft configuration changes made by this agent's leader loop, by change: add_nonvoter, promote, remove, update_address.",
		"change")
	m.forwarded = counterVec("streamhouse_raft_forwarded_proposals_total",
		"Proposals forwarded to the Raft leader, by outcome: ok, not_applied, unknown, invalid.",
		"outcome")
	withLabels(m.leadershipMoves, leadershipReasons)
	withLabels(m.membership, membershipChanges)
	withLabels(m.forwarded, forwardOutcomes)
	withLabels(n.transport.refused, refusedRPCs)
	m.leaderElections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_raft_leadership_acquired_total",
		Help: "Times this agent became the Raft leader.",
	})
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	r := n.r()
	m.collectors = []prometheus.Collector{
		m.applyLatency, m.leadershipMoves, m.membership, m.forwarded, m.leaderElections, n.transport.refused,
		&gossipCollector{n: n, desc: prometheus.NewDesc("streamhouse_gossip_members",
			"Agents in this agent's gossip view, by state (alive, dead, left).", []string{"state"}, nil)},
		gauge("streamhouse_raft_state", "Raft state of this node: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
			func() float64 { return float64(r.State()) }),
		gauge("streamhouse_raft_is_leader", "1 if this node is the Raft leader.", func() float64 {
			if r.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("streamhouse_raft_joins_held_back", "Agents alive in gossip that this Raft leader keeps out of the configuration because their version is older than the cluster's state needs (0 on a follower).", func() float64 {
			if r.State() != raft.Leader {
				return 0
			}
			return float64(n.behindJoins.Load())
		}),
		gauge("streamhouse_raft_term", "Current Raft term.", func() float64 { return float64(r.CurrentTerm()) }),
		gauge("streamhouse_raft_log_write_failing", "1 while this agent's own queued Raft log write fails and is retried (RAFT_PARALLEL_LEADER_WRITE), or a Raft log write it began as leader has made no progress for 10 s of the agent's running time: it applies nothing meanwhile.", func() float64 {
			if _, err := n.logWriteFailure(); err != nil {
				return 1
			}
			return 0
		}),
		gauge("streamhouse_raft_durable_index", "The highest Raft log index this agent holds durably; the Raft leader applies nothing above it and tells no follower a commit index above it (0 with RAFT_PARALLEL_LEADER_WRITE=false).", func() float64 {
			if n.leaderLog == nil {
				return 0
			}
			return float64(n.leaderLog.Durable())
		}),
		gauge("streamhouse_raft_commit_index", "Raft commit index.", func() float64 { return float64(r.CommitIndex()) }),
		gauge("streamhouse_raft_applied_index", "Raft applied index.", func() float64 { return float64(r.AppliedIndex()) }),
		gauge("streamhouse_raft_last_index", "Last Raft log index.", func() float64 { return float64(r.LastIndex()) }),
		gauge("streamhouse_raft_has_leader", "1 if this node knows a Raft leader.", func() float64 {
			if addr, _ := r.LeaderWithID(); addr != "" {
				return 1
			}
			return 0
		}),
		gauge("streamhouse_cluster_clock_skew_seconds", "This agent's wall clock minus the cluster clock (the Raft leader's time as applied from the log); 0 before the first tick.", func() float64 {
			c := n.fsm.Clock()
			if c <= 0 {
				return 0
			}
			return float64(n.cfg.Clock().UnixMilli()-c) / 1000
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

func (m *metrics) membershipChange(change string) {
	if m != nil {
		m.membership.WithLabelValues(change).Inc()
	}
}

func (m *metrics) leadershipChange(reason string) {
	if m != nil {
		m.leadershipMoves.WithLabelValues(reason).Inc()
	}
}

// gossipCollector counts gossip members by state at scrape time.
type gossipCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func (c *gossipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *gossipCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{StateAlive: 0, StateDead: 0, StateLeft: 0}
	if c.n.gossip != nil {
		for _, m := range c.n.gossip.snapshot() {
			counts[m.State]++
		}
	}
	for state, v := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), state)
	}
}
