package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// stallWatch keeps Raft leadership away from an agent whose disk is low or
// full (DESIGN.md, "Full disk"). A stalled leader keeps heartbeating from
// Raft's replication goroutines, so the others would not elect a new one,
// yet its apply pipeline soon blocks Raft's main loop, which then can run
// neither a leadership transfer nor its lease check: without help the
// whole cluster would stop committing until this disk frees. So:
//   - low disk (SetLowDisk) or a stall: ask for a leadership transfer, at
//     once (both notify this loop) and again every ReconcileInterval
//     while this agent leads;
//   - stalled and still leading after ElectionTimeout: fence the Raft
//     transport (no outbound AppendEntries or heartbeats), so the followers
//     time out and elect; the fence lifts when the stall ends or this agent
//     no longer leads.
func (n *Node) stallWatch(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.stallTick())
	defer t.Stop()
	w := stallWatcher{n: n}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.fsm.StallNotify():
		case <-n.lowDiskKick:
		case <-n.leaderLogFailNotify():
		}
		w.check(time.Now())
	}
}

// stallTick is how often the stall watch looks.
func (n *Node) stallTick() time.Duration {
	return min(n.cfg.ReconcileInterval, n.cfg.ElectionTimeout/4)
}

// stallWatcher is stallWatch's state; only its goroutine uses it.
type stallWatcher struct {
	n            *Node
	stalledSince time.Time // when this agent was first seen stalled as leader
	lastTransfer time.Time
	warned       uint64
}

func (w *stallWatcher) check(now time.Time) {
	n := w.n
	st, stalled := n.StorageStall()
	r := n.r()
	leading := r != nil && r.State() == raft.Leader && n.otherVoters() > 0
	if !stalled || !leading {
		w.stalledSince = time.Time{}
		n.setFenced(false)
	}
	if !leading || (!stalled && !n.lowDisk.Load()) {
		w.lastTransfer = time.Time{}
		return
	}
	if stalled {
		if w.stalledSince.IsZero() {
			w.stalledSince = now
		}
		if w.warned != st.Index {
			w.warned = st.Index
			n.log.Warn("handing raft leadership to another voter: applying is stalled on local storage", "index", st.Index, "err", st.Err)
		}
		if now.Sub(w.stalledSince) >= n.cfg.ElectionTimeout {
			n.setFenced(true) // no transfer happened: Raft's main loop is blocked
		}
	}
	if !w.lastTransfer.IsZero() && now.Sub(w.lastTransfer) < n.cfg.ReconcileInterval {
		return
	}
	w.lastTransfer = now
	w.transfer(r, stalled)
}

// StorageStall is the FSM's stall on local storage or, failing that, this
// agent's own Raft log write that fails and is retried (leaderlog.go) or
// hangs (writewatch.go): either way this agent applies nothing until its
// disk takes the write. The stall watch moves leadership away and produce
// is refused (partition).
func (n *Node) StorageStall() (fsm.StallStatus, bool) {
	if st, stalled := n.fsm.Stalled(); stalled {
		return st, true
	}
	if index, err := n.logWriteFailure(); err != nil {
		return fsm.StallStatus{Index: index, Err: err}, true
	}
	return fsm.StallStatus{}, false
}

// logWriteFailure is the leader's own log write that fails and is retried,
// or a log write begun while leading that hangs: this agent applies
// nothing until it succeeds.
func (n *Node) logWriteFailure() (uint64, error) {
	if n.leaderLog != nil {
		if index, err := n.leaderLog.Failure(); err != nil {
			return index, fmt.Errorf("cannot store raft log entries from %d locally (%w); applying waits and the write is retried until it succeeds", index, err)
		}
	}
	if n.writeWatch != nil {
		if index, err := n.writeWatch.Failure(); err != nil {
			return index, fmt.Errorf("cannot store raft log entries from %d locally (%w); applying waits until the disk answers", index, err)
		}
	}
	return 0, nil
}

// leaderLogFailNotify is signalled when the leader's own log write fails
// (nil: never, with SerialLeaderWrite).
func (n *Node) leaderLogFailNotify() <-chan struct{} {
	if n.leaderLog == nil {
		return nil
	}
	return n.leaderLog.FailNotify()
}

// transfer asks Raft to hand leadership to a voter whose disk is not low
// (gossip metadata). Without one, a stalled leader hands it to any voter,
// and a leader that is only low keeps it: moving leadership among agents
// that are all low would only cost availability. LeadershipTransfer only
// enqueues, never blocks on Raft's main loop (which a stalled FSM may
// hold); its outcome is not awaited: the next round asks again while this
// agent still leads.
func (w *stallWatcher) transfer(r *raft.Raft, stalled bool) {
	n := w.n
	if s, ok := n.transferTarget(); ok {
		if !stalled {
			n.log.Warn("handing raft leadership to another voter: free disk space is below MIN_FREE_DISK_BYTES", "to", s.ID)
		}
		_ = r.LeadershipTransferToServer(s.ID, s.Address)
		return
	}
	if stalled {
		_ = r.LeadershipTransfer()
	}
}

// transferTarget is a voter other than this agent that gossip shows alive
// and not low on disk.
func (n *Node) transferTarget() (raft.Server, bool) {
	servers, err := n.configuration()
	if err != nil {
		return raft.Server{}, false
	}
	members := n.gossip.snapshot()
	for _, s := range servers {
		m, ok := members[string(s.ID)]
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID && ok &&
			m.State == StateAlive && m.MetaOK && !m.Meta.LowDisk && !m.Meta.Leaving {
			return s, true
		}
	}
	return raft.Server{}, false
}

func (n *Node) setFenced(fenced bool) {
	if n.transport != nil {
		n.transport.setFenced(fenced)
	}
}
