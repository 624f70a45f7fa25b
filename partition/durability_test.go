package partition

import (
	"errors"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestDurabilityReport: the backlog of the led partitions before a flush,
// nothing after it, and the flushed segments' objects per partition.
func TestDurabilityReport(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 2)
	e.produce("t", 0, "a", "b", "c")
	e.produce("t", 1, "d")
	s := &Service{cfg: e.cfg, deps: e.deps()}
	d := s.Durability()
	if d.NodeID != "n1" || d.LedPartitions != 2 || d.UnflushedRecords != 4 || d.UnflushedPartitions != 2 ||
		d.ClusterUnflushedRecords != 4 || d.LedUnflushedBytes <= 0 || d.UnflushedBytes < d.LedUnflushedBytes ||
		d.OldestUnflushedMs <= 0 || d.LastSegmentCommitMs != 0 {
		t.Fatalf("before the flush: %+v", d)
	}
	e.flushAll()
	d = s.Durability()
	if d.UnflushedRecords != 0 || d.ClusterUnflushedRecords != 0 || d.LedUnflushedBytes != 0 || d.OldestUnflushedMs != 0 || d.LastSegmentCommitMs <= 0 {
		t.Fatalf("after the flush: %+v", d)
	}
	ps, err := s.PartitionStorage("t", 0, 5)
	if err != nil || len(ps) != 2 {
		t.Fatalf("storage: %v %+v", err, ps)
	}
	if p := ps[0]; p.Partition != 0 || p.NextOffset != 3 || p.FlushedOffset != 3 || p.Objects != 1 || p.Segments != 1 || p.SegmentBytes <= 0 || p.LastSegmentCommitMs <= 0 || p.UnflushedBytes != 0 {
		t.Errorf("partition 0: %+v", p)
	}
	if ps, _ := s.PartitionStorage("t", 1, 1); len(ps) != 1 || ps[0].Partition != 1 {
		t.Errorf("from 1 count 1: %+v", ps)
	}
	if _, err := s.PartitionStorage("nope", 0, 1); !errors.Is(err, fsm.ErrTopicNotFound) {
		t.Errorf("unknown topic: %v", err)
	}
	if _, err := s.PartitionStorage("t", -1, 1); !errors.Is(err, fsm.ErrInvalidArgument) {
		t.Errorf("negative from: %v", err)
	}
}
