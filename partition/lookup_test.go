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
