package partition

import (
	"context"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// seqGate puts an idempotent producer's batches of one partition back in
// sequence order before they are queued with the coalescer. A producer
// pipelines several batches of a partition (the Go client up to 5, like
// Kafka's); their requests are served concurrently, so a batch may reach
// the coalescer before its predecessor, and the FSM would refuse it
// (OUT_OF_ORDER_SEQUENCE: not written) and cost the client a resend. The
// gate holds a batch whose sequence is past the end of the last batch this
// agent queued for the same producer, epoch and partition until that gap
// is filled, for at most seqGateMaxWait; then it lets it through, and the
// FSM decides as always. Batches with no earlier batch on record, retries
// (sequences at or below the recorded end) and batches of another epoch
// pass at once. The gate only delays: correctness stays with the FSM's
// sequence check.
type seqGate struct {
	maxWait time.Duration

	mu      sync.Mutex
	slots   map[seqKey]*seqSlot
	sweptAt time.Time
}

// seqGateMaxWait bounds how long a batch waits for its predecessor: long
// enough for a request sent just before it, short against a resend.
const seqGateMaxWait = 10 * time.Millisecond

// seqSlotIdle is how long the gate remembers an idle producer's partition.
const seqSlotIdle = time.Minute

type seqKey struct {
	producer uint64
	epoch    uint32
	part     fsm.PartitionKey
}

type seqSlot struct {
	next    int64         // end of the highest batch queued
	changed chan struct{} // closed (and replaced) when next grows
	used    time.Time
}

func newSeqGate(maxWait time.Duration) *seqGate {
	return &seqGate{maxWait: maxWait, slots: map[seqKey]*seqSlot{}}
}

// wait returns once every batch before base has been queued, after
// maxWait, or when ctx ends (the caller then fails on ctx itself).
func (g *seqGate) wait(ctx context.Context, k seqKey, base int64) {
	g.mu.Lock()
	s := g.slots[k]
	if s == nil || base <= s.next {
		g.mu.Unlock()
		return
	}
	timer := time.NewTimer(g.maxWait)
	defer timer.Stop()
	for s.next < base {
		ch := s.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
}

// queued records that the batch [base, base+count) was queued, waking the
// batches waiting for it, and forgets slots idle for seqSlotIdle.
func (g *seqGate) queued(k seqKey, base int64, count int32, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.slots[k]
	if s == nil {
		s = &seqSlot{changed: make(chan struct{})}
		g.slots[k] = s
	}
	if end := base + int64(count); end > s.next {
		s.next = end
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.used = now
	if now.Sub(g.sweptAt) >= seqSlotIdle {
		g.sweptAt = now
		for k, s := range g.slots {
			if now.Sub(s.used) >= seqSlotIdle {
				delete(g.slots, k)
			}
		}
	}
}

// len is the number of remembered slots (tests).
func (g *seqGate) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.slots)
}
