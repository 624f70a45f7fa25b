package cluster

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// errFenced is the local answer to an outbound AppendEntries or
// InstallSnapshot while this agent is fenced (a leader stalled on local
// storage, DESIGN.md "Full disk").
var errFenced = errors.New("raft rpc not sent: this leader cannot apply (local storage full) and stopped heartbeating so another agent is elected")

// errNotAdmitted is the answer to a Raft RPC refused by the gate. It must not
// contain raft's "unexpected command" text: a pre-vote failing with that
// text is counted as granted.
var errNotAdmitted = errors.New("raft rpc refused: this agent's incarnation (new or wiped data dir) is not admitted to the cluster yet")

// gatedTransport is what the gate wraps: raft.NetworkTransport in the agent,
// raft.InmemTransport in unit tests.
type gatedTransport interface {
	raft.Transport
	raft.WithPreVote
	raft.WithClose
}

// raftGate is the receiving side of this agent's Raft transport. While the
// local incarnation is not admitted (DESIGN.md, "Identity" and "Amnesia")
// it answers every inbound Raft RPC itself, before Raft sees it: votes and
// pre-votes are denied, AppendEntries (heartbeats included),
// InstallSnapshot and TimeoutNow fail. An unadmitted incarnation therefore
// never votes, never campaigns (it never learns a configuration) and never
// acknowledges an entry. Outbound, it sends no vote or pre-vote request
// while closed (an incarnation that somehow holds a configuration, e.g.
// Raft state written by an older version before admission, cannot collect
// votes either); other outbound RPCs pass unchanged.
type raftGate struct {
	gatedTransport
	log     *slog.Logger
	open    atomic.Bool
	fenced  atomic.Bool // outbound AppendEntries/InstallSnapshot refused
	refused *prometheus.CounterVec
	warned  sync.Map // rpc kind → struct{}: first refusal of each kind logged

	out  chan raft.RPC
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	hbMu sync.Mutex
	hb   func(raft.RPC)

	// commitCap, if set, caps the commit index an outbound AppendEntries
	// carries: the leader's durable index (leaderlog.go). Set before Raft
	// starts.
	commitCap func() uint64
}

func newRaftGate(t gatedTransport, log *slog.Logger) *raftGate {
	return &raftGate{
		gatedTransport: t, log: log, out: make(chan raft.RPC), stop: make(chan struct{}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_raft_rpcs_refused_total",
			Help: "Inbound Raft RPCs refused because this agent's incarnation is not admitted yet, by rpc: request_vote, request_pre_vote, append_entries, heartbeat, install_snapshot, timeout_now.",
		}, []string{"rpc"}),
	}
}

// start begins relaying inbound RPCs; call it before Raft starts.
func (g *raftGate) start() {
	g.wg.Add(1)
	go g.relay()
	g.gatedTransport.SetHeartbeatHandler(g.heartbeat)
}

// setOpen opens (admitted) or closes the gate.
func (g *raftGate) setOpen(open bool) {
	if g.open.Swap(open) != open && open {
		g.log.Info("raft rpcs accepted: this incarnation is admitted")
	}
}

// setFenced starts or stops refusing this agent's outbound AppendEntries
// (heartbeats included) and InstallSnapshot. To the followers a fenced
// leader looks partitioned away: they time out and elect another. Raft is
// safe under any message loss, so the fence can never cost a committed
// entry; it only costs this agent its leadership.
func (g *raftGate) setFenced(fenced bool) {
	if g.fenced.Swap(fenced) == fenced {
		return
	}
	if fenced {
		g.log.Warn("raft leader fenced: not sending AppendEntries or heartbeats while local storage stalls applying, so the others elect a new leader")
	} else {
		g.log.Info("raft fence lifted: sending AppendEntries again")
	}
}

// AppendEntries sends unless the gate is fenced, with the commit index
// capped at commitCap: a follower must not apply an entry the leader does
// not hold durably yet.
func (g *raftGate) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if g.fenced.Load() {
		return errFenced
	}
	if g.commitCap != nil {
		if c := g.commitCap(); args.LeaderCommitIndex > c {
			capped := *args
			capped.LeaderCommitIndex = c
			args = &capped
		}
	}
	return g.gatedTransport.AppendEntries(id, target, args, resp)
}

// InstallSnapshot sends unless the gate is fenced.
func (g *raftGate) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if g.fenced.Load() {
		return errFenced
	}
	return g.gatedTransport.InstallSnapshot(id, target, args, resp, data)
}

// Consumer returns the channel Raft reads inbound RPCs from: only those the
// gate lets through.
func (g *raftGate) Consumer() <-chan raft.RPC { return g.out }

// SetHeartbeatHandler installs Raft's heartbeat fast path behind the gate.
func (g *raftGate) SetHeartbeatHandler(cb func(raft.RPC)) {
	g.hbMu.Lock()
	defer g.hbMu.Unlock()
	g.hb = cb
}

// heartbeat is the inner transport's heartbeat fast path.
func (g *raftGate) heartbeat(rpc raft.RPC) {
	if g.refuse(rpc) {
		return
	}
	g.hbMu.Lock()
	cb := g.hb
	g.hbMu.Unlock()
	if cb != nil {
		cb(rpc)
		return
	}
	g.forward(rpc) // no fast path installed: the normal path
}

func (g *raftGate) relay() {
	defer g.wg.Done()
	in := g.gatedTransport.Consumer()
	for {
		select {
		case <-g.stop:
			return
		case rpc := <-in:
			if !g.refuse(rpc) {
				g.forward(rpc)
			}
		}
	}
}

func (g *raftGate) forward(rpc raft.RPC) {
	select {
	case g.out <- rpc:
	case <-g.stop:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	}
}

// refuse answers rpc itself and reports true while the gate is closed.
func (g *raftGate) refuse(rpc raft.RPC) bool {
	if g.open.Load() {
		return false
	}
	kind, resp := g.refusal(rpc)
	// Counted before answering: whoever gets the answer sees the count.
	g.refused.WithLabelValues(kind).Inc()
	if _, seen := g.warned.LoadOrStore(kind, struct{}{}); !seen {
		g.log.Info("refusing raft rpcs until the raft leader admits this incarnation", "rpc", kind)
	}
	if resp != nil {
		rpc.Respond(resp, nil)
	} else {
		rpc.Respond(nil, errNotAdmitted)
	}
	return true
}

// refusal names rpc's kind and builds the denial: a response for votes and
// pre-votes (denied at the candidate's term, so nobody steps down), nil for
// the RPCs that fail with errNotAdmitted. A snapshot's stream is drained so
// the connection stays in sync.
func (g *raftGate) refusal(rpc raft.RPC) (string, any) {
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		return rpcRequestVote, &raft.RequestVoteResponse{RPCHeader: g.header(), Term: req.Term, Granted: false}
	case *raft.RequestPreVoteRequest:
		return rpcRequestPreVote, &raft.RequestPreVoteResponse{RPCHeader: g.header(), Term: req.Term, Granted: false}
	case *raft.AppendEntriesRequest:
		if len(req.Entries) == 0 && req.PrevLogEntry == 0 && req.LeaderCommitIndex == 0 {
			return rpcHeartbeat, nil
		}
		return rpcAppendEntries, nil
	case *raft.InstallSnapshotRequest:
		if rpc.Reader != nil {
			_, _ = io.Copy(io.Discard, rpc.Reader)
		}
		return rpcInstallSnapshot, nil
	case *raft.TimeoutNowRequest:
		return rpcTimeoutNow, nil
	}
	return rpcOther, nil
}

// AppendEntriesPipeline reports that pipelining is not supported, so Raft
// replicates with one AppendEntries in flight per follower. hashicorp/raft
// v1.7.3's pipeline deadlocks with the network transport's default of two
// RPCs in flight (unbuffered channels): when a follower answers
// Success=false or a newer term, pipelineDecode returns, and a send racing
// that exit blocks forever on the in-progress channel — replication to
// that follower stops for good and Raft's Shutdown never returns
// (hashicorp/raft#612; seen here as a cluster test hanging in Shutdown
// after a leadership transfer).
func (g *raftGate) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// RequestVote sends a vote request unless the gate is closed.
func (g *raftGate) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if !g.open.Load() {
		return errNotAdmitted
	}
	return g.gatedTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote sends a pre-vote request unless the gate is closed.
func (g *raftGate) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if !g.open.Load() {
		return errNotAdmitted
	}
	return g.gatedTransport.RequestPreVote(id, target, args, resp)
}

func (g *raftGate) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte(g.LocalAddr())}
}

// Close stops the relay and closes the inner transport. Raft's shutdown
// and the node's teardown both call it.
func (g *raftGate) Close() error {
	var err error
	g.once.Do(func() {
		close(g.stop)
		g.wg.Wait()
		err = g.gatedTransport.Close()
	})
	return err
}
