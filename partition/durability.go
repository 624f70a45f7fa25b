package partition

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// Durability is where this agent's share of the records stands on their way
// to the object store: what it has not flushed yet of the partitions it
// leads (it is their uploader), and the store's local bytes.
type Durability struct {
	NodeID string
	// LedPartitions is how many partitions this agent leads.
	LedPartitions int
	// UnflushedRecords and UnflushedPartitions cover the partitions this
	// agent leads: committed offsets not yet in a segment object.
	UnflushedRecords    int64
	UnflushedPartitions int
	// ClusterUnflushedRecords is the same over every partition (the sum
	// of streamhouse_topic_unflushed_offsets).
	ClusterUnflushedRecords int64
	// UnflushedBytes is the local store's size (streamhouse_unflushed_bytes:
	// unflushed plus not yet pruned batches of every partition).
	UnflushedBytes int64
	// LedUnflushedBytes is the unflushed bytes of the partitions it leads.
	LedUnflushedBytes int64
	// OldestUnflushedMs is the batch timestamp (unix ms) of the oldest
	// unflushed record of the partitions it leads; 0 when none.
	OldestUnflushedMs int64
	// LastSegmentCommitMs is the newest commit time (cluster clock, unix
	// ms) of the last flushed segment of a partition it leads; 0 when none.
	LastSegmentCommitMs int64
	// NowMs is the cluster clock the ages are measured against.
	NowMs int64
}

// Durability reports the agent's flush backlog. It walks the partitions
// once (O(partitions), no I/O), so a caller may poll it every second.
func (s *Service) Durability() Durability {
	d := Durability{NodeID: s.cfg.NodeID, UnflushedBytes: s.deps.Store.Bytes(), NowMs: s.deps.FSM.Clock()}
	for _, p := range s.deps.FSM.AllPartitions() {
		n := p.NextOffset - p.FlushedOffset
		d.ClusterUnflushedRecords += n
		if p.Leader != s.cfg.NodeID {
			continue
		}
		d.LedPartitions++
		if p.FlushedOffset > 0 {
			if seg, ok := s.deps.FSM.SegmentFor(p.TopicID, p.Partition, p.FlushedOffset-1); ok {
				d.LastSegmentCommitMs = max(d.LastSegmentCommitMs, seg.CommittedAt)
			}
		}
		if n <= 0 {
			continue
		}
		d.UnflushedRecords += n
		d.UnflushedPartitions++
		u := s.deps.Store.Unflushed(fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}, p.FlushedOffset)
		d.LedUnflushedBytes += u.Bytes
		if u.OldestTs > 0 && (d.OldestUnflushedMs == 0 || u.OldestTs < d.OldestUnflushedMs) {
			d.OldestUnflushedMs = u.OldestTs
		}
	}
	return d
}

// PartitionStorage is where one partition's records are stored.
type PartitionStorage struct {
	fsm.PartitionInfo
	// UnflushedBytes and OldestUnflushedMs describe the records this agent
	// holds locally at or above the flushed offset.
	UnflushedBytes    int64
	OldestUnflushedMs int64
	// Objects is the number of distinct segment objects holding the
	// partition's committed segments; SegmentBytes their byte ranges' sum.
	Objects      int
	SegmentBytes int64
	// LastSegmentCommitMs is the last segment's commit time (0: none).
	LastSegmentCommitMs int64
}

// maxStorageRange bounds one PartitionStorage call.
const maxStorageRange = 200

// PartitionStorage describes partitions [from, from+count) of topic
// (count is capped at 200, so a call stays cheap with any partition count).
func (s *Service) PartitionStorage(topic string, from, count int32) ([]PartitionStorage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	if err := s.deps.Node.AwaitAcked(ctx); err != nil {
		return nil, err
	}
	t, ok := s.deps.FSM.Topic(topic)
	if !ok {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
	}
	if from < 0 || count < 0 {
		return nil, fmt.Errorf("%w: from and count must be >= 0", fsm.ErrInvalidArgument)
	}
	count = min(count, maxStorageRange)
	var out []PartitionStorage
	for i := from; i < from+count && i < t.Partitions; i++ {
		info, ok := s.deps.FSM.Partition(t.ID, i)
		if !ok {
			continue
		}
		out = append(out, s.partitionStorage(info))
	}
	return out, nil
}

func (s *Service) partitionStorage(info fsm.PartitionInfo) PartitionStorage {
	ps := PartitionStorage{PartitionInfo: info}
	u := s.deps.Store.Unflushed(fsm.PartitionKey{TopicID: info.TopicID, Partition: info.Partition}, info.FlushedOffset)
	ps.UnflushedBytes, ps.OldestUnflushedMs = u.Bytes, u.OldestTs
	objects := map[string]bool{}
	for _, seg := range s.deps.FSM.Segments(info.TopicID, info.Partition) {
		objects[seg.ObjectKey] = true
		ps.SegmentBytes += seg.ByteLength
		ps.LastSegmentCommitMs = max(ps.LastSegmentCommitMs, seg.CommittedAt)
	}
	ps.Objects = len(objects)
	return ps
}
