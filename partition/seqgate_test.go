package partition

import (
	"context"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestSeqGateHoldsABatchUntilItsPredecessorIsQueued(t *testing.T) {
	g := newSeqGate(time.Hour)
	ctx := context.Background()
	k := seqKey{producer: 7, epoch: 1, part: fsm.PartitionKey{TopicID: 1, Partition: 2}}
	now := time.Unix(1000, 0)

	g.wait(ctx, k, 5) // nothing on record: passes at once
	g.queued(k, 0, 5, now)
	g.wait(ctx, k, 5) // the next one: passes at once
	g.wait(ctx, k, 0) // a retry: passes at once
	g.wait(ctx, seqKey{producer: 7, epoch: 2, part: k.part}, 50)

	h := newSeqGate(time.Hour)
	h.queued(k, 0, 5, now)
	held := make(chan struct{})
	go func() {
		h.wait(ctx, k, 10)
		close(held)
	}()
	select {
	case <-held:
		t.Fatal("a batch past a gap went through before its predecessor was queued")
	case <-time.After(20 * time.Millisecond):
	}
	h.queued(k, 5, 5, now)
	<-held
}

func TestSeqGateGivesUpAfterMaxWaitOrCtx(t *testing.T) {
	k := seqKey{producer: 1, part: fsm.PartitionKey{TopicID: 1}}
	g := newSeqGate(time.Millisecond)
	g.queued(k, 0, 1, time.Unix(0, 0))
	g.wait(context.Background(), k, 100) // returns after 1 ms

	h := newSeqGate(time.Hour)
	h.queued(k, 0, 1, time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.wait(ctx, k, 100)
}

func TestSeqGateForgetsIdleSlots(t *testing.T) {
	g := newSeqGate(time.Hour)
	t0 := time.Unix(1000, 0)
	a := seqKey{producer: 1, part: fsm.PartitionKey{TopicID: 1}}
	b := seqKey{producer: 2, part: fsm.PartitionKey{TopicID: 1}}
	g.queued(a, 0, 1, t0)
	g.queued(b, 0, 1, t0.Add(seqSlotIdle/2))
	if g.len() != 2 {
		t.Fatalf("%d slots, want 2", g.len())
	}
	g.queued(b, 1, 1, t0.Add(seqSlotIdle+time.Second))
	if g.len() != 1 {
		t.Fatalf("%d slots after the idle one expired, want 1", g.len())
	}
}
