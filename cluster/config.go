package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/transport"
)

// PeerNet is what the node uses of the peer listener that Raft and peer
// RPC share (implemented by *transport.PeerMux).
type PeerNet interface {
	// Addr is the advertised host:port, this node's Raft address; "" until
	// the listener has started.
	Addr() string
	// RaftLayer carries Raft's network transport.
	RaftLayer() raft.StreamLayer
	// RPCClient makes peer RPC calls to other agents.
	RPCClient() *http.Client
	// SetRaftCluster makes Raft connections name this agent's cluster and
	// refuse another one's.
	SetRaftCluster(transport.RaftCluster)
}

// Config configures a Node. Zero values take the defaults documented on each
// field; the defaults suit a LAN deployment. Tests shorten the timings.
type Config struct {
	NodeID string
	// DataDir holds raft/ (Bolt log + stable store, snapshots, identity).
	DataDir string

	// Mux is the peer listener (PEER_PORT) shared by Raft and peer RPC
	// (the agent passes its *transport.PeerMux). It is owned by the
	// caller: created, given RPCHandler, started before Start and closed
	// after Close. Its advertised address is this node's Raft address.
	Mux PeerNet

	// GossipBindAddr is the host:port memberlist listens on (UDP and TCP,
	// GOSSIP_PORT). Port 0 picks a free port.
	GossipBindAddr string
	// GossipAdvertiseAddr is the host:port other agents reach gossip on;
	// defaults to the bound address.
	GossipAdvertiseAddr string
	// GossipKey (GOSSIP_KEY), when set, encrypts and authenticates every
	// gossip message with AES-GCM (memberlist's SecretKey): 16, 24 or 32
	// bytes. Agents with another key, or none, cannot gossip with this one.
	GossipKey []byte
	// Join lists gossip host:port addresses of existing agents (JOIN). The
	// node retries in the background, with backoff, until one answers.
	Join []string
	// BootstrapExpect (BOOTSTRAP_EXPECT) is the number of agents that form
	// a brand-new cluster together: a node without Raft state waits until
	// gossip shows exactly that many agents with the same setting and no
	// existing cluster, then each of them bootstraps the same configuration.
	// 0 or 1 without Join: bootstrap alone. 1 with Join (a one-replica
	// StatefulSet whose JOIN names itself): bootstrap alone once the join
	// was tried and gossip, unchanged for BootstrapSettle, shows no other
	// agent with BootstrapExpect 1 and no existing cluster (as Consul
	// does). 0 with Join: never bootstrap, wait to be added by the leader.
	BootstrapExpect int
	// Bootstrap is the single-agent default: the same as BootstrapExpect 1
	// with no Join. Combining it with Join is a configuration error.
	Bootstrap bool
	// HTTPAddr and GRPCAddr are advertised in gossip metadata so other
	// agents (and clients through them) can find this agent's APIs.
	HTTPAddr string
	GRPCAddr string
	// KafkaAddr is the Kafka listener's advertised host:port ("" when
	// the listener is off); Kafka Metadata answers tell clients this address.
	KafkaAddr string
	// Version is the agent's version, gossiped so that every agent can
	// show what the others run (the console's cluster page).
	Version string

	// DeadAgentTimeout (DEAD_AGENT_TIMEOUT): a member dead in gossip (or
	// unknown to it) for longer than this is removed from the Raft group.
	// Default 30s.
	DeadAgentTimeout time.Duration
	// PartitionFailoverTimeout: a partition whose leader is dead in gossip
	// (memberlist's dead state, not mere suspicion) for longer than this
	// gets a new leader. Default 3s.
	PartitionFailoverTimeout time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// Objects is the cluster's object store. The Raft leader writes a probe
	// object that an agent must read back from its own store before it is
	// added or admitted (all agents must share one store); an admitted
	// agent that fails the probe reports it on /ready. Nil disables the
	// probe (tests without an object store).
	Objects ObjectStore

	// Raft tuning; zero values take defaults suited to a LAN.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// ApplyTimeout bounds how long a proposal may wait to be enqueued.
	ApplyTimeout time.Duration
	// logSnapshotBytes and logTrailingBytes bound the Raft log in bytes
	// (logbytes.go; defaults raftLogSnapshotBytes, raftLogTrailingBytes).
	// Unexported: only tests change them.
	logSnapshotBytes uint64
	logTrailingBytes uint64

	// SerialLeaderWrite makes the Raft leader store its entries before it
	// replicates them (hashicorp/raft's own order) instead of in parallel
	// with the followers (DESIGN.md, "The leader's own log write in
	// parallel with replication").
	SerialLeaderWrite bool
	// wrapLog, if set, wraps the Raft log store (raft-wal) below the
	// leader's write behind (tests: a held or failing write).
	wrapLog func(raft.LogStore) raft.LogStore
	// wrapStable, if set (tests), wraps the Raft stable store (Bolt)
	// below the retrying wrapper (a full disk).
	wrapStable func(raft.StableStore) raft.StableStore
	// logStuckAfter, if set (tests), replaces logWriteStuckAfter.
	logStuckAfter time.Duration
	// membershipPassed, if set (tests), is called after every pass of
	// membership reconciliation this agent makes as leader.
	membershipPassed func()
	// joinHold, if set (tests), holds the gossip join loop until closed.
	joinHold <-chan struct{}
	// bootstrapStep, if set (tests), is called after each step of a
	// bootstrap ("identity": the identity write before BootstrapCluster;
	// "bootstrapped": BootstrapCluster returned, before each attempt to
	// admit the identity); an error stops the bootstrap there.
	bootstrapStep func(n *Node, step string) error

	// Gossip tuning (memberlist); zero values take memberlist's LAN
	// defaults. Tests use intervals of tens of milliseconds.
	GossipProbeInterval    time.Duration
	GossipProbeTimeout     time.Duration
	GossipInterval         time.Duration
	GossipSuspicionMult    int
	GossipPushPullInterval time.Duration
	// GossipDeadReclaimTime lets an agent that restarted on a new address
	// reclaim its name after it was declared dead. Default 10s.
	GossipDeadReclaimTime time.Duration

	// JoinRetryMin/Max bound the backoff between join attempts
	// (defaults 1s and 30s).
	JoinRetryMin time.Duration
	JoinRetryMax time.Duration
	// BootstrapSettle is how long the set of expected agents must stay
	// unchanged before bootstrapping (default 2s).
	BootstrapSettle time.Duration
	// ReconcileInterval is the leader loop's periodic pass (default 1s);
	// gossip and FSM changes also trigger a pass.
	ReconcileInterval time.Duration
	// RebalanceInterval and RebalanceMaxMoves pace partition rebalancing:
	// at most RebalanceMaxMoves leadership moves per interval (defaults
	// 10s and 2).
	RebalanceInterval time.Duration
	RebalanceMaxMoves int
	// MaxPromotionLag is how many entries a non-voter's applied index may
	// trail the leader's commit index and still be promoted (default 256).
	MaxPromotionLag uint64
	// RPCTimeout bounds one peer RPC made by the leader loop (status,
	// admit; default 2s). ForwardTimeout bounds a forwarded proposal when
	// the caller's context has no deadline (default 15s).
	RPCTimeout     time.Duration
	ForwardTimeout time.Duration
	// ClockTickInterval is how often the Raft leader proposes its time to
	// the cluster clock (default 1s).
	ClockTickInterval time.Duration
	// Clock is the wall clock the leader's ticks read (default time.Now).
	// The agent shifts it only for fault injection (a test hook).
	Clock func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.BootstrapExpect <= 1 && len(c.Join) == 0 {
		c.Bootstrap = true
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DeadAgentTimeout, 30*time.Second)
	def(&c.PartitionFailoverTimeout, 3*time.Second)
	def(&c.HeartbeatTimeout, 1000*time.Millisecond)
	def(&c.ElectionTimeout, 1000*time.Millisecond)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.CommitTimeout, 5*time.Millisecond)
	def(&c.SnapshotInterval, 5*time.Second)
	def(&c.ApplyTimeout, 5*time.Second)
	def(&c.GossipDeadReclaimTime, 10*time.Second)
	def(&c.JoinRetryMin, time.Second)
	def(&c.JoinRetryMax, 30*time.Second)
	def(&c.BootstrapSettle, 2*time.Second)
	def(&c.ReconcileInterval, time.Second)
	def(&c.RebalanceInterval, 10*time.Second)
	def(&c.RPCTimeout, 2*time.Second)
	def(&c.ForwardTimeout, 15*time.Second)
	def(&c.ClockTickInterval, time.Second)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 1024
	}
	if c.logSnapshotBytes == 0 {
		c.logSnapshotBytes = raftLogSnapshotBytes
	}
	if c.logTrailingBytes == 0 {
		c.logTrailingBytes = raftLogTrailingBytes
	}
	if c.RebalanceMaxMoves <= 0 {
		c.RebalanceMaxMoves = 2
	}
	if c.MaxPromotionLag == 0 {
		c.MaxPromotionLag = 256
	}
}

func (c *Config) validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: NodeID is empty", ErrConfig)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: DataDir is empty", ErrConfig)
	}
	if c.Mux == nil {
		return fmt.Errorf("%w: Mux (the peer listener) is nil", ErrConfig)
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("%w: BootstrapExpect %d is negative", ErrConfig, c.BootstrapExpect)
	}
	if len(c.Join) > 0 && c.BootstrapExpect <= 1 && c.Bootstrap {
		return fmt.Errorf("%w: Bootstrap (a single-agent cluster) together with Join would risk two clusters; use BootstrapExpect", ErrConfig)
	}
	if c.BootstrapExpect > 1 && c.Bootstrap && len(c.Join) == 0 {
		return fmt.Errorf("%w: Bootstrap together with BootstrapExpect %d", ErrConfig, c.BootstrapExpect)
	}
	if _, _, err := splitHostPort(c.GossipBindAddr); err != nil {
		return fmt.Errorf("%w: GossipBindAddr: %v", ErrConfig, err)
	}
	if n := len(c.GossipKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("%w: GossipKey is %d bytes; it must be 16, 24 or 32 (AES-128/192/256)", ErrConfig, n)
	}
	if c.GossipAdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.GossipAdvertiseAddr); err != nil {
			return fmt.Errorf("%w: GossipAdvertiseAddr: %v", ErrConfig, err)
		}
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}
