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

// Readiness reports whether the agent can serve traffic.
type Readiness interface {
	Ready() (bool, string) // false + human reason when not ready
}
