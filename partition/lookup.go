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
