package client

import (
	"context"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Special timestamps of ListOffsets (Kafka's convention).
const (
	TimestampLatest   int64 = -1 // the high watermark
	TimestampEarliest int64 = -2 // the low watermark
)

// PartitionOffset is ListOffsets' answer for one partition.
type PartitionOffset struct {
	Partition int32
	// Offset is the first offset whose record timestamp is at or after the
	// time asked for (the high watermark when no record is that recent),
	// or the low or high watermark for TimestampEarliest and
	// TimestampLatest.
	Offset        int64
	LowWatermark  int64
	HighWatermark int64
}

// ListOffsets answers, for the given partitions of topic (nil: every
// partition, in order), the first offset at or after timestampMs (unix
// ms), or TimestampEarliest / TimestampLatest's offset.
func (c *Client) ListOffsets(ctx context.Context, topic string, timestampMs int64, partitions ...int32) ([]PartitionOffset, error) {
	var out []PartitionOffset
	err := c.call(ctx, "ListOffsets", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: topic, Partitions: partitions, TimestampMs: timestampMs})
		if err != nil {
			return err
		}
		out = make([]PartitionOffset, len(resp.GetPartitions()))
		for i, p := range resp.GetPartitions() {
			out[i] = PartitionOffset{Partition: p.GetPartition(), Offset: p.GetOffset(), LowWatermark: p.GetLowWatermark(), HighWatermark: p.GetHighWatermark()}
		}
		return nil
	})
	return out, err
}
