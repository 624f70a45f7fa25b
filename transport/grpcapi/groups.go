package grpcapi

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func (s *service) groups() (transport.Groups, error) {
	if s.cfg.Groups == nil {
		return nil, fmt.Errorf("%w: consumer groups", errUnimplemented)
	}
	return s.cfg.Groups, nil
}

func toGroupDescription(d fsm.GroupDescription) *pb.GroupDescription {
	out := &pb.GroupDescription{Group: d.Group, TotalLag: d.TotalLag, Partitions: make([]*pb.GroupPartition, len(d.Partitions))}
	for i, p := range d.Partitions {
		out.Partitions[i] = &pb.GroupPartition{
			Topic: p.Topic, Partition: p.Partition, Offset: p.Offset, Metadata: p.Metadata,
			CommittedAtMs: p.CommittedAt, HighWatermark: p.HighWatermark, LowWatermark: p.LowWatermark, Lag: p.Lag,
		}
	}
	return out
}

// CommitOffsets implements pb.StreamHouseServer.
func (s *service) CommitOffsets(ctx context.Context, req *pb.CommitOffsetsRequest) (*pb.CommitOffsetsResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	if len(req.GetOffsets()) == 0 {
		return nil, invalid("offsets must not be empty")
	}
	commits := make([]fsm.GroupCommit, len(req.GetOffsets()))
	for i, c := range req.GetOffsets() {
		switch {
		case c == nil:
			return nil, invalid("offsets[%d] is null", i)
		case c.GetTopic() == "":
			return nil, invalid("offsets[%d].topic is required", i)
		case c.GetPartition() < 0:
			return nil, invalid("offsets[%d].partition must be >= 0, got %d", i, c.GetPartition())
		case c.GetOffset() < 0:
			return nil, invalid("offsets[%d].offset must be >= 0, got %d", i, c.GetOffset())
		}
		commits[i] = fsm.GroupCommit{Topic: c.GetTopic(), Partition: c.GetPartition(), Offset: c.GetOffset(), Metadata: c.GetMetadata()}
		if err := s.authorize(ctx, transport.ScopeWrite, c.GetTopic()); err != nil {
			return nil, err
		}
	}
	if req.GetMemberId() != "" {
		if err := s.commitAsMember(ctx, req, commits); err != nil {
			return nil, err
		}
		return &pb.CommitOffsetsResponse{}, nil
	}
	if err := g.CommitOffsets(ctx, req.GetGroup(), commits); err != nil {
		return nil, err
	}
	return &pb.CommitOffsetsResponse{}, nil
}

// FetchOffsets implements pb.StreamHouseServer.
func (s *service) FetchOffsets(ctx context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	if req.GetTopic() != "" {
		if err := s.authorize(ctx, transport.ScopeRead, req.GetTopic()); err != nil {
			return nil, err
		}
	}
	// The group read is linearizable (the agent catches up first), so the
	// topic check after it cannot be answered from stale state.
	d, err := g.DescribeGroup(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	if req.GetTopic() != "" {
		if _, err := s.cfg.Topics.Topic(req.GetTopic()); err != nil {
			return nil, err
		}
	}
	if req.GetTopic() == "" {
		if err := s.authorize(ctx, transport.ScopeRead, transport.GroupTopics(d)...); err != nil {
			return nil, err
		}
	}
	out := &pb.FetchOffsetsResponse{Offsets: []*pb.CommittedOffset{}}
	for _, p := range d.Partitions {
		if req.GetTopic() != "" && p.Topic != req.GetTopic() {
			continue
		}
		out.Offsets = append(out.Offsets, &pb.CommittedOffset{
			Topic: p.Topic, Partition: p.Partition, Offset: p.Offset, Metadata: p.Metadata, CommittedAtMs: p.CommittedAt,
		})
	}
	return out, nil
}

// ListGroups implements pb.StreamHouseServer.
func (s *service) ListGroups(ctx context.Context, _ *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	gs := g.ListGroups()
	out := &pb.ListGroupsResponse{Groups: make([]*pb.GroupSummary, 0, len(gs))}
	for _, x := range gs {
		if !s.cfg.Auth.TopicsVisible(ctx, x.Topics) {
			continue // a topic-restricted key sees the groups of its topics only
		}
		out.Groups = append(out.Groups, &pb.GroupSummary{Group: x.Group, Topics: x.Topics, PartitionCount: int32(x.Partitions), TotalLag: x.TotalLag})
	}
	return out, nil
}

// DescribeGroup implements pb.StreamHouseServer.
func (s *service) DescribeGroup(ctx context.Context, req *pb.DescribeGroupRequest) (*pb.DescribeGroupResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	d, err := g.DescribeGroup(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, transport.ScopeRead, transport.GroupTopics(d)...); err != nil {
		return nil, err
	}
	out := toGroupDescription(d)
	if err := s.addMembership(ctx, out); err != nil {
		return nil, err
	}
	return &pb.DescribeGroupResponse{Group: out}, nil
}

// DeleteGroup implements pb.StreamHouseServer.
func (s *service) DeleteGroup(ctx context.Context, req *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	if err := transport.AuthorizeGroup(ctx, s.cfg.Auth, g, req.GetGroup(), transport.ScopeWrite); err != nil {
		return nil, err
	}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaMutations, 1); err != nil {
		return nil, err
	}
	if err := g.DeleteGroup(ctx, req.GetGroup()); err != nil {
		return nil, err
	}
	return &pb.DeleteGroupResponse{}, nil
}

var resetStrategies = map[pb.ResetStrategy]string{
	pb.ResetStrategy_RESET_STRATEGY_EARLIEST:  fsm.ResetEarliest,
	pb.ResetStrategy_RESET_STRATEGY_LATEST:    fsm.ResetLatest,
	pb.ResetStrategy_RESET_STRATEGY_OFFSET:    fsm.ResetOffset,
	pb.ResetStrategy_RESET_STRATEGY_TIMESTAMP: fsm.ResetTimestamp,
}

// ResetGroup implements pb.StreamHouseServer.
func (s *service) ResetGroup(ctx context.Context, req *pb.ResetGroupRequest) (*pb.ResetGroupResponse, error) {
	g, err := s.groups()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	strategy, ok := resetStrategies[req.GetStrategy()]
	if !ok {
		return nil, invalid("strategy must be RESET_STRATEGY_EARLIEST, _LATEST, _OFFSET or _TIMESTAMP; got %s", req.GetStrategy())
	}
	if req.GetTopic() == "" {
		return nil, invalid("topic is required")
	}
	if err := s.authorize(ctx, transport.ScopeWrite, req.GetTopic()); err != nil {
		return nil, err
	}
	for i, p := range req.GetPartitions() {
		if p < 0 {
			return nil, invalid("partitions[%d] must be >= 0, got %d", i, p)
		}
	}
	if strategy == fsm.ResetOffset && req.GetOffset() < 0 {
		return nil, invalid("offset must be >= 0, got %d", req.GetOffset())
	}
	d, err := g.ResetGroup(ctx, req.GetGroup(), fsm.GroupReset{
		Strategy: strategy, Topic: req.GetTopic(), Partitions: req.GetPartitions(),
		Offset: req.GetOffset(), TimestampMs: req.GetTimestampMs(),
	})
	if err != nil {
		return nil, err
	}
	return &pb.ResetGroupResponse{Group: toGroupDescription(d)}, nil
}
