package grpcapi

import (
	"context"
	"strings"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// defaultCompression is what an empty fsm.TopicConfig.Compression means.
const defaultCompression = "zstd"

func toTopic(t fsm.Topic) *pb.Topic {
	c := t.Config.Compression
	if c == "" {
		c = defaultCompression
	}
	return &pb.Topic{
		Name: t.Name, Id: t.ID, Partitions: t.Partitions,
		RetentionMs: t.Config.RetentionMs, RetentionBytes: t.Config.RetentionBytes,
		Compression: c, CreatedAtMs: t.CreatedAt,
	}
}

func toPartitions(ps []fsm.PartitionInfo) []*pb.PartitionInfo {
	out := make([]*pb.PartitionInfo, len(ps))
	for i, p := range ps {
		out[i] = &pb.PartitionInfo{
			Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
			LowWatermark: p.LowWatermark, HighWatermark: p.NextOffset,
			FlushedOffset: p.FlushedOffset, SegmentCount: int32(p.Segments),
		}
	}
	return out
}

// CreateTopic implements pb.StreamHouseServer.
func (s *service) CreateTopic(ctx context.Context, req *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := s.authorize(ctx, transport.ScopeAdmin, req.GetName()); err != nil {
		return nil, err
	}
	partitions := int32(1)
	if req.Partitions != nil {
		partitions = req.GetPartitions()
		if partitions < 1 {
			return nil, invalid("partitions must be at least 1, got %d", partitions)
		}
	}
	cfg := fsm.TopicConfig{RetentionMs: req.GetRetentionMs(), RetentionBytes: req.GetRetentionBytes(), Compression: req.GetCompression()}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaMutations, int64(partitions)); err != nil {
		return nil, err
	}
	t, err := s.cfg.Topics.CreateTopic(ctx, req.GetName(), partitions, cfg)
	if err != nil {
		return nil, err
	}
	return &pb.CreateTopicResponse{Topic: toTopic(t)}, nil
}

// ListTopics implements pb.StreamHouseServer.
func (s *service) ListTopics(ctx context.Context, _ *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	ts := s.cfg.Topics.Topics()
	out := &pb.ListTopicsResponse{Topics: make([]*pb.Topic, 0, len(ts))}
	for _, t := range ts {
		if s.cfg.Auth.TopicVisible(ctx, t.Name) { // a topic-restricted key sees its topics only
			out.Topics = append(out.Topics, toTopic(t))
		}
	}
	return out, nil
}

// DescribeTopic implements pb.StreamHouseServer.
func (s *service) DescribeTopic(ctx context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := s.authorize(ctx, transport.ScopeRead, req.GetName()); err != nil {
		return nil, err
	}
	t, err := s.cfg.Topics.Topic(req.GetName())
	if err != nil {
		return nil, err
	}
	ps, err := s.cfg.Topics.Partitions(req.GetName())
	if err != nil {
		return nil, err
	}
	return &pb.DescribeTopicResponse{Topic: toTopic(t), Partitions: toPartitions(ps), Configs: s.configsOf(t)}, nil
}

// DeleteTopic implements pb.StreamHouseServer.
func (s *service) DeleteTopic(ctx context.Context, req *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := s.authorize(ctx, transport.ScopeAdmin, req.GetName()); err != nil {
		return nil, err
	}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaMutations, transport.TopicMutations(s.cfg.Topics, req.GetName())); err != nil {
		return nil, err
	}
	if err := s.cfg.Topics.DeleteTopic(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &pb.DeleteTopicResponse{}, nil
}

// configsOf is t's described configuration (Kafka names, sorted).
func (s *service) configsOf(t fsm.Topic) []*pb.TopicConfigEntry {
	vs := t.Config.Describe(int64(s.cfg.MaxRecordBytes))
	out := make([]*pb.TopicConfigEntry, len(vs))
	for i, v := range vs {
		out[i] = &pb.TopicConfigEntry{Name: v.Key, Value: v.Value, IsDefault: v.Default}
	}
	return out
}

// AlterTopicConfig implements pb.StreamHouseServer.
func (s *service) AlterTopicConfig(ctx context.Context, req *pb.AlterTopicConfigRequest) (*pb.AlterTopicConfigResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := s.authorize(ctx, transport.ScopeAdmin, req.GetName()); err != nil {
		return nil, err
	}
	if len(req.GetConfigs()) == 0 {
		return nil, invalid("configs must name at least one key (supported: %s)", strings.Join(fsm.ConfigKeys, ", "))
	}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaMutations, 1); err != nil {
		return nil, err
	}
	t, err := s.cfg.Topics.AlterTopicConfig(ctx, req.GetName(), req.GetConfigs())
	if err != nil {
		return nil, err
	}
	return &pb.AlterTopicConfigResponse{Topic: toTopic(t), Configs: s.configsOf(t)}, nil
}

// CreatePartitions implements pb.StreamHouseServer.
func (s *service) CreatePartitions(ctx context.Context, req *pb.CreatePartitionsRequest) (*pb.CreatePartitionsResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := s.authorize(ctx, transport.ScopeAdmin, req.GetName()); err != nil {
		return nil, err
	}
	cur, err := s.cfg.Topics.Topic(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaMutations, int64(max(req.GetCount()-cur.Partitions, 1))); err != nil {
		return nil, err
	}
	t, err := s.cfg.Topics.CreatePartitions(ctx, req.GetName(), req.GetCount())
	if err != nil {
		return nil, err
	}
	// Committed: read the partitions as applied (no read barrier), so a
	// barrier that gives up cannot answer "not applied".
	ps, err := s.cfg.Topics.PartitionsForRouting(req.GetName())
	if err != nil {
		return nil, err
	}
	return &pb.CreatePartitionsResponse{Topic: toTopic(t), Partitions: toPartitions(ps)}, nil
}
