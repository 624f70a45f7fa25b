package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// Config configures a Node.
type Config struct {
	NodeID string
	// DataDir holds raft/ (Bolt log + stable store, snapshots).
	DataDir string
	// BindAddr is the host:port the Raft transport listens on.
	BindAddr string
	// AdvertiseAddr is the host:port peers dial; defaults to BindAddr.
	AdvertiseAddr string
	// Bootstrap makes a node with no Raft state bootstrap a single-voter
	// group containing itself.
	Bootstrap bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer

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
}

func (c *Config) setDefaults() {
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 1000 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 1000 * time.Millisecond
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = 500 * time.Millisecond
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 5 * time.Millisecond
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 2048
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 5 * time.Second
	}
}

// Node is one agent's membership in the Raft group: it owns the Raft
// instance, its stores and transport, and turns proposals into applied
// results.
type Node struct {
	cfg Config
	fsm raft.FSM
	log *slog.Logger

	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore

	leaderReady atomic.Bool // this node is leader and has applied everything before its term
	metrics     *metrics

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
}

// New returns a Node; Start opens storage and joins/bootstraps the group.
func New(cfg Config, f raft.FSM) *Node {
	cfg.setDefaults()
	return &Node{cfg: cfg, fsm: f, log: cfg.Logger.With("component", "cluster")}
}

// NodeID returns this node's ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// Start opens the Raft stores, starts Raft and, when configured and there
// is no prior state, bootstraps a single-voter group.
func (n *Node) Start(ctx context.Context) error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("cluster: raft dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("cluster: open raft log store: %w", err)
	}
	n.store = store
	hl := newHCLogger("raft", n.cfg.Logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("cluster: snapshot store: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", n.cfg.AdvertiseAddr)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("cluster: advertise address %q: %w", n.cfg.AdvertiseAddr, err)
	}
	trans, err := raft.NewTCPTransportWithLogger(n.cfg.BindAddr, adv, 4, 10*time.Second, hl)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("cluster: raft transport on %s: %w", n.cfg.BindAddr, err)
	}
	n.transport = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true

	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		_ = trans.Close()
		_ = store.Close()
		return err
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		_ = trans.Close()
		_ = store.Close()
		return fmt.Errorf("cluster: inspect raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		_ = trans.Close()
		_ = store.Close()
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	if n.cfg.Bootstrap && !existing {
		n.log.Info("bootstrapping single-voter raft group", "node", n.cfg.NodeID, "addr", n.cfg.AdvertiseAddr)
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	if n.cfg.Registerer != nil {
		n.metrics = newMetrics(n, n.cfg.Registerer)
	}
	lctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go n.leadershipLoop(lctx)
	return nil
}

// leadershipLoop tracks whether this node is a leader that has applied every
// entry from earlier terms (a barrier), which gates readiness.
func (n *Node) leadershipLoop(ctx context.Context) {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			n.leaderReady.Store(false)
			if !isLeader {
				n.log.Info("lost raft leadership")
				continue
			}
			n.log.Info("gained raft leadership", "term", n.raft.CurrentTerm())
			if err := n.raft.Barrier(0).Error(); err != nil {
				n.log.Warn("leader barrier failed", "err", err)
				continue
			}
			n.leaderReady.Store(n.raft.State() == raft.Leader)
		}
	}
}

// IsLeader reports whether this node currently leads the Raft group.
func (n *Node) IsLeader() bool { return n.raft != nil && n.raft.State() == raft.Leader }

// Ready reports whether the node can serve: a leader is known and this node
// has applied the committed log.
func (n *Node) Ready() (bool, string) {
	if n.raft == nil {
		return false, "raft not started"
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return false, "no raft leader elected yet"
	}
	if n.raft.State() == raft.Leader {
		if !n.leaderReady.Load() {
			return false, "raft leader is applying the log from earlier terms"
		}
		return true, ""
	}
	if applied, commit := n.raft.AppliedIndex(), n.raft.CommitIndex(); applied < commit {
		return false, fmt.Sprintf("applying committed raft log (%d of %d)", applied, commit)
	}
	return true, ""
}

// WaitReady blocks until Ready or ctx is done.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, _ := n.Ready(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			_, why := n.Ready()
			return fmt.Errorf("cluster: not ready: %s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}

// Propose replicates an encoded fsm command and returns its apply result.
// Errors wrap fsm.ErrUnavailable when the command was definitely not
// applied, and fsm.ErrOutcomeUnknown when it may have been.
func (n *Node) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if n.raft == nil {
		return nil, fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	}
	if n.raft.State() != raft.Leader {
		return nil, fmt.Errorf("%w: this agent is not the raft leader", fsm.ErrUnavailable)
	}
	start := time.Now()
	fut := n.raft.Apply(cmd, n.cfg.ApplyTimeout)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, translateApplyErr(err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, ctx.Err())
	}
	if n.metrics != nil {
		n.metrics.applyLatency.Observe(time.Since(start).Seconds())
	}
	res, ok := fut.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("cluster: unexpected apply response %T", fut.Response())
	}
	return res, nil
}

func translateApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, err)
}

// Placement picks leaders for n new partitions: round robin over the
// current voters, starting with this node.
func (n *Node) Placement(count int32) []string {
	nodes := []string{n.cfg.NodeID}
	if n.raft != nil {
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
					nodes = append(nodes, string(s.ID))
				}
			}
		}
	}
	out := make([]string, count)
	for i := range out {
		out[i] = nodes[i%len(nodes)]
	}
	return out
}

// Status is a point-in-time view of the node's Raft state.
type Status struct {
	NodeID       string
	State        string
	Leader       string
	LeaderID     string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
}

// Status returns the node's Raft status.
func (n *Node) Status() Status {
	if n.raft == nil {
		return Status{NodeID: n.cfg.NodeID, State: "Stopped"}
	}
	addr, id := n.raft.LeaderWithID()
	return Status{
		NodeID: n.cfg.NodeID, State: n.raft.State().String(), Leader: string(addr), LeaderID: string(id),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(),
		LastIndex: n.raft.LastIndex(),
	}
}

// Snapshot forces a Raft snapshot (used by tests and operators).
func (n *Node) Snapshot() error {
	if n.raft == nil {
		return fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	}
	return n.raft.Snapshot().Error()
}

// Close shuts Raft down and closes its stores. It is idempotent.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.cancel != nil {
		n.cancel()
	}
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	n.wg.Wait()
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.metrics != nil {
		n.metrics.unregister()
	}
	return errors.Join(errs...)
}
