package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Admin manages topics through Raft proposals.
type Admin struct {
	meta      Metadata
	proposer  Proposer
	placement Placement
	clock     func() time.Time
	sync      Syncer
	barrier   ReadBarrier // Partitions' watermarks include what this agent acknowledged
	limits    fsm.ClusterLimits
}

// syncTimeout bounds the confirmation of a topic miss on the calls that
// carry no context.
const syncTimeout = 10 * time.Second

// newAdmin returns an Admin. Topic creation carries cfg.Limits, the
// cluster-wide totals the FSM enforces (zero: unlimited); topic misses are
// confirmed with the cluster before "not found" is answered (lookupTopic).
func newAdmin(cfg Config, d Deps) *Admin {
	d = d.withDefaults()
	return &Admin{meta: d.FSM, proposer: d.Node, placement: d.Node, sync: d.Node, barrier: d.Node, limits: cfg.Limits, clock: d.Clock}
}

// CreateTopic validates and creates a topic, placing partition leaders.
func (a *Admin) CreateTopic(ctx context.Context, name string, partitions int32, cfg fsm.TopicConfig) (fsm.Topic, error) {
	if err := fsm.ValidateTopicName(name); err != nil {
		return fsm.Topic{}, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if err := fsm.ValidatePartitionCount(partitions); err != nil {
		return fsm.Topic{}, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if err := fsm.ValidateCompression(cfg.Compression); err != nil {
		return fsm.Topic{}, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if cfg.RetentionMs < 0 || cfg.RetentionBytes < 0 {
		return fsm.Topic{}, fmt.Errorf("%w: retention must not be negative", fsm.ErrInvalidArgument)
	}
	if _, ok := a.meta.Topic(name); ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicExists, name)
	}
	cmd := &fsm.CreateTopic{Name: name, Partitions: partitions, Config: cfg, Leaders: a.placement.Placement(partitions), Timestamp: a.clock().UnixMilli(), Limits: a.limits}
	res, err := a.proposer.Propose(ctx, fsm.Encode(cmd))
	if err != nil {
		return fsm.Topic{}, err
	}
	if err := res.Err(); err != nil {
		return fsm.Topic{}, err
	}
	// The command may have been applied by the Raft leader before this
	// agent applied it: wait for the local state to catch up.
	for {
		changed := a.meta.Changed()
		if t, ok := a.meta.TopicByID(res.TopicID); ok {
			return t, nil
		}
		if a.meta.LastApplied() >= res.TopicID {
			return fsm.Topic{}, fmt.Errorf("%w: topic %q was deleted right after creation", fsm.ErrTopicNotFound, name)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fsm.Topic{}, fmt.Errorf("%w: topic %q was created but this agent has not applied it yet: %v", fsm.ErrOutcomeUnknown, name, ctx.Err())
		}
	}
}

// DeleteTopic deletes a topic.
func (a *Admin) DeleteTopic(ctx context.Context, name string) error {
	if _, err := lookupTopic(ctx, a.meta, a.sync, name); err != nil {
		return err
	}
	res, err := a.proposer.Propose(ctx, fsm.Encode(&fsm.DeleteTopic{Name: name}))
	if err != nil {
		return err
	}
	return res.Err()
}

// Topics lists topics.
func (a *Admin) Topics() []fsm.Topic { return a.meta.Topics() }

// Topic returns one topic.
func (a *Admin) Topic(name string) (fsm.Topic, error) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	return lookupTopic(ctx, a.meta, a.sync, name)
}

// Partitions returns a topic's partitions, with watermarks that include
// every produce this agent acknowledged (the read barrier).
func (a *Admin) Partitions(name string) ([]fsm.PartitionInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	if err := a.barrier.AwaitAcked(ctx); err != nil {
		return nil, err
	}
	return a.partitions(ctx, name)
}

// PartitionsForRouting returns a topic's partitions as this agent applied
// them, without the read barrier: for routing (leader, epoch — a produce,
// metadata), which does not depend on what earlier acknowledged writes
// stored. A produce must not wait for this agent's apply of the one
// before it, nor metadata for an agent that is catching up.
func (a *Admin) PartitionsForRouting(name string) ([]fsm.PartitionInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	return a.partitions(ctx, name)
}

func (a *Admin) partitions(ctx context.Context, name string) ([]fsm.PartitionInfo, error) {
	t, err := lookupTopic(ctx, a.meta, a.sync, name)
	if err != nil {
		return nil, err
	}
	return a.meta.Partitions(t.ID), nil
}

// AlterTopicConfig changes the named keys of a topic's configuration
// (Kafka names, string values: fsm/topicconfig.go); the others keep their
// value. A bad key or value is a *fsm.ConfigError (fsm.ErrInvalidArgument)
// and nothing is proposed. The command names the topic's ID, so a namesake
// created after a deletion in between is not altered (fsm.ErrTopicNotFound).
// It returns the topic as this agent applied it.
func (a *Admin) AlterTopicConfig(ctx context.Context, name string, set map[string]string) (fsm.Topic, error) {
	t, err := lookupTopic(ctx, a.meta, a.sync, name)
	if err != nil {
		return fsm.Topic{}, err
	}
	entries, err := fsm.ConfigEntries(set)
	if err != nil {
		return fsm.Topic{}, err
	}
	return a.proposeTopicChange(ctx, t, &fsm.AlterTopicConfig{Topic: name, TopicID: t.ID, Set: entries})
}

// CreatePartitions raises a topic's partition count to count (the new
// total; lowering or keeping it is fsm.ErrInvalidArgument), within the
// cluster's MAX_PARTITIONS. The new partitions get leaders from the
// placement (the controller assigns any left without one). Keyed records
// hash over the new count from then on, so a key may map to another
// partition than before (as in Kafka).
func (a *Admin) CreatePartitions(ctx context.Context, name string, count int32) (fsm.Topic, error) {
	t, err := lookupTopic(ctx, a.meta, a.sync, name)
	if err != nil {
		return fsm.Topic{}, err
	}
	if err := fsm.ValidatePartitionCount(count); err != nil {
		return fsm.Topic{}, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if count <= t.Partitions {
		return fsm.Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only be raised (asked for %d)",
			fsm.ErrInvalidArgument, name, t.Partitions, count)
	}
	cmd := &fsm.CreatePartitions{Topic: name, TopicID: t.ID, Count: count,
		Leaders: a.placement.Placement(count - t.Partitions), Limits: a.limits}
	return a.proposeTopicChange(ctx, t, cmd)
}

// proposeTopicChange proposes cmd (a change of topic t) and waits until this
// agent has applied it, so the caller reads its own write.
func (a *Admin) proposeTopicChange(ctx context.Context, t fsm.Topic, cmd fsm.Command) (fsm.Topic, error) {
	res, err := a.proposer.Propose(ctx, fsm.Encode(cmd))
	if err != nil {
		return fsm.Topic{}, err
	}
	if err := res.Err(); err != nil {
		return fsm.Topic{}, err
	}
	for {
		changed := a.meta.Changed()
		if a.meta.LastApplied() >= res.Index {
			if now, ok := a.meta.TopicByID(t.ID); ok {
				return now, nil
			}
			return fsm.Topic{}, fmt.Errorf("%w: topic %q was deleted right after the change", fsm.ErrTopicNotFound, t.Name)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fsm.Topic{}, fmt.Errorf("%w: the change of topic %q was applied but this agent has not applied it yet: %v", fsm.ErrOutcomeUnknown, t.Name, ctx.Err())
		}
	}
}
