package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

var sameIDs = testkit.SameIDs

type syncBuffer = testkit.SyncBuffer

// testCluster runs agents in-process on 127.0.0.1:0 ports with fast
// timings and one shared Faults.
type testCluster struct {
	t      *testing.T
	faults *transport.Faults
	logs   *syncBuffer
	log    *slog.Logger

	// edit adjusts every agent's config before the per-start edit.
	edit func(*Config)
	// peerEdit adjusts an agent's peer mux config (TLS, cluster secret).
	peerEdit func(id string, pc *transport.PeerConfig)
	// newSink, if set, gives an agent's FSM a Sink (default none).
	newSink func(id string) fsm.Sink
	// wrapFSM, if set, wraps an agent's FSM before Raft gets it.
	wrapFSM func(id string, f *fsm.FSM) StateMachine

	mu    sync.Mutex
	nodes map[string]*testNode
}

type testNode struct {
	id   string
	dir  string
	mux  *transport.PeerMux
	node *Node
	fsm  *fsm.FSM
	reg  *prometheus.Registry
	down bool
}

func newTestCluster(t *testing.T) *testCluster {
	logs := &syncBuffer{}
	level := slog.LevelInfo
	if os.Getenv("CLUSTER_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	c := &testCluster{
		t: t, faults: transport.NewFaults(), logs: logs, nodes: map[string]*testNode{},
		log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
	}
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() || os.Getenv("CLUSTER_TEST_LOGS") != "" {
			t.Logf("cluster logs:\n%s", logs.String())
		}
	})
	return c
}

// stopAll stops every running node, in parallel. Every startAt registers it
// as a cleanup too: cleanups run last-registered first, so the nodes stop
// before the removal of any t.TempDir a test made for them after
// newTestCluster (a running node still writes to its raft log directory).
func (c *testCluster) stopAll() {
	c.mu.Lock()
	nodes := make([]*testNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stop()
		}()
	}
	wg.Wait()
}

// fastConfig returns timings that keep the tests quick under -race.
func fastConfig(id, dir string, mux *transport.PeerMux, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		NodeID: id, DataDir: dir, Mux: mux, GossipBindAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:8080", GRPCAddr: "127.0.0.1:9090", Version: "v-test (abc)", Logger: log.With("node", id), Registerer: reg,
		HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond,
		LeaderLeaseTimeout: 125 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		ApplyTimeout:     2 * time.Second,
		DeadAgentTimeout: 2 * time.Second, PartitionFailoverTimeout: 500 * time.Millisecond,
		GossipProbeInterval: 100 * time.Millisecond, GossipProbeTimeout: 50 * time.Millisecond,
		GossipInterval: 20 * time.Millisecond, GossipSuspicionMult: 2, GossipPushPullInterval: time.Second,
		GossipDeadReclaimTime: 100 * time.Millisecond,
		JoinRetryMin:          50 * time.Millisecond, JoinRetryMax: 500 * time.Millisecond,
		BootstrapSettle: 200 * time.Millisecond, ReconcileInterval: 100 * time.Millisecond,
		RebalanceInterval: 200 * time.Millisecond, RebalanceMaxMoves: 2,
		RPCTimeout: time.Second, ForwardTimeout: 5 * time.Second,
	}
}

// start starts an agent on fresh 127.0.0.1 ports. dir "" makes a fresh
// data dir; edit may adjust the config.
func (c *testCluster) start(id, dir string, edit func(*Config)) *testNode {
	c.t.Helper()
	return c.startAt(id, dir, "127.0.0.1:0", "127.0.0.1:0", edit)
}

// startAt starts an agent with the given peer and gossip bind addresses.
func (c *testCluster) startAt(id, dir, peerBind, gossipBind string, edit func(*Config)) *testNode {
	c.t.Helper()
	tn, err := c.tryStartAt(id, dir, peerBind, gossipBind, edit)
	if err != nil {
		c.t.Fatal(err)
	}
	return tn
}

// tryStart starts an agent like start, and returns the error of a Start
// that failed.
func (c *testCluster) tryStart(id, dir string, edit func(*Config)) (*testNode, error) {
	c.t.Helper()
	return c.tryStartAt(id, dir, "127.0.0.1:0", "127.0.0.1:0", edit)
}

func (c *testCluster) tryStartAt(id, dir, peerBind, gossipBind string, edit func(*Config)) (*testNode, error) {
	c.t.Helper()
	if dir == "" {
		dir = filepath.Join(c.t.TempDir(), id)
	}
	pc := transport.PeerConfig{
		BindAddr: peerBind, Faults: c.faults, Logger: c.log.With("node", id), DialTimeout: time.Second,
	}
	if c.peerEdit != nil {
		c.peerEdit(id, &pc)
	}
	mux := transport.NewPeerMux(pc)
	f := fsm.New(nil)
	if c.newSink != nil {
		f = fsm.New(c.newSink(id))
		f.SetStallPolicy(fsm.StallPolicy{Min: time.Millisecond, Max: 20 * time.Millisecond})
	}
	reg := prometheus.NewRegistry()
	cfg := fastConfig(id, dir, mux, c.log, reg)
	cfg.GossipBindAddr = gossipBind
	if c.edit != nil {
		c.edit(&cfg)
	}
	if edit != nil {
		edit(&cfg)
	}
	var sm StateMachine = f
	if c.wrapFSM != nil {
		sm = c.wrapFSM(id, f)
	}
	node := New(cfg, sm)
	c.t.Cleanup(c.stopAll)
	mux.HandleRPC(node.RPCHandler())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mux.Start(ctx); err != nil {
		c.t.Fatalf("start mux of %s: %v", id, err)
	}
	if err := node.Start(ctx); err != nil {
		_ = mux.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	tn := &testNode{id: id, dir: dir, mux: mux, node: node, fsm: f, reg: reg}
	c.mu.Lock()
	if old, ok := c.nodes[id]; ok && !old.down {
		c.mu.Unlock()
		c.t.Fatalf("node %s is already running", id)
	}
	c.nodes[id] = tn
	c.mu.Unlock()
	return tn, nil
}

func (n *testNode) stop() {
	if n.down {
		return
	}
	n.down = true
	_ = n.node.Close()
	_ = n.mux.Close()
}

// kill stops an agent without a gossip leave (a crash, as far as the
// others can tell).
func (c *testCluster) kill(id string) *testNode {
	c.mu.Lock()
	n := c.nodes[id]
	c.mu.Unlock()
	n.stop()
	return n
}

func (c *testCluster) node(id string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) running() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, n := range c.nodes {
		if !n.down {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// leader returns the running agent that leads Raft and whose view every
// running agent shares, or nil.
func (c *testCluster) leader() *testNode { return leaderOf(c.running()) }

// leaderOf returns the agent of nodes that leads Raft and whose view all
// of nodes share, or nil.
func leaderOf(nodes []*testNode) *testNode {
	var lead *testNode
	for _, n := range nodes {
		if n.node.IsLeader() {
			if lead != nil {
				return nil
			}
			lead = n
		}
	}
	if lead == nil {
		return nil
	}
	for _, n := range nodes {
		if n.node.LeaderID() != lead.id {
			return nil
		}
	}
	return lead
}

func (c *testCluster) waitLeader(d time.Duration) *testNode {
	c.t.Helper()
	var lead *testNode
	waitFor(c.t, d, "one raft leader known to every running agent", func() bool {
		lead = c.leader()
		return lead != nil
	})
	return lead
}

// waitLeaderNot waits for a Raft leader other than id, handing leadership
// away from id if it leads.
func (c *testCluster) waitLeaderNot(id string) *testNode {
	c.t.Helper()
	var lead *testNode
	waitFor(c.t, 30*time.Second, "a raft leader other than "+id, func() bool {
		lead = c.waitLeader(deadline)
		if lead.id != id {
			return true
		}
		_ = lead.node.r().LeadershipTransfer().Error()
		return false
	})
	return lead
}

// waitLeaderOf waits for one raft leader among the agents nodes returns,
// known to all of them.
func (c *testCluster) waitLeaderOf(d time.Duration, nodes func() []*testNode) *testNode {
	c.t.Helper()
	var lead *testNode
	waitFor(c.t, d, "one raft leader known to the agents in question", func() bool {
		lead = leaderOf(nodes())
		return lead != nil
	})
	return lead
}

// except returns a function listing the running agents other than ids.
func (c *testCluster) except(ids ...string) func() []*testNode {
	return func() []*testNode {
		var out []*testNode
		for _, n := range c.running() {
			if !slices.Contains(ids, n.id) {
				out = append(out, n)
			}
		}
		return out
	}
}

// followers returns the running agents other than the leader.
func (c *testCluster) followers(lead *testNode) []*testNode {
	var out []*testNode
	for _, n := range c.running() {
		if n != lead {
			out = append(out, n)
		}
	}
	return out
}

// waitConfig waits until every running agent sees exactly these voters and
// non-voters.
func (c *testCluster) waitConfig(d time.Duration, voters, nonvoters []string) {
	c.t.Helper()
	waitFor(c.t, d, fmt.Sprintf("voters %v, non-voters %v on every running agent", voters, nonvoters), func() bool {
		for _, n := range c.running() {
			st := n.node.Status()
			if !sameIDs(st.Voters, voters...) || !sameIDs(st.NonVoters, nonvoters...) {
				return false
			}
		}
		return true
	})
}

// startBootstrapped starts n agents with BootstrapExpect n, the first one
// without Join (the others join it), and waits for their group.
func (c *testCluster) startBootstrapped(ids ...string) {
	c.t.Helper()
	first := c.start(ids[0], "", func(cfg *Config) { cfg.BootstrapExpect = len(ids) })
	for _, id := range ids[1:] {
		c.start(id, "", func(cfg *Config) {
			cfg.BootstrapExpect = len(ids)
			cfg.Join = []string{first.node.GossipAddr()}
		})
	}
	c.waitLeader(30 * time.Second)
	c.waitConfig(30*time.Second, ids, nil)
}

// joinAddrs returns the gossip addresses of the running agents.
func (c *testCluster) joinAddrs() []string {
	var out []string
	for _, n := range c.running() {
		out = append(out, n.node.GossipAddr())
	}
	return out
}

// propose encodes and proposes a command through agent n and checks the
// business outcome.
func propose(t *testing.T, n *testNode, cmd fsm.Command) (*fsm.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.node.Propose(ctx, fsm.Encode(cmd))
	if err != nil {
		return nil, err
	}
	return res, res.Err()
}

func createTopic(t *testing.T, via *testNode, name string, parts int32) uint64 {
	t.Helper()
	res, err := propose(t, via, &fsm.CreateTopic{
		Name: name, Partitions: parts, Leaders: via.node.Placement(parts), Timestamp: time.Now().UnixMilli(),
	})
	if err != nil {
		t.Fatalf("create topic %s via %s: %v", name, via.id, err)
	}
	return res.TopicID
}

// epochMonitor watches the FSMs of agents and records every
// (partition, epoch) → leader it sees; it flags an epoch that goes
// backwards on one agent or two leaders for one epoch anywhere.
type epochMonitor struct {
	mu         sync.Mutex
	leaders    map[string]string // "topic/partition/epoch" → leader
	lastEpoch  map[string]uint64 // "node/topic/partition" → epoch
	violations []string
	wg         sync.WaitGroup
}

func newEpochMonitor() *epochMonitor {
	return &epochMonitor{leaders: map[string]string{}, lastEpoch: map[string]uint64{}}
}

func (m *epochMonitor) observe(node string, f *fsm.FSM) {
	ps := f.AllPartitions()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		pk := fmt.Sprintf("%d/%d", p.TopicID, p.Partition)
		nk := node + "/" + pk
		if last, ok := m.lastEpoch[nk]; ok && p.LeaderEpoch < last {
			m.violations = append(m.violations, fmt.Sprintf("%s: epoch of %s went back from %d to %d", node, pk, last, p.LeaderEpoch))
		}
		m.lastEpoch[nk] = p.LeaderEpoch
		ek := fmt.Sprintf("%s/%d", pk, p.LeaderEpoch)
		if l, ok := m.leaders[ek]; ok && l != p.Leader {
			m.violations = append(m.violations, fmt.Sprintf("partition %s epoch %d led by both %s and %s", pk, p.LeaderEpoch, l, p.Leader))
		}
		m.leaders[ek] = p.Leader
	}
}

// watch observes f on every change until stop.
func (m *epochMonitor) watch(ctx context.Context, node string, f *fsm.FSM) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			ch := f.Changed()
			m.observe(node, f)
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
}

func (m *epochMonitor) check(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.violations {
		t.Error(v)
	}
}
