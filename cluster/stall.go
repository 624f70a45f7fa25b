package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// stallWatch hands Raft leadership to another voter while this agent's FSM
// cannot apply (its disk is full). A stalled leader keeps heartbeating from
// Raft's replication goroutines, so the others would not elect a new one,
// yet its own apply pipeline soon blocks Raft's main loop: without a
// transfer the whole cluster would stop committing until this disk frees.
func (n *Node) stallWatch(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	var warned uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, stalled := n.fsm.Stalled()
		r := n.r()
		if !stalled || r.State() != raft.Leader || n.otherVoters() == 0 {
			continue
		}
		if warned != st.Index {
			warned = st.Index
			n.log.Warn("handing raft leadership to another voter: applying is stalled on local storage", "index", st.Index, "err", st.Err)
		}
		// LeadershipTransfer only enqueues, never blocks on Raft's main
		// loop (which a stalled FSM may hold). Its outcome is not awaited:
		// the next tick asks again while this agent still leads.
		_ = r.LeadershipTransfer()
	}
}
