package cluster

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// Early acknowledgement of forwarded produce entries, and the read barrier
// that keeps read-your-writes on this agent (DESIGN.md "Ack path", step 5).
//
// A forwarded AppendBatch/AppendBatches entry is answered as soon as the
// Raft leader says it is committed and applied there: it is durable on a
// majority and its offsets are known. This agent's own FSM applies it a
// replication round later (the follower learns the commit index with the
// leader's next AppendEntries). Until then a read here would miss the
// record its client was just told about, so every read of partition state
// first passes AwaitAcked, which waits until this FSM applied at least the
// highest index acknowledged early. Other forwarded commands (topics,
// offsets, groups, producers, segments) still wait for their own apply:
// their callers read the state they changed through paths that do not pass
// the barrier.

// earlyAck reports whether the forwarded command cmd may be answered
// before this agent applied it: produce entries only.
func earlyAck(cmd fsm.Command) bool {
	switch cmd.(type) {
	case *fsm.AppendBatch, *fsm.AppendBatches:
		return true
	}
	return false
}

// noteAcked records that an entry at index was acknowledged before this
// agent applied it.
func (n *Node) noteAcked(index uint64) {
	for {
		cur := n.acked.Load()
		if index <= cur || n.acked.CompareAndSwap(cur, index) {
			return
		}
	}
}

// AwaitAcked returns once this agent's FSM applied every entry it
// acknowledged before applying it, so a read after an acknowledged produce
// sees the record. When nothing is outstanding (the normal case) it costs
// two atomic loads. The wait is woken by each apply
// and bounded by ctx and ApplyTimeout; an agent that stopped receiving the
// log fails with an error wrapping fsm.ErrUnavailable rather than answer a
// read without the acknowledged record.
func (n *Node) AwaitAcked(ctx context.Context) error {
	acked := n.acked.Load()
	if acked == 0 || n.applied.last() >= acked {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if n.waitApplied(wctx, acked) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: this agent applied the replicated log up to index %d, not yet up to %d, which it acknowledged",
		fsm.ErrUnavailable, n.fsm.LastApplied(), acked)
}
