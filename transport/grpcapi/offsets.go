package grpcapi

import (
	"context"
	"fmt"
	"slices"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// ListOffsets implements pb.StreamHouseServer: per partition, the first
// offset at or after a time (Offsets.OffsetForTimestamp), or the earliest
// or latest offset (-2, -1: the watermarks of DescribeTopic).
func (s *service) ListOffsets(ctx context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	topic, ts := req.GetTopic(), req.GetTimestampMs()
	switch {
	case topic == "":
		return nil, invalid("topic is required")
	case ts < OffsetEarliest:
		return nil, invalid("timestamp_ms must be >= 0 (unix milliseconds), -1 (latest) or -2 (earliest); got %d", ts)
	}
	if err := s.authorize(ctx, transport.ScopeRead, topic); err != nil {
		return nil, err
	}
	infos, err := s.cfg.Topics.Partitions(topic)
	if err != nil {
		return nil, err
	}
	parts := req.GetPartitions()
	if len(parts) == 0 {
		for _, info := range infos {
			parts = append(parts, info.Partition)
		}
	}
	out := &pb.ListOffsetsResponse{Partitions: make([]*pb.PartitionOffset, 0, len(parts))}
	for _, p := range parts {
		po, err := s.partitionOffset(ctx, topic, infos, p, ts)
		if err != nil {
			return nil, err
		}
		out.Partitions = append(out.Partitions, po)
	}
	return out, nil
}

// partitionOffset answers ListOffsets for partition p.
func (s *service) partitionOffset(ctx context.Context, topic string, infos []fsm.PartitionInfo, p int32, ts int64) (*pb.PartitionOffset, error) {
	i := slices.IndexFunc(infos, func(info fsm.PartitionInfo) bool { return info.Partition == p })
	if i < 0 {
		return nil, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, p, topic, len(infos))
	}
	info := infos[i]
	switch ts {
	case OffsetEarliest:
		return &pb.PartitionOffset{Partition: p, Offset: info.LowWatermark, LowWatermark: info.LowWatermark, HighWatermark: info.NextOffset}, nil
	case OffsetLatest:
		return &pb.PartitionOffset{Partition: p, Offset: info.NextOffset, LowWatermark: info.LowWatermark, HighWatermark: info.NextOffset}, nil
	}
	if s.cfg.Offsets == nil {
		return nil, fmt.Errorf("%w: offset for a timestamp", errUnimplemented)
	}
	res, err := s.cfg.Offsets.OffsetForTimestamp(ctx, topic, p, ts)
	if err != nil {
		return nil, err
	}
	return &pb.PartitionOffset{Partition: p, Offset: res.Offset, LowWatermark: res.LowWatermark, HighWatermark: res.HighWatermark}, nil
}
