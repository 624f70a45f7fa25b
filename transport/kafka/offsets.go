package kafka

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// maxCommitMetadata is the largest commit metadata the agent stores
// (partition.Groups refuses more).
const maxCommitMetadata = 4096

// handleOffsetCommit commits a member's offsets through the coordinator,
// which refuses a generation that is not the group's current one. The
// partitions that pass the per-topic checks commit all or nothing and
// share one error code.
func (s *Server) handleOffsetCommit(ctx context.Context, c *Conn, req *kmsg.OffsetCommitRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	groupCode := s.groupAccess(c, OpRead, req.Group)
	var commits []fsm.GroupCommit
	var pending [][2]int // (topic, partition) indexes in resp awaiting the commit
	for ti, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		code, parts := s.commitTopicCheck(c, groupCode, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			switch {
			case code != 0:
			case p.Partition < 0 || p.Partition >= parts:
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxCommitMetadata:
				rp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			default:
				commits = append(commits, fsm.GroupCommit{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, Metadata: deref(p.Metadata)})
				pending = append(pending, [2]int{ti, len(rt.Partitions)})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(commits) == 0 {
		return resp, nil
	}
	err := s.cfg.Coordinator.CommitOffsets(ctx, fsm.MemberCommit{Group: req.Group, Generation: req.Generation,
		MemberID: req.MemberID, InstanceID: deref(req.InstanceID), Commits: commits})
	code := groupErrorCode(err)
	for _, at := range pending {
		resp.Topics[at[0]].Partitions[at[1]].ErrorCode = code
	}
	return resp, nil
}

// commitTopicCheck returns the error code every partition of a committed
// topic gets (0: none) and the topic's partition count.
func (s *Server) commitTopicCheck(c *Conn, groupCode int16, topic string) (int16, int32) {
	if groupCode != 0 {
		return groupCode, 0
	}
	if code := s.topicAccess(c, OpRead, topic); code != 0 {
		return code, 0
	}
	t, err := s.cfg.Topics.Topic(topic)
	if err != nil {
		return errorCode(err), 0
	}
	return 0, t.Partitions
}

// offsetsQuery is the part of one group's OffsetFetch: the topics and
// partitions asked for, or every committed one (all).
type offsetsQuery struct {
	group  string
	all    bool
	topics []kmsg.OffsetFetchRequestGroupTopic
}

// handleOffsetFetch answers committed offsets (-1 where none) for one
// group (v0-v7) or several (v8+). Any agent answers, from a linearizable
// read of the replicated offsets.
func (s *Server) handleOffsetFetch(ctx context.Context, c *Conn, req *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, g := range req.Groups {
			q := offsetsQuery{group: g.Group, all: g.Topics == nil, topics: g.Topics}
			resp.Groups = append(resp.Groups, s.fetchOffsets(ctx, c, q))
		}
		return resp, nil
	}
	q := offsetsQuery{group: req.Group, all: req.Topics == nil && req.Version >= 2}
	for _, t := range req.Topics {
		q.topics = append(q.topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t.Topic, Partitions: t.Partitions})
	}
	g := s.fetchOffsets(ctx, c, q)
	resp.ErrorCode = g.ErrorCode
	for _, t := range g.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
			if req.Version < 2 && rp.ErrorCode == 0 {
				rp.ErrorCode = g.ErrorCode // no group-level code before v2
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// fetchOffsets answers one group of an OffsetFetch.
func (s *Server) fetchOffsets(ctx context.Context, c *Conn, q offsetsQuery) kmsg.OffsetFetchResponseGroup {
	g := kmsg.NewOffsetFetchResponseGroup()
	g.Group = q.group
	g.ErrorCode = s.groupAccess(c, OpDescribe, q.group)
	var committed map[fsm.TopicPartition]fsm.GroupPartition
	if g.ErrorCode == 0 {
		d, err := s.cfg.Groups.DescribeGroup(ctx, q.group)
		if err != nil && !errors.Is(err, fsm.ErrGroupNotFound) {
			g.ErrorCode = groupErrorCode(err)
		}
		committed = map[fsm.TopicPartition]fsm.GroupPartition{}
		for _, p := range d.Partitions {
			committed[fsm.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = p
		}
	}
	if q.all {
		if g.ErrorCode == 0 {
			g.Topics = s.allCommitted(c, committed)
		}
		return g
	}
	for _, t := range q.topics {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = t.Topic
		code := g.ErrorCode
		if code == 0 {
			code = s.topicAccess(c, OpDescribe, t.Topic)
		}
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, offsetOf(committed, t.Topic, p, code))
		}
		g.Topics = append(g.Topics, rt)
	}
	return g
}

// allCommitted lists every committed offset of the topics the principal
// may describe, ordered by topic and partition.
func (s *Server) allCommitted(c *Conn, committed map[fsm.TopicPartition]fsm.GroupPartition) []kmsg.OffsetFetchResponseGroupTopic {
	byTopic := map[string][]int32{}
	for tp := range committed {
		byTopic[tp.Topic] = append(byTopic[tp.Topic], tp.Partition)
	}
	names := make([]string, 0, len(byTopic))
	for name := range byTopic {
		if s.topicAccess(c, OpDescribe, name) == 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]kmsg.OffsetFetchResponseGroupTopic, 0, len(names))
	for _, name := range names {
		parts := byTopic[name]
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = name
		for _, p := range parts {
			rt.Partitions = append(rt.Partitions, offsetOf(committed, name, p, 0))
		}
		out = append(out, rt)
	}
	return out
}

// offsetOf is one partition's committed offset (-1 when none).
func offsetOf(committed map[fsm.TopicPartition]fsm.GroupPartition, topic string, partition int32, code int16) kmsg.OffsetFetchResponseGroupTopicPartition {
	rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = partition, -1, -1, code
	if code != 0 {
		return rp
	}
	if p, ok := committed[fsm.TopicPartition{Topic: topic, Partition: partition}]; ok {
		rp.Offset, rp.Metadata = p.Offset, kmsg.StringPtr(p.Metadata)
	} else {
		rp.Metadata = kmsg.StringPtr("")
	}
	return rp
}
