package partition

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// catchUpSyncer plays an agent that lags: the topic exists in the cluster
// but this agent applies it only when SyncRead catches up.
type catchUpSyncer struct {
	calls   int
	err     error
	catchUp func()
}

func (s *catchUpSyncer) SyncRead(context.Context) error {
	s.calls++
	if s.err != nil {
		return s.err
	}
	if s.catchUp != nil {
		s.catchUp()
		s.catchUp = nil
	}
	return nil
}

// TestTopicMissIsConfirmedBeforeNotFound: a lagging agent never answers a
// definite "topic not found" for a topic the cluster has; it catches up
// (and then serves) or answers unavailable.
func TestTopicMissIsConfirmedBeforeNotFound(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()

	// The sync catches up: the topic appears and the produce succeeds.
	s := &catchUpSyncer{catchUp: func() { e.topic("late", 1) }}
	e.node.sync = s
	if _, err := e.prod.Produce(ctx, "late", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("v")}}}); err != nil {
		t.Fatalf("produce after catching up: %v", err)
	}
	if s.calls != 1 {
		t.Fatalf("SyncRead called %d times", s.calls)
	}
	// Known topics never pay for a sync.
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "late", Partition: 0, Offset: 0}); err != nil || s.calls != 1 {
		t.Fatalf("fetch of a known topic: %v, %d syncs", err, s.calls)
	}
	// Still missing after catching up: a definite not found.
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "never", Partition: 0}); !errors.Is(err, fsm.ErrTopicNotFound) {
		t.Fatalf("fetch of a missing topic: %v", err)
	}
	// Cannot confirm: unavailable (retry), never not found.
	s.err = fmt.Errorf("%w: no raft leader known", fsm.ErrUnavailable)
	_, err := e.prod.Produce(ctx, "never", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("v")}}})
	if !errors.Is(err, fsm.ErrUnavailable) || errors.Is(err, fsm.ErrTopicNotFound) {
		t.Fatalf("produce while unable to confirm: %v", err)
	}
	// Describe (no context) confirms a miss the same way.
	s.err = nil
	s.catchUp = func() { e.topic("later", 2) }
	if ps, err := e.admin.Partitions("later"); err != nil || len(ps) != 2 {
		t.Fatalf("describe after catching up: %v %v", ps, err)
	}
	s.err = fmt.Errorf("%w: no raft leader known", fsm.ErrUnavailable)
	if _, err := e.admin.Topic("never"); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("describe while unable to confirm: %v", err)
	}
	g := newGroups(e.cfg, e.deps(), e.fetch)
	if _, err := g.DescribeGroup(ctx, "any"); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("describe group while unable to confirm: %v", err)
	}
}

// TestPartitionMissIsConfirmedBeforeInvalid: right after a topic grew, an
// agent that has not applied the grow yet never answers a definite
// "partition does not exist" for a new partition; it catches up (and then
// serves) or answers unavailable. Every path naming a partition does so:
// produce (also forwarded), idempotent produce, fetch, offset commit, reset.
func TestPartitionMissIsConfirmedBeforeInvalid(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	grow := func(n int32) func() {
		return func() {
			if _, err := e.admin.CreatePartitions(ctx, "t", n); err != nil {
				t.Error(err)
			}
		}
	}
	s := &catchUpSyncer{catchUp: grow(2)}
	e.node.sync = s
	if _, err := e.prod.ProduceLocal(ctx, "t", []fsm.ProduceRecord{{Partition: 1, Record: fsm.Record{Value: []byte("v")}}}); err != nil {
		t.Fatalf("forwarded produce to a partition added after this agent's view: %v", err)
	}
	s.catchUp = grow(3)
	id, err := e.prod.InitProducer(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	b := fsm.IdempotentBatch{Producer: id, Topic: "t", Partition: 2, Records: []fsm.Record{{Value: []byte("w")}}}
	if _, err := e.prod.ProduceIdempotent(ctx, b); err != nil {
		t.Fatalf("idempotent produce to a new partition: %v", err)
	}
	s.catchUp = grow(4)
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Partition: 3}); err != nil {
		t.Fatalf("fetch of a new partition: %v", err)
	}
	g := newGroups(e.cfg, e.deps(), e.fetch)
	s.catchUp = grow(5)
	if err := g.CommitOffsets(ctx, "g", []fsm.GroupCommit{{Topic: "t", Partition: 4, Offset: 0}}); err != nil {
		t.Fatalf("commit on a new partition: %v", err)
	}
	s.catchUp = grow(6)
	if _, err := g.ResetGroup(ctx, "g", fsm.GroupReset{Topic: "t", Partitions: []int32{5}, Strategy: fsm.ResetEarliest}); err != nil {
		t.Fatalf("reset on a new partition: %v", err)
	}
	if s.calls != 5 {
		t.Fatalf("SyncRead called %d times, want once per request", s.calls)
	}
	// Known partitions never pay for a sync; indexes no topic can have
	// neither; a partition still missing after catching up is definite.
	e.produce("t", 5, "x")
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Partition: fsm.MaxPartitions}); !errors.Is(err, fsm.ErrPartitionInvalid) || s.calls != 5 {
		t.Fatalf("fetch past MaxPartitions: %v, %d syncs", err, s.calls)
	}
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Partition: 6}); !errors.Is(err, fsm.ErrPartitionInvalid) || s.calls != 6 {
		t.Fatalf("fetch of a partition the cluster does not have: %v, %d syncs", err, s.calls)
	}
	// Cannot confirm: unavailable (retry), never invalid.
	s.err = fmt.Errorf("%w: no raft leader known", fsm.ErrUnavailable)
	_, err = e.prod.Produce(ctx, "t", []fsm.ProduceRecord{{Partition: 6, Record: fsm.Record{Value: []byte("v")}}})
	if !errors.Is(err, fsm.ErrUnavailable) || errors.Is(err, fsm.ErrInvalidArgument) {
		t.Fatalf("produce while unable to confirm: %v", err)
	}
}
