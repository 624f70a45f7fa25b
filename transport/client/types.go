package client

import (
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Header is one record header; order is kept and keys may repeat.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record to produce or a consumed one.
//
// Producing: Key nil is a null key (the record is spread by the sticky
// partitioner), a non-nil Key (even empty) is hashed with Kafka's murmur2
// partitioner; use ToPartition to name the partition explicitly. Topic,
// Partition and Offset are ignored unless ToPartition was used. Timestamp 0
// means the agent's clock.
//
// Consuming: Topic, Partition, Offset and Timestamp say where the record is
// and when it was produced.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp int64 // unix milliseconds
	Key       []byte
	Value     []byte
	Headers   []Header

	explicit bool // Partition was set by ToPartition
}

// ToPartition returns a copy of r that is produced to partition p,
// bypassing the partitioner.
func (r Record) ToPartition(p int32) Record {
	r.Partition, r.explicit = p, true
	return r
}

// HasExplicitPartition reports whether ToPartition was used.
func (r Record) HasExplicitPartition() bool { return r.explicit }

// size approximates the encoded size of r (fsm.Record.Size plus framing).
func (r *Record) size() int {
	n := len(r.Key) + len(r.Value) + 16
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 4
	}
	return n
}

// Offset is where a produced record landed.
type Offset struct {
	Partition int32
	Offset    int64
}

// Topic is a topic's identity and configuration.
type Topic struct {
	Name           string
	ID             uint64
	Partitions     int32
	RetentionMs    int64 // 0: forever
	RetentionBytes int64 // per partition; 0: unlimited
	Compression    string
	CreatedAtMs    int64
	// Configs is every supported config key (Kafka names, sorted), filled
	// by DescribeTopic and AlterTopicConfig (nil elsewhere).
	Configs []ConfigEntry
}

// ConfigEntry is one key of a topic's configuration: retention.ms,
// retention.bytes, compression.type, max.message.bytes or cleanup.policy,
// with its value as a string ("-1" = unlimited retention).
type ConfigEntry struct {
	Name    string
	Value   string
	Default bool // the topic does not set it
}

// TopicConfig is the optional configuration of CreateTopic.
type TopicConfig struct {
	RetentionMs    int64  // 0 keeps records forever
	RetentionBytes int64  // per partition; 0 is unlimited
	Compression    string // "zstd" (default), "lz4" or "none"
}

// PartitionInfo is the state of one partition.
type PartitionInfo struct {
	Partition     int32
	Leader        string // node id; "" while no agent leads it
	LeaderEpoch   uint64
	LowWatermark  int64 // first readable offset
	HighWatermark int64 // offset the next record will get
	FlushedOffset int64 // every offset below is in S3
	SegmentCount  int32
}

// Agent is one agent of the cluster.
type Agent struct {
	NodeID      string
	GRPCAddress string
	HTTPAddress string
	RaftLeader  bool
	GossipState string
}

// PartitionMetadata says which agent leads a partition.
type PartitionMetadata struct {
	Partition   int32
	Leader      string
	LeaderEpoch uint64
}

// TopicMetadata is a topic's partition leadership.
type TopicMetadata struct {
	Name       string
	ID         uint64
	Partitions []PartitionMetadata
}

// Metadata is the answer of GetMetadata.
type Metadata struct {
	NodeID     string // the agent that answered
	RaftLeader string
	Agents     []Agent
	Topics     []TopicMetadata
}

// Consumer-group types are the FSM's (re-exported so users need not import
// fsm).
type (
	// OffsetCommit is one offset a group commits: the offset of the next
	// record the group will consume.
	OffsetCommit = fsm.GroupCommit
	// GroupSummary is one group of ListGroups.
	GroupSummary = fsm.GroupSummary
	// GroupDescription is a group's committed offsets and lag.
	GroupDescription = fsm.GroupDescription
	// GroupPartition is a group's position in one partition, with lag.
	GroupPartition = fsm.GroupPartition
	// GroupReset says where ResetGroup moves a group's offsets.
	GroupReset = fsm.GroupReset
)

// Reset strategies of GroupReset.Strategy.
const (
	ResetEarliest  = fsm.ResetEarliest
	ResetLatest    = fsm.ResetLatest
	ResetOffset    = fsm.ResetOffset
	ResetTimestamp = fsm.ResetTimestamp
)

// CommittedOffset is a group's committed offset in one partition.
type CommittedOffset struct {
	Topic         string
	Partition     int32
	Offset        int64
	Metadata      string
	CommittedAtMs int64
}

// ProducerIdentity is an idempotent producer session.
type ProducerIdentity struct {
	ID    uint64
	Epoch uint32
}

// Special offsets of FetchRequest.Offset and SubscribeRequest.Offset.
const (
	OffsetLatest   int64 = -1 // the high watermark: only new records
	OffsetEarliest int64 = -2 // the low watermark: everything still stored
)

// FetchRequest reads one partition.
type FetchRequest struct {
	Topic      string
	Partition  int32
	Offset     int64         // >= 0, OffsetEarliest or OffsetLatest
	MaxRecords int32         // 0: the agent's default (100)
	MaxBytes   int32         // 0: 1 MiB
	MaxWait    time.Duration // long-poll at the end of the log; 0 answers at once
}

// FetchResult is a batch of records of one partition.
type FetchResult struct {
	Records       []Record
	NextOffset    int64 // where to continue (offsets may jump: never assume dense)
	HighWatermark int64
	LowWatermark  int64
}

// SubscribeRequest starts a Subscribe stream.
type SubscribeRequest struct {
	Topic      string
	Partition  int32
	Offset     int64 // >= 0, OffsetEarliest or OffsetLatest
	MaxRecords int32
	MaxBytes   int32
	MaxWait    time.Duration // the agent's internal long-poll; 0 = 1 s
}

func configsFromPB(es []*pb.TopicConfigEntry) []ConfigEntry {
	out := make([]ConfigEntry, len(es))
	for i, e := range es {
		out[i] = ConfigEntry{Name: e.GetName(), Value: e.GetValue(), Default: e.GetIsDefault()}
	}
	return out
}

func topicFromPB(t *pb.Topic) Topic {
	return Topic{
		Name: t.GetName(), ID: t.GetId(), Partitions: t.GetPartitions(), RetentionMs: t.GetRetentionMs(),
		RetentionBytes: t.GetRetentionBytes(), Compression: t.GetCompression(), CreatedAtMs: t.GetCreatedAtMs(),
	}
}

func recordsFromPB(topic string, in []*pb.FetchedRecord) []Record {
	out := make([]Record, len(in))
	for i, r := range in {
		out[i] = Record{
			Topic: topic, Partition: r.GetPartition(), Offset: r.GetOffset(), Timestamp: r.GetTimestampMs(),
			Key: r.Key, Value: r.GetValue(),
		}
		if out[i].Value == nil {
			out[i].Value = []byte{}
		}
		if hs := r.GetHeaders(); len(hs) > 0 {
			out[i].Headers = make([]Header, len(hs))
			for j, h := range hs {
				out[i].Headers[j] = Header{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
	}
	return out
}

func groupFromPB(d *pb.GroupDescription) GroupDescription {
	out := GroupDescription{Group: d.GetGroup(), TotalLag: d.GetTotalLag(), Partitions: make([]GroupPartition, len(d.GetPartitions()))}
	for i, p := range d.GetPartitions() {
		out.Partitions[i] = GroupPartition{
			Topic: p.GetTopic(), Partition: p.GetPartition(), Offset: p.GetOffset(), Metadata: p.GetMetadata(),
			CommittedAt: p.GetCommittedAtMs(), HighWatermark: p.GetHighWatermark(), LowWatermark: p.GetLowWatermark(), Lag: p.GetLag(),
		}
	}
	return out
}
