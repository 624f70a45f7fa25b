package fsm

// Types shared by the produce/fetch path (partition) and the transports,
// which only import fsm.

import "sort"

// ProduceRecord is a record to produce. Partition < 0 means "let the
// partitioner choose" (by key, or spread when the key is null).
type ProduceRecord struct {
	Partition int32
	Record    Record
}

// RecordOffset is where a produced record landed.
type RecordOffset struct {
	Partition int32
	Offset    int64
}

// FetchedRecord is a stored record with its position.
type FetchedRecord struct {
	Partition int32
	Offset    int64
	Record
}

// FetchRequest asks for records of one partition starting at Offset.
type FetchRequest struct {
	Topic      string
	Partition  int32
	Offset     int64
	MaxRecords int
	MaxBytes   int
	WaitMs     int64 // long-poll: wait up to this long at the end of the log
}

// FetchResult is the answer to a FetchRequest.
type FetchResult struct {
	Records       []FetchedRecord
	NextOffset    int64
	HighWatermark int64
	LowWatermark  int64
}

// TimestampOffset answers an offset-for-timestamp lookup of one partition
// (Kafka's ListOffsets).
type TimestampOffset struct {
	// Offset is the first offset whose record timestamp is at or after the
	// time asked for, or HighWatermark when no record is that recent.
	Offset        int64
	LowWatermark  int64
	HighWatermark int64
}

// GroupCommit is one offset a consumer group commits.
type GroupCommit struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
}

// GroupPartition is a group's committed position in one partition, with lag.
type GroupPartition struct {
	Topic         string
	Partition     int32
	Offset        int64
	Metadata      string
	CommittedAt   int64 // unix ms
	HighWatermark int64
	LowWatermark  int64
	Lag           int64 // HighWatermark - Offset (never negative)
}

// GroupDescription is a group's committed offsets and lag.
type GroupDescription struct {
	Group      string
	Partitions []GroupPartition // ordered by topic then partition
	TotalLag   int64
}

// SortPartitions orders d's partitions by topic, then partition.
func (d *GroupDescription) SortPartitions() {
	sort.Slice(d.Partitions, func(i, j int) bool {
		a, b := d.Partitions[i], d.Partitions[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
}

// Summary is d's line in the group list (d's partitions sorted).
func (d GroupDescription) Summary() GroupSummary {
	s := GroupSummary{Group: d.Group, Partitions: len(d.Partitions), TotalLag: d.TotalLag, Topics: []string{}}
	for _, p := range d.Partitions {
		if n := len(s.Topics); n == 0 || s.Topics[n-1] != p.Topic {
			s.Topics = append(s.Topics, p.Topic)
		}
	}
	return s
}

// GroupSummary is one line of the group list.
type GroupSummary struct {
	Group      string
	Topics     []string
	Partitions int
	TotalLag   int64
}

// Reset strategies for GroupReset.
const (
	ResetEarliest  = "earliest"
	ResetLatest    = "latest"
	ResetOffset    = "offset"
	ResetTimestamp = "timestamp"
)

// GroupReset moves a group's offsets for a topic (all partitions, or the
// listed ones).
type GroupReset struct {
	Strategy    string
	Topic       string
	Partitions  []int32 // empty: every partition of the topic
	Offset      int64   // ResetOffset
	TimestampMs int64   // ResetTimestamp: first record with timestamp >= this
}

// ProducerIdentity identifies an idempotent producer session.
type ProducerIdentity struct {
	ID    uint64
	Epoch uint32
}

// IdempotentBatch is a batch from an idempotent producer for one partition.
// Sequences are per (producer, partition): BaseSeq is the sequence of the
// first record, the next batch starts at BaseSeq+len(Records).
type IdempotentBatch struct {
	Topic     string
	Partition int32
	Producer  ProducerIdentity
	BaseSeq   int64
	Records   []Record
	// Owner is the caller's API key name: the FSM refuses the batch when
	// the producer was created by another key. "" = not checked.
	Owner string
}

// IdempotentResult is where an idempotent batch landed. Duplicate is true
// when the batch had already been written: the offsets are the original ones.
type IdempotentResult struct {
	BaseOffset int64
	Count      int32
	Duplicate  bool
}
