package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Groups manages consumer groups: committed offsets replicated through
// Raft, their lag against the high watermark, and resets.
type Groups struct {
	meta     Metadata
	proposer Proposer
	fetcher  *Fetcher // resolves timestamp resets
	clock    func() time.Time
	sync     Syncer
	barrier  ReadBarrier // a reset to latest includes what this agent acknowledged
	max      int64       // MAX_GROUPS, carried by CommitOffsets; 0 = unlimited
}

// newGroups returns the consumer-group service. cfg.MaxGroups bounds the
// number of groups in the cluster (0: no bound): the FSM refuses a commit
// that would create one more. Group reads are linearizable: DescribeGroup
// first waits until this agent applied everything committed before the
// call (d.Node's SyncRead), so a consumer never resumes from an offset
// older than one it committed through any agent. fetcher may be nil (then
// a timestamp reset is refused).
func newGroups(cfg Config, d Deps, fetcher *Fetcher) *Groups {
	d = d.withDefaults()
	return &Groups{meta: d.FSM, proposer: d.Node, fetcher: fetcher, sync: d.Node, barrier: d.Node, max: cfg.MaxGroups, clock: d.Clock}
}

// CommitOffsets commits a group's offsets, all or nothing. An offset past
// the partition's high watermark is refused, and so is any commit while
// the group has members (only they commit, through the Coordinator).
func (g *Groups) CommitOffsets(ctx context.Context, group string, commits []fsm.GroupCommit) error {
	return g.commitAs(ctx, group, commits, "", fsm.NoGeneration)
}

// commitAs commits as member (in generation gen) or, with member "", as a
// simple consumer.
func (g *Groups) commitAs(ctx context.Context, group string, commits []fsm.GroupCommit, member string, gen int32) error {
	if err := fsm.ValidateGroupName(group); err != nil {
		return fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if len(commits) == 0 {
		return fmt.Errorf("%w: no offsets to commit", fsm.ErrInvalidArgument)
	}
	cmd := &fsm.CommitOffsets{Group: group, Timestamp: g.clock().UnixMilli(), MaxGroups: g.max, MemberID: member}
	if member != "" {
		cmd.Generation = gen
	}
	for _, c := range commits {
		t, err := lookupTopicFor(ctx, g.meta, g.sync, c.Topic, c.Partition)
		if err != nil {
			return err
		}
		if c.Partition < 0 || c.Partition >= t.Partitions {
			return fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, c.Partition, c.Topic, t.Partitions)
		}
		if c.Offset < 0 {
			return fmt.Errorf("%w: offset %d is negative", fsm.ErrInvalidArgument, c.Offset)
		}
		if len(c.Metadata) > 4096 {
			return fmt.Errorf("%w: metadata is %d bytes, the limit is 4096", fsm.ErrInvalidArgument, len(c.Metadata))
		}
		cmd.Offsets = append(cmd.Offsets, fsm.OffsetCommit{TopicID: t.ID, Partition: c.Partition, Offset: c.Offset, Metadata: c.Metadata})
	}
	return g.propose(ctx, cmd)
}

// propose replicates cmd and waits until this agent applied it, so a
// describe on the same agent reads the write.
func (g *Groups) propose(ctx context.Context, cmd fsm.Command) error {
	res, err := g.proposer.Propose(ctx, fsm.Encode(cmd))
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return err
	}
	for {
		changed := g.meta.Changed()
		if g.meta.LastApplied() >= res.Index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// Applied on a majority; this agent is just behind.
			return nil
		}
	}
}

// DeleteGroup removes a group and its offsets.
func (g *Groups) DeleteGroup(ctx context.Context, group string) error {
	if err := fsm.ValidateGroupName(group); err != nil {
		return fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	_, hasOffsets := g.meta.GroupOffsets(group)
	m, hasMembership := g.meta.Membership(group)
	if !hasOffsets && !hasMembership {
		return fmt.Errorf("%w: %q", fsm.ErrGroupNotFound, group)
	}
	if len(m.Members) > 0 {
		return fmt.Errorf("%w: %q has %d members in generation %d", fsm.ErrGroupNotEmpty, group, len(m.Members), m.Generation)
	}
	return g.propose(ctx, &fsm.DeleteGroup{Group: group})
}

// DescribeGroup returns a group's offsets with lag, ordered by topic and
// partition, as of a linearizable read point (see SetSyncer).
func (g *Groups) DescribeGroup(ctx context.Context, group string) (fsm.GroupDescription, error) {
	if g.sync != nil {
		if err := g.sync.SyncRead(ctx); err != nil {
			return fsm.GroupDescription{}, err
		}
	}
	return g.describe(group)
}

func (g *Groups) describe(group string) (fsm.GroupDescription, error) {
	offs, ok := g.meta.GroupOffsets(group)
	if !ok {
		if _, member := g.meta.Membership(group); !member {
			return fsm.GroupDescription{}, fmt.Errorf("%w: %q", fsm.ErrGroupNotFound, group)
		}
	}
	d := fsm.GroupDescription{Group: group, Partitions: []fsm.GroupPartition{}}
	for k, o := range offs {
		info, ok := g.meta.Partition(k.TopicID, k.Partition)
		if !ok {
			continue // topic deleted meanwhile
		}
		lag := max(info.NextOffset-o.Offset, 0)
		d.Partitions = append(d.Partitions, fsm.GroupPartition{
			Topic: info.Topic, Partition: k.Partition, Offset: o.Offset, Metadata: o.Metadata, CommittedAt: o.CommittedAt,
			HighWatermark: info.NextOffset, LowWatermark: info.LowWatermark, Lag: lag,
		})
		d.TotalLag += lag
	}
	d.SortPartitions()
	return d, nil
}

// ListGroups summarises every group.
func (g *Groups) ListGroups() []fsm.GroupSummary {
	out := []fsm.GroupSummary{}
	for _, name := range g.meta.GroupNames() {
		d, err := g.describe(name)
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, d.Summary())
	}
	return out
}

// ResetGroup moves a group's offsets for a topic to the earliest or latest
// offset, an explicit offset (clamped to the valid range), or the first
// record at or after a timestamp.
func (g *Groups) ResetGroup(ctx context.Context, group string, req fsm.GroupReset) (fsm.GroupDescription, error) {
	if err := fsm.ValidateGroupName(group); err != nil {
		return fsm.GroupDescription{}, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if err := g.barrier.AwaitAcked(ctx); err != nil {
		return fsm.GroupDescription{}, err
	}
	maxPart := int32(-1)
	for _, part := range req.Partitions {
		maxPart = max(maxPart, part)
	}
	t, err := lookupTopicFor(ctx, g.meta, g.sync, req.Topic, maxPart)
	if err != nil {
		return fsm.GroupDescription{}, err
	}
	parts := req.Partitions
	if len(parts) == 0 {
		for i := int32(0); i < t.Partitions; i++ {
			parts = append(parts, i)
		}
	}
	var commits []fsm.GroupCommit
	for _, part := range parts {
		if part < 0 || part >= t.Partitions {
			return fsm.GroupDescription{}, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, part, req.Topic, t.Partitions)
		}
		info, ok := g.meta.Partition(t.ID, part)
		if !ok {
			return fsm.GroupDescription{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, req.Topic)
		}
		var off int64
		switch req.Strategy {
		case fsm.ResetEarliest:
			off = info.LowWatermark
		case fsm.ResetLatest:
			off = info.NextOffset
		case fsm.ResetOffset:
			if req.Offset < 0 {
				return fsm.GroupDescription{}, fmt.Errorf("%w: offset %d is negative", fsm.ErrInvalidArgument, req.Offset)
			}
			off = min(max(req.Offset, info.LowWatermark), info.NextOffset)
		case fsm.ResetTimestamp:
			var err error
			if off, err = g.offsetForTimestamp(ctx, req.Topic, part, req.TimestampMs); err != nil {
				return fsm.GroupDescription{}, err
			}
		default:
			return fsm.GroupDescription{}, fmt.Errorf("%w: unknown reset strategy %q (use earliest, latest, offset or timestamp)", fsm.ErrInvalidArgument, req.Strategy)
		}
		commits = append(commits, fsm.GroupCommit{Topic: req.Topic, Partition: part, Offset: off})
	}
	if err := g.CommitOffsets(ctx, group, commits); err != nil {
		return fsm.GroupDescription{}, err
	}
	return g.describe(group) // CommitOffsets waited for the local apply
}

// offsetForTimestamp is the first offset at or after ts (the high
// watermark if none): Fetcher.OffsetForTimestamp.
func (g *Groups) offsetForTimestamp(ctx context.Context, topic string, part int32, ts int64) (int64, error) {
	if g.fetcher == nil {
		return 0, fmt.Errorf("%w: timestamp reset is not available", fsm.ErrInvalidArgument)
	}
	res, err := g.fetcher.OffsetForTimestamp(ctx, topic, part, ts)
	return res.Offset, err
}
