package partition

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// lookupTopic finds a topic by name. A miss is confirmed against the
// cluster's committed state (sync.SyncRead) before it is reported, so an
// agent that lags behind — restarting and replaying its log, or a follower
// that has not applied a CreateTopic yet — never answers a definite "not
// found" for a topic that exists; it answers fsm.ErrUnavailable (retry)
// when it cannot confirm. sync may be nil (single-process tests).
func lookupTopic(ctx context.Context, meta Metadata, sync Syncer, name string) (fsm.Topic, error) {
	if t, ok := meta.Topic(name); ok {
		return t, nil
	}
	if sync != nil {
		if err := sync.SyncRead(ctx); err != nil {
			return fsm.Topic{}, fmt.Errorf("topic %q is not known to this agent and it could not confirm with the cluster: %w", name, err)
		}
		if t, ok := meta.Topic(name); ok {
			return t, nil
		}
	}
	return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
}

// lookupTopicFor is lookupTopic for a request that names partitions up to
// maxPart (negative: none). Partitions are added after their topic
// (CreatePartitions), so an agent that lags — a follower that has not
// applied the grow yet, or the new partition's leader receiving a forwarded
// produce — may know fewer than the request names: such a count is
// confirmed against the cluster's committed state too before the caller
// answers a definite "partition does not exist" (fsm.ErrUnavailable when it
// cannot confirm). Indexes no topic can have never cost a sync.
func lookupTopicFor(ctx context.Context, meta Metadata, sync Syncer, name string, maxPart int32) (fsm.Topic, error) {
	t, err := lookupTopic(ctx, meta, sync, name)
	if err != nil || maxPart < t.Partitions || maxPart >= fsm.MaxPartitions || sync == nil {
		return t, err
	}
	if err := sync.SyncRead(ctx); err != nil {
		return fsm.Topic{}, fmt.Errorf("partition %d of topic %q is not known to this agent and it could not confirm with the cluster: %w", maxPart, name, err)
	}
	if now, ok := meta.TopicByID(t.ID); ok {
		return now, nil
	}
	return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
}
