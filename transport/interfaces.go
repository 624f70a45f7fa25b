package transport

import (
	"context"

	"github.com/streamhouse/streamhouse/fsm"
)

// The transport calls the agent through these interfaces; the agent's wiring
// satisfies them (partition.Admin, partition.Producer, partition.Fetcher and
// the cluster node). Errors should wrap the fsm sentinels so that they map to
// the right status code (see REST.md).

// Topics manages and describes topics.
type Topics interface {
	CreateTopic(ctx context.Context, name string, partitions int32, cfg fsm.TopicConfig) (fsm.Topic, error)
	DeleteTopic(ctx context.Context, name string) error
	Topics() []fsm.Topic
	Topic(name string) (fsm.Topic, error)
	Partitions(name string) ([]fsm.PartitionInfo, error)
	// PartitionsForRouting is Partitions without the read barrier (reads
	// wait until this agent applied the produces it acknowledged): for
	// routing (leaders, epochs) and for the answer to a committed topic
	// change, which must not turn into "not applied" when the barrier
	// gives up.
	PartitionsForRouting(name string) ([]fsm.PartitionInfo, error)
	// AlterTopicConfig changes the named keys (Kafka names, string values;
	// fsm/topicconfig.go); a bad key or value is a *fsm.ConfigError.
	AlterTopicConfig(ctx context.Context, name string, set map[string]string) (fsm.Topic, error)
	// CreatePartitions raises the partition count to count (the new total).
	CreatePartitions(ctx context.Context, name string, count int32) (fsm.Topic, error)
}

// Producer appends records to a topic and returns where each one landed, in
// request order.
type Producer interface {
	Produce(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error)
}

// Fetcher reads records of one partition.
type Fetcher interface {
	Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error)
}

// Offsets answers offset-for-timestamp lookups (partition.Fetcher): the
// first offset of a partition whose record timestamp is at or after ts
// (unix ms), or the high watermark when no record is that recent.
// Errors: fsm.ErrTopicNotFound, fsm.ErrPartitionInvalid,
// fsm.ErrInvalidArgument (negative ts), plus read errors.
type Offsets interface {
	OffsetForTimestamp(ctx context.Context, topic string, partition int32, ts int64) (fsm.TimestampOffset, error)
}

// Readiness reports whether the agent can serve traffic.
type Readiness interface {
	Ready() (bool, string) // false + human reason when not ready
}

// ClusterInfo reports the agent's view of the cluster (GET /api/v1/cluster).
type ClusterInfo interface {
	ClusterStatus() ClusterStatus
}

// ClusterMember is one agent as this agent sees it.
type ClusterMember struct {
	ID          string   `json:"id"`
	GossipState string   `json:"gossip_state"`  // alive, suspect, dead, left
	Suffrage    string   `json:"raft_suffrage"` // voter, nonvoter, none
	RaftLeader  bool     `json:"raft_leader"`
	HTTPAddr    string   `json:"http_addr,omitempty"`
	GRPCAddr    string   `json:"grpc_addr,omitempty"`
	PeerAddr    string   `json:"peer_addr,omitempty"`
	KafkaAddr   string   `json:"kafka_addr,omitempty"`  // Kafka listener (advertised)
	Version     string   `json:"version,omitempty"`     // the agent's version, from gossip
	BrokerID    int32    `json:"broker_id"`             // Kafka broker ID (0: not registered yet)
	Leaderships []string `json:"partition_leaderships"` // "topic/partition"
}

// ClusterStatus is the body of GET /api/v1/cluster.
type ClusterStatus struct {
	NodeID       string `json:"node_id"` // the agent answering
	RaftState    string `json:"raft_state"`
	Leader       string `json:"raft_leader"`
	Term         uint64 `json:"raft_term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactMs: how long ago the agent heard from the leader (0 on the
	// leader, -1 never).
	LastContactMs int64           `json:"last_contact_ms"`
	Voters        []string        `json:"voters"`
	NonVoters     []string        `json:"non_voters"`
	Members       []ClusterMember `json:"members"`
}

// Groups manages consumer-group committed offsets (replicated through Raft).
// Errors: fsm.ErrGroupNotFound, fsm.ErrTopicNotFound, fsm.ErrPartitionInvalid,
// fsm.ErrInvalidArgument (bad name, negative offset, offset past the high
// watermark), plus the write-outcome errors.
type Groups interface {
	CommitOffsets(ctx context.Context, group string, commits []fsm.GroupCommit) error
	ListGroups() []fsm.GroupSummary
	// DescribeGroup reads as of a linearizable point: never older than a
	// commit acknowledged before the call, through any agent.
	DescribeGroup(ctx context.Context, group string) (fsm.GroupDescription, error)
	DeleteGroup(ctx context.Context, group string) error
	ResetGroup(ctx context.Context, group string, req fsm.GroupReset) (fsm.GroupDescription, error)
}

// IdempotentProducer serves producers that carry a producer id, epoch and
// sequence numbers. Errors: fsm.ErrProducerFenced (a newer epoch exists),
// fsm.ErrUnknownProducer, fsm.ErrOutOfOrderSequence, plus the produce errors.
type IdempotentProducer interface {
	// InitProducer: id 0 issues a new producer owned by owner (the caller's
	// API key name, "" without keys); another id bumps its epoch, refused
	// with fsm.ErrProducerNotOwned unless owner created it.
	InitProducer(ctx context.Context, id uint64, owner string) (fsm.ProducerIdentity, error)
	ProduceIdempotent(ctx context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error)
}
