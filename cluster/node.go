package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// StateMachine is what the node needs from the replicated state machine:
// Raft's FSM plus the read side the controller and Placement use
// (implemented by *fsm.FSM).
type StateMachine interface {
	raft.FSM
	AllPartitions() []fsm.PartitionInfo
	Changed() <-chan struct{}
	// LastApplied is the Raft index of the last command the FSM applied
	// (Raft's own applied index moves when entries are handed to the FSM,
	// before they are applied).
	LastApplied() uint64
	// Clock is the cluster clock (fsm/clock.go): the largest leader tick
	// time applied, unix ms.
	Clock() int64
	// NewestKnownTime is the latest command time the state holds (the
	// clock, segment commits, group commits, producers); 0 for none.
	NewestKnownTime() int64
	// Stalled reports an Apply waiting for local storage (a full disk).
	Stalled() (fsm.StallStatus, bool)
	// StallNotify is signalled when such a wait begins.
	StallNotify() <-chan struct{}
	// Halt releases such an Apply so Raft can shut down.
	Halt()
	// BrokerIDs are the registered Kafka broker IDs by node ID.
	BrokerIDs() map[string]int32
	// EpochBumps reports whether a batch of fsm.FeatureEpochBump's payload
	// was ever applied.
	EpochBumps() bool
}

// Node is one agent's membership in the cluster: it owns the Raft instance
// (stores, transport over the peer mux), the gossip layer, bootstrap, the
// leader loop (membership reconciliation and the partition controller) and
// proposal forwarding.
//
// Lock order: closeMu, then idMu. departMu and the gossip locks are
// leaves (see DESIGN.md, "Locks").
type Node struct {
	cfg  Config
	fsm  StateMachine
	log  *slog.Logger
	peer PeerNet

	started atomic.Bool // set once Start succeeded; fields below are then fixed
	closed  atomic.Bool
	leaving atomic.Bool

	raftp      atomic.Pointer[raft.Raft]
	transport  *raftGate              // the Raft transport behind the admission gate
	store      *raftboltdb.BoltStore  // the stable store (raft.db)
	logStore   *walLog                // the Raft log (raft-wal)
	leaderLog  *leaderLog             // the leader's write behind (nil: SerialLeaderWrite)
	writeWatch *writeWatch            // watches the leader's log writes for one that hangs
	gossipp    atomic.Pointer[gossip] // gossip, for the Raft dials of the peer mux (which may start before gossip is set)
	// raftCluster is the identity's cluster ID (string), for the peer
	// mux's Raft connections: read without idMu, which updateIdentity
	// holds across an fsync.
	raftCluster atomic.Value
	stable      *retryingStable
	gossip      *gossip
	raftDir     string
	levels      levelCache  // MembersAt's gossip verdicts
	bumpsSeen   atomic.Bool // fsm.EpochBumps was true once (it never goes back)

	idMu sync.Mutex
	id   identity

	leaderReady atomic.Bool   // leader and has applied everything before its term
	lowDisk     atomic.Bool   // SetLowDisk(true) is in force: do not lead
	behindJoins atomic.Int64  // agents the leader's last pass kept out for an old feature level
	lowDiskKick chan struct{} // capacity 1: wakes stallWatch on a low-disk change
	reclaimWant chan bool     // capacity 1: the latest ReclaimDisk request (reclaimLoop)
	// trailingByBytes is the TrailingLogs that keeps about
	// logTrailingBytes of log (boundLogBytes; 0: not measured yet).
	trailingByBytes atomic.Uint64
	reloadMu        sync.Mutex // serializes Raft ReloadConfig calls (reloadCompaction)
	// snaps is Raft's snapshot store; snapSizeAt and snapSize cache the
	// size of the snapshot at that index (logBytesLoop's goroutine only).
	snaps                raft.SnapshotStore
	snapSizeAt, snapSize uint64
	// storeProblem is the last failed object store probe (see storeprobe.go).
	storeProblem problemNote
	// probeSeq numbers this process's store probes (storeprobe.go).
	probeSeq atomic.Uint64
	metrics  *metrics
	rpc      *http.ServeMux
	applied  *appliedSignal // woken after every apply (waitApplied)
	// acked is the highest Raft index this node acknowledged before its
	// FSM applied it (forwarded produce entries; AwaitAcked).
	acked atomic.Uint64
	// forwards are the forwards in flight, ended when their leader is
	// replaced (forwards.go).
	forwards *forwardWatch

	// departing: agents removed on their own request (POST /peer/v1/leave)
	// that the leader must not add back for a while (departGrace).
	departMu  sync.Mutex
	departing map[string]time.Time

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Mutex
	// raftDown is cancelled by teardown once Raft has shut down: every
	// wait on a Raft future (await) ends then at the latest.
	raftDown     context.Context
	markRaftDown context.CancelFunc
}

// New returns a Node; it starts nothing. Install RPCHandler on the peer mux
// before starting the mux, then Start the node.
func New(cfg Config, f StateMachine) *Node {
	cfg.setDefaults()
	n := &Node{cfg: cfg, fsm: f, log: cfg.Logger.With("component", "cluster"), departing: map[string]time.Time{},
		lowDiskKick: make(chan struct{}, 1), reclaimWant: make(chan bool, 1), peer: cfg.Mux, applied: newAppliedSignal(),
		forwards: newForwardWatch()}
	n.raftDown, n.markRaftDown = context.WithCancel(context.Background())
	n.rpc = n.newRPCMux()
	return n
}

// NodeID returns this node's ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// r returns the Raft instance, or nil before Start.
func (n *Node) r() *raft.Raft { return n.raftp.Load() }

// Start opens the Raft stores, starts Raft over the peer mux (which must be
// started), starts gossip, begins joining, and bootstraps when the rules
// allow it (see DESIGN.md). It returns once the node runs; joining and
// bootstrap with BootstrapExpect continue in the background.
func (n *Node) Start(ctx context.Context) (err error) {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if err := n.checkStartable(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = n.teardown()
			n.closed.Store(true) // a node that failed to start is not reused
		}
	}()
	// Raft connections name this agent's cluster, and refuse another
	// one's (DESIGN.md, "Identity").
	n.peer.SetRaftCluster(transport.RaftCluster{ID: n.raftClusterID, Legacy: n.legacyRaftPeer})
	existing, err := n.startRaft()
	if err != nil {
		return err
	}
	n.gossip = newGossip(&n.cfg, n.cfg.Logger)
	n.gossipp.Store(n.gossip)
	if err := n.gossip.start(n.localMeta()); err != nil {
		return err
	}
	if !existing && n.cfg.Bootstrap {
		if err := n.bootstrap(ctx, []nodeMeta{n.localMeta()}, randomID()); err != nil {
			return err
		}
	} else if existing {
		n.electIfSoleVoter()
	}
	if n.cfg.Registerer != nil {
		n.metrics = newMetrics(n, n.cfg.Registerer)
	}
	n.startLoops(existing)
	n.log.Info("cluster node started", "node", n.cfg.NodeID, "peer", n.peer.Addr(), "gossip", n.gossip.addr(),
		"existing_state", existing, "bootstrap_expect", n.cfg.BootstrapExpect, "join", n.cfg.Join, "instance", n.id.Instance)
	return nil
}

// checkStartable refuses a Start on a closed or started node, a bad
// configuration, a done ctx or a peer mux that is not started.
func (n *Node) checkStartable(ctx context.Context) error {
	switch {
	case n.closed.Load():
		return ErrClosed
	case n.started.Load():
		return errors.New("cluster: node already started")
	}
	if err := n.cfg.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.peer.Addr() == "" {
		return fmt.Errorf("%w: the peer mux must be started before the node", ErrConfig)
	}
	return nil
}

// startRaft opens the Raft stores under DATA_DIR/raft, loads the identity,
// and starts Raft over the gated transport (open only for an admitted
// incarnation). It reports whether Raft state existed.
func (n *Node) startRaft() (bool, error) {
	hl := newHCLogger("raft", n.cfg.Logger)
	logs, snaps, err := n.openRaftStores(hl)
	if err != nil {
		return false, err
	}
	if _, err := discardUnfinishedBootstrap(n.raftDir, logs, n.store, snaps); err != nil {
		return false, err
	}
	existing, err := raft.HasExistingState(logs, n.store, snaps)
	if err != nil {
		return false, fmt.Errorf("cluster: inspect raft state: %w", err)
	}
	id, err := loadIdentity(n.raftDir, existing)
	if err != nil {
		return false, err
	}
	n.idMu.Lock() // the peer mux's Raft connections read the cluster ID meanwhile
	n.id = id
	n.raftCluster.Store(id.raftCluster())
	n.idMu.Unlock()
	if id.Legacy {
		n.log.Info("this agent's identity is legacy (written by an earlier release, or of a group admitted by one): its raft connections name no cluster, so another cluster at the same addresses is not refused (cluster/DESIGN.md, Identity)",
			"cluster", id.Cluster)
	}
	n.transport = newRaftGate(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: n.peer.RaftLayer(), MaxPool: 4, Timeout: 10 * time.Second, Logger: hl,
	}), n.log)
	// An incarnation the leader has not admitted takes no part in Raft
	// (DESIGN.md, "Amnesia"): the gate opens on admission or bootstrap.
	n.transport.setOpen(n.id.Admitted)
	n.transport.start()
	fsm := withAppliedSignal(n.fsm, n.applied)
	if n.leaderLog != nil {
		// DESIGN.md, "The leader's own log write in parallel with
		// replication": nothing is applied, here or on a follower, before
		// the leader's own copy is durable.
		fsm = withDurableApply(fsm, n.leaderLog.awaitDurable)
		n.transport.commitCap = n.leaderLog.Durable
	}
	r, err := raft.NewRaft(n.raftConfig(hl), fsm, logs, n.stable, snaps, n.transport)
	if err != nil {
		return false, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raftp.Store(r)
	return existing, nil
}

// openRaftStores opens the Bolt stable store (n.store, n.stable), the
// raft-wal log (n.logStore; a log Bolt still holds is moved there first)
// and the file snapshot store. The log store Raft gets is behind a cache
// and retries failed writes on followers (DESIGN.md, "Log store" and
// "Full disk").
func (n *Node) openRaftStores(hl hclog.Logger) (raft.LogStore, raft.SnapshotStore, error) {
	n.raftDir = filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(n.raftDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("cluster: raft dir: %w", err)
	}
	if err := checkNoUnfinishedSeed(n.raftDir); err != nil {
		return nil, nil, err
	}
	store, logStore, err := openLogStores(n.raftDir, hl)
	if err != nil {
		return nil, nil, err
	}
	n.store, n.logStore = store, logStore
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.raftDir, 2, hl)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	var stable raft.StableStore = store
	if n.cfg.wrapStable != nil {
		stable = n.cfg.wrapStable(stable)
	}
	n.stable = newRetryingStable(stable, n.log)
	n.snaps = snaps
	// The write watch and the leader's write behind sit right on the log
	// store, so that they see every write that fails or hangs
	// (retryingLogs above them would retry a follower's write inside one
	// call, hiding the failure from the stall watch), and retryingLogs
	// retries what they return.
	var under raft.LogStore = logStore
	if n.cfg.wrapLog != nil {
		under = n.cfg.wrapLog(under)
	}
	n.writeWatch = newWriteWatch(under, n.IsLeader)
	n.writeWatch.progress = logStore.commits.Load
	// A look at a hung write at least every three stall-watch ticks means
	// the process ran (logWriteStuckGap).
	stuck := cmp.Or(n.cfg.logStuckAfter, logWriteStuckAfter)
	n.writeWatch.setStuck(stuck, max(stuck/4, 3*n.stallTick()))
	under = n.writeWatch
	if !n.cfg.SerialLeaderWrite {
		ll, err := newLeaderLog(under, n.IsLeader, n.log, n.stable.haltCh)
		if err != nil {
			return nil, nil, err
		}
		n.leaderLog, under = ll, ll
	}
	logs := &retryingLogs{LogStore: under, log: n.log, min: n.stable.min, max: n.stable.max,
		haltCh: n.stable.haltCh, leader: n.IsLeader}
	return newLogCache(logs, logCacheEntries, logCacheBytes), snaps, nil
}

// maxAppendEntries bounds the entries of one AppendEntries. Raft counts
// entries, not bytes, and an entry carries up to the coalescer's 4 MiB of
// batches: a follower decodes a whole request, and the leader reads the
// entries a lagging follower needs from the log store into memory to send
// them. At 512 a catching-up follower held 50–80 MB of decoded entries at
// the 1 KiB saturated bench point; in steady state a request carries the
// few entries proposed since the last one (DESIGN.md, "Replication without
// pipelining").
const maxAppendEntries = 32

// raftConfig is the Raft configuration from Config (DESIGN.md, "Ack path"
// and "Replication without pipelining").
func (n *Node) raftConfig(hl hclog.Logger) *raft.Config {
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
	rc.MaxAppendEntries = maxAppendEntries
	rc.BatchApplyCh = true
	return rc
}

// startLoops marks the node started and starts its goroutines (owned by
// n.wg, stopped by teardown): the leadership loop, the leader watch of
// forwards (its observer registered before any forward can start), the
// stall watch, the reclaim loop, the log bytes loop and, for a new agent
// waiting for BOOTSTRAP_EXPECT, the bootstrap loop.
func (n *Node) startLoops(existing bool) {
	lctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	obs, obsCh := n.leaderObserver()
	n.started.Store(true)
	n.wg.Add(5)
	go n.leadershipLoop(lctx)
	go n.watchLeader(lctx, obs, obsCh)
	go n.stallWatch(lctx)
	go n.reclaimLoop(lctx)
	go n.logBytesLoop(lctx)
	if !existing && !n.cfg.Bootstrap && n.cfg.BootstrapExpect >= 1 {
		n.wg.Add(1)
		go n.bootstrapLoop(lctx)
	}
}

// GossipAddr returns the advertised gossip host:port ("" before Start).
func (n *Node) GossipAddr() string {
	if !n.started.Load() {
		return ""
	}
	return n.gossip.addr()
}

// identity returns a copy of the current identity.
func (n *Node) identity() identity {
	n.idMu.Lock()
	defer n.idMu.Unlock()
	return n.id
}

// updateIdentity changes, persists and gossips the identity.
func (n *Node) updateIdentity(fn func(*identity)) error {
	n.idMu.Lock()
	next := n.id
	fn(&next)
	if next == n.id {
		n.idMu.Unlock()
		return nil
	}
	if err := next.save(n.raftDir); err != nil {
		n.idMu.Unlock()
		return err
	}
	n.id = next
	n.raftCluster.Store(next.raftCluster()) // before the gate opens: Raft connections of another cluster fail first
	if n.transport != nil {
		n.transport.setOpen(next.Admitted)
	}
	n.idMu.Unlock()
	if n.gossip != nil {
		n.gossip.setMeta(n.localMeta())
	}
	return nil
}

// leaderIdentity returns this node's identity as the Raft leader:
// admitted, with a cluster ID. Raft state from before cluster identities
// gets them here: the leader names the cluster; members learn it when
// admitted.
func (n *Node) leaderIdentity() (identity, error) {
	if own := n.identity(); own.Cluster != "" && own.Admitted {
		return own, nil
	}
	if err := n.updateIdentity(func(id *identity) {
		if id.Cluster == "" {
			id.Cluster = randomID()
		}
		// A sole founder can lead before its bootstrap's last write: its
		// Raft state is written (it has a configuration).
		id.Admitted, id.Founding = true, false
	}); err != nil {
		return identity{}, err
	}
	return n.identity(), nil
}

// localMeta is the metadata this node gossips.
func (n *Node) localMeta() nodeMeta {
	id := n.identity()
	return nodeMeta{
		Version: metaVersion, ID: n.cfg.NodeID, Peer: n.peer.Addr(), HTTP: n.cfg.HTTPAddr, GRPC: n.cfg.GRPCAddr, Kafka: n.cfg.KafkaAddr, Ver: gossipVersion(n.cfg.Version),
		Instance: id.Instance, Cluster: id.Cluster, Admitted: id.Admitted, Legacy: id.Legacy, Expect: n.cfg.BootstrapExpect,
		Leaving: n.leaving.Load(), Features: fsm.FeatureLevel, LowDisk: n.lowDisk.Load(),
	}
}

// hasRaftState reports whether this node holds any Raft log or snapshot
// (it bootstrapped, or a leader added it and replicated to it).
func (n *Node) hasRaftState() bool {
	r := n.r()
	return r != nil && r.LastIndex() > 0
}

// IsLeader reports whether this node currently leads the Raft group.
func (n *Node) IsLeader() bool {
	r := n.r()
	return r != nil && r.State() == raft.Leader
}

// LeaderID returns the node ID of the current Raft leader as this node
// knows it ("" when none is known).
func (n *Node) LeaderID() string {
	r := n.r()
	if r == nil {
		return ""
	}
	_, id := r.LeaderWithID()
	return string(id)
}

// Ready reports whether the node can serve: a leader is known and this node
// has applied the committed log.
func (n *Node) Ready() (bool, string) {
	r := n.r()
	if r == nil {
		return false, "raft not started"
	}
	if id := n.identity(); !id.Admitted {
		return false, n.notAdmittedReason(id)
	}
	if p := n.storeProblem.get(); p != "" {
		return false, p
	}
	if st, stalled := n.fsm.Stalled(); stalled {
		return false, st.String()
	}
	if _, err := n.logWriteFailure(); err != nil {
		return false, err.Error()
	}
	addr, _ := r.LeaderWithID()
	if addr == "" {
		if !n.hasRaftState() {
			return false, "waiting to join a raft group (bootstrap or being added by the leader)"
		}
		return false, "no raft leader elected yet"
	}
	if r.State() == raft.Leader {
		if !n.leaderReady.Load() {
			return false, "raft leader is applying the log from earlier terms"
		}
		return true, ""
	}
	if applied, commit := r.AppliedIndex(), r.CommitIndex(); applied < commit {
		return false, fmt.Sprintf("applying committed raft log (%d of %d)", applied, commit)
	}
	return true, ""
}

// notAdmittedReason says why an unadmitted incarnation is not ready.
func (n *Node) notAdmittedReason(id identity) string {
	if p := n.storeProblem.get(); p != "" {
		return "not admitted: " + p
	}
	if id.Founding {
		return "bootstrapping the raft group"
	}
	if n.cfg.BootstrapExpect > 1 && id.Cluster == "" {
		return fmt.Sprintf("waiting to bootstrap (BOOTSTRAP_EXPECT=%d) or to be admitted by the raft leader", n.cfg.BootstrapExpect)
	}
	return fmt.Sprintf("not admitted: this incarnation %s (new or wiped data dir) takes no part in raft until the raft leader adds and admits it", id.Instance)
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
// On the Raft leader it applies locally; elsewhere it forwards the command,
// at most once, to the leader over peer RPC. Errors wrap fsm.ErrUnavailable
// when the command was definitely not applied, and fsm.ErrOutcomeUnknown
// when it may have been.
func (n *Node) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	r := n.r()
	if r == nil || !n.started.Load() {
		return nil, fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	}
	if n.closed.Load() {
		return nil, fmt.Errorf("%w: agent shutting down", fsm.ErrUnavailable)
	}
	// An undecodable entry would stop every agent's FSM: refuse it here.
	c, err := fsm.Decode(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fsm.ErrInvalidCommand, err)
	}
	if r.State() == raft.Leader {
		res, _, err := n.applyLocal(ctx, cmd)
		return res, err
	}
	return n.startForward(ctx, cmd, earlyAck(c))()
}

// StartPropose starts replicating an encoded fsm command and returns the
// wait for its result (errors as Propose gives them). Commands started
// one after another by one goroutine are applied in that order unless an
// earlier one fails or its outcome is unknown (a forward that timed out
// may still be applied by the leader after a later one): on the Raft leader StartPropose returns once Raft has
// enqueued the entry (hashicorp/raft's Apply, which takes entries in call
// order) and wait waits for its commit; elsewhere it forwards the command
// and returns when the leader has enqueued it, and wait waits for the
// leader's answer and then until this agent applied the entry too (read
// your writes) — except for a produce entry, whose wait returns with the
// leader's answer and leaves read-your-writes to AwaitAcked.
func (n *Node) StartPropose(ctx context.Context, cmd []byte) (wait func() (*fsm.Result, error)) {
	r := n.r()
	var err error
	c, derr := fsm.Decode(cmd)
	switch {
	case r == nil || !n.started.Load():
		err = fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	case n.closed.Load():
		err = fmt.Errorf("%w: agent shutting down", fsm.ErrUnavailable)
	case derr != nil:
		err = fmt.Errorf("%w: %v", fsm.ErrInvalidCommand, derr)
	}
	if err != nil {
		return func() (*fsm.Result, error) { return nil, err }
	}
	if r.State() == raft.Leader {
		start := time.Now()
		fut := r.Apply(cmd, n.cfg.ApplyTimeout)
		return func() (*fsm.Result, error) {
			res, _, err := n.awaitApply(ctx, fut, start)
			return res, err
		}
	}
	return n.startForward(ctx, cmd, earlyAck(c))
}

// applyLocal applies cmd through this node's Raft, which must be the
// leader, and returns the result and the entry's Raft index. It never
// forwards.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) (*fsm.Result, uint64, error) {
	start := time.Now()
	return n.awaitApply(ctx, n.r().Apply(cmd, n.cfg.ApplyTimeout), start)
}

// awaitApply waits for an Apply future started at start; a wait cut by
// ctx or by Close is an unknown outcome (translateApplyErr).
func (n *Node) awaitApply(ctx context.Context, fut raft.ApplyFuture, start time.Time) (*fsm.Result, uint64, error) {
	if err := n.await(ctx, fut); err != nil {
		return nil, 0, translateApplyErr(err)
	}
	if n.metrics != nil {
		n.metrics.applyLatency.Observe(time.Since(start).Seconds())
	}
	res, ok := fut.Response().(*fsm.Result)
	if !ok {
		return nil, 0, fmt.Errorf("%w: unexpected apply response %T", fsm.ErrOutcomeUnknown, fut.Response())
	}
	return res, fut.Index(), nil
}

// waitApplied waits until this node's FSM has applied index, so a caller
// that proposed through the leader reads its own write locally. If ctx
// ends first it returns false; the entry is committed all the same.
func (n *Node) waitApplied(ctx context.Context, index uint64) bool {
	for {
		next := n.applied.next()
		if n.fsm.LastApplied() >= index {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-next:
		}
	}
}

func translateApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	}
	// ErrLeadershipLost, ErrRaftShutdown, ErrAbortedByRestore, a wait cut
	// by the caller's ctx or by Close (await) and anything else: the entry
	// may be in the log and may yet commit.
	return fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, err)
}

// Status is a point-in-time view of the node's Raft state. It is also the
// body of GET /peer/v1/status.
type Status struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Leader       string `json:"leader"` // leader's Raft address
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContactMs is how long ago this node heard from the leader, in
	// milliseconds: 0 on the leader, -1 if never.
	LastContactMs int64    `json:"last_contact_ms"`
	Voters        []string `json:"voters"`
	NonVoters     []string `json:"non_voters"`
	// Instance, ClusterID and Admitted describe this incarnation of the
	// data dir (see DESIGN.md, "Identity").
	Instance  string `json:"instance"`
	ClusterID string `json:"cluster_id,omitempty"`
	Admitted  bool   `json:"admitted"`
	Legacy    bool   `json:"legacy,omitempty"` // identity.Legacy: names no cluster on Raft connections (DESIGN.md, "Identity")
}

// Status returns the node's Raft status.
func (n *Node) Status() Status {
	r := n.r()
	if r == nil || !n.started.Load() {
		return Status{NodeID: n.cfg.NodeID, State: "Stopped", LastContactMs: -1}
	}
	addr, id := r.LeaderWithID()
	ident := n.identity()
	st := Status{
		NodeID: n.cfg.NodeID, State: r.State().String(), Leader: string(addr), LeaderID: string(id),
		Term: r.CurrentTerm(), CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(),
		LastIndex: r.LastIndex(), LastContactMs: -1,
		Instance: ident.Instance, ClusterID: ident.Cluster, Admitted: ident.Admitted, Legacy: ident.Legacy,
	}
	switch lc := r.LastContact(); {
	case st.State == raft.Leader.String():
		st.LastContactMs = 0
	case !lc.IsZero():
		st.LastContactMs = time.Since(lc).Milliseconds()
	}
	if servers, err := n.configuration(); err == nil {
		for _, s := range servers {
			switch s.Suffrage {
			case raft.Voter:
				st.Voters = append(st.Voters, string(s.ID))
			case raft.Nonvoter:
				st.NonVoters = append(st.NonVoters, string(s.ID))
			}
		}
		sort.Strings(st.Voters)
		sort.Strings(st.NonVoters)
	}
	return st
}

// configuration returns the latest Raft configuration's servers.
func (n *Node) configuration() ([]raft.Server, error) {
	r := n.r()
	if r == nil {
		return nil, ErrNotStarted
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// Snapshot forces a Raft snapshot (used by tests and operators).
func (n *Node) Snapshot() error {
	r := n.r()
	if r == nil {
		return fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	}
	return n.await(context.Background(), r.Snapshot())
}

// Leave leaves the cluster on purpose. In order: it gossips that it is
// leaving; if it leads the Raft group it hands leadership to another voter;
// it asks the Raft leader (over peer RPC) to remove it from the group and
// waits for that; then it broadcasts memberlist's leave. The controller then
// moves its partitions at once (their leader is no longer a member). Call
// Close afterwards. An agent that left and starts again with its data dir
// is re-added as a non-voter and promoted when needed.
//
// If the removal cannot be confirmed (no leader reachable, or removing this
// voter would leave too few live voters for a quorum) Leave still leaves
// gossip and returns an error; the leader removes the member once gossip
// shows it gone.
func (n *Node) Leave(ctx context.Context) error {
	if !n.started.Load() {
		return ErrNotStarted
	}
	if n.closed.Load() {
		return ErrClosed
	}
	n.leaving.Store(true)
	n.gossip.setMeta(n.localMeta())
	r := n.r()
	if r.State() == raft.Leader && n.otherVoters() > 0 {
		n.log.Info("leaving: transferring raft leadership")
		if err := n.await(ctx, r.LeadershipTransfer()); err != nil {
			switch {
			case ctx.Err() != nil:
				return fmt.Errorf("cluster: leave: leadership transfer: %w", err)
			case n.closed.Load():
				return ErrClosed
			}
			n.log.Warn("leadership transfer before leave failed", "err", err)
		}
	}
	removeErr := n.leaveRaft(ctx)
	if removeErr != nil {
		n.log.Warn("leaving: removal from the raft group not confirmed; the leader will remove this agent once gossip shows it gone", "err", removeErr)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), 100*time.Millisecond)
	}
	n.log.Info("leaving the cluster")
	if err := n.gossip.leave(n.localMeta(), timeout); err != nil {
		return errors.Join(removeErr, fmt.Errorf("cluster: leave gossip: %w", err))
	}
	return removeErr
}

// leaveRaft asks the Raft leader to remove this agent and waits until it
// did, retrying while leadership moves.
func (n *Node) leaveRaft(ctx context.Context) error {
	r := n.r()
	for {
		if !n.inConfiguration() {
			return nil
		}
		addr, id := r.LeaderWithID()
		var err error
		switch {
		case id == raft.ServerID(n.cfg.NodeID):
			if n.otherVoters() == 0 {
				return nil // the last voter stays; there is no group left to leave
			}
			err = errors.New("this agent still leads the raft group")
		case addr == "":
			err = n.requestLeaveAny(ctx)
			if err == nil {
				return nil
			}
		default:
			err = n.requestLeave(ctx, string(addr))
			if err == nil {
				return nil
			}
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return fmt.Errorf("cluster: leave: %w (%v)", ctx.Err(), err)
		}
	}
}

// requestLeaveAny asks every other server of the configuration this agent
// knows to remove it; the leader among them does (or answers that it has).
// An agent whose removal committed while the entry saying so never reached
// it — the leader stops replicating to a removed server — still finds
// itself in its configuration but hears from no leader any more, and would
// otherwise wait for one until its context ends.
func (n *Node) requestLeaveAny(ctx context.Context) error {
	servers, err := n.configuration()
	if err != nil {
		return err
	}
	errs := []error{errors.New("no raft leader known")}
	for _, s := range servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		if err := n.requestLeave(ctx, string(s.Address)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.ID, err))
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}

// inConfiguration reports whether this agent is in the Raft configuration
// it knows.
func (n *Node) inConfiguration() bool {
	servers, err := n.configuration()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == n.cfg.NodeID {
			return true
		}
	}
	return false
}

func (n *Node) otherVoters() int {
	servers, err := n.configuration()
	if err != nil {
		return 0
	}
	c := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			c++
		}
	}
	return c
}

// Close stops the leader loop, gossip (without a leave broadcast: to the
// others this looks like a crash) and Raft, and closes the Raft stores. The
// peer mux stays the caller's. It is idempotent.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed.Swap(true) {
		return nil
	}
	return n.teardown()
}

// teardown releases whatever Start acquired. closeMu is held.
func (n *Node) teardown() error {
	n.leaderReady.Store(false)
	if n.cancel != nil {
		n.cancel()
	}
	if n.gossip != nil {
		n.gossip.close()
	}
	var errs []error
	if r := n.r(); r != nil {
		// An Apply waiting for disk space would keep Raft's FSM goroutine,
		// and so Shutdown, from returning.
		n.fsm.Halt()
		n.stable.halt()
		errs = append(errs, r.Shutdown().Error())
	}
	// Raft drops some futures unanswered when it shuts down; this ends
	// every wait for one (await).
	n.markRaftDown()
	n.wg.Wait()
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.leaderLog != nil {
		errs = append(errs, n.leaderLog.Close())
	}
	if n.logStore != nil {
		errs = append(errs, n.logStore.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.metrics != nil {
		n.metrics.unregister()
	}
	return errors.Join(errs...)
}
