package kafka

import (
	"context"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// Cluster is the agent's view of the cluster: members with their Kafka
// addresses and broker IDs, and the Raft leader (cluster.Node).
type Cluster interface {
	ClusterStatus() transport.ClusterStatus
}

// Topics describes and manages topics (partition.Admin).
type Topics interface {
	Topics() []fsm.Topic
	Topic(name string) (fsm.Topic, error)
	// Partitions passes the agent's read barrier: its watermarks include
	// every produce the agent acknowledged.
	Partitions(name string) ([]fsm.PartitionInfo, error)
	// PartitionsForRouting skips it: Produce and Metadata only route by
	// leader and epoch; a produce must not wait for the agent's apply of
	// the one before.
	PartitionsForRouting(name string) ([]fsm.PartitionInfo, error)
}

// Fetcher reads records of one partition (partition.Fetcher).
type Fetcher interface {
	Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error)
}
