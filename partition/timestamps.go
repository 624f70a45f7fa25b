package partition

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// OffsetForTimestamp answers, for one partition, the first offset whose
// record timestamp is at or after ts (unix ms), or the high watermark when
// no record is that recent (Kafka's ListOffsets).
//
// Record timestamps need not grow with offsets (producers may set them),
// so the answer is the first such offset in offset order. The committed
// blocks are searched first through the segment index: a block whose max
// timestamp is below ts cannot hold the answer and is skipped unread; the
// first block that can answers without being read when its min timestamp
// is already at or after ts, else it is read (through the segment cache)
// and scanned. Only when every block is older are the records after them —
// the unflushed ones in the local store — scanned.
func (f *Fetcher) OffsetForTimestamp(ctx context.Context, topic string, part int32, ts int64) (fsm.TimestampOffset, error) {
	t, err := f.topicPartition(ctx, topic, part)
	if err != nil {
		return fsm.TimestampOffset{}, err
	}
	if ts < 0 {
		return fsm.TimestampOffset{}, fmt.Errorf("%w: timestamp %d is negative", fsm.ErrInvalidArgument, ts)
	}
	info, ok := f.meta.Partition(t.ID, part)
	if !ok {
		return fsm.TimestampOffset{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
	}
	out := fsm.TimestampOffset{Offset: info.NextOffset, LowWatermark: info.LowWatermark, HighWatermark: info.NextOffset}
	k := fsm.PartitionKey{TopicID: t.ID, Partition: part}
	from, found, err := f.searchSegments(ctx, k, info, ts)
	if err == nil && !found {
		from, found, err = f.scanRecords(ctx, topic, k, info, from, ts)
	}
	if err != nil {
		return fsm.TimestampOffset{}, err
	}
	if found {
		out.Offset = from
	}
	return out, nil
}

// searchSegments looks for the answer in the committed blocks of k. It
// returns the answer (found), or the offset after the last block, where
// the scan of the later records starts.
func (f *Fetcher) searchSegments(ctx context.Context, k fsm.PartitionKey, info fsm.PartitionInfo, ts int64) (int64, bool, error) {
	from := info.LowWatermark
	for _, ref := range f.meta.Segments(k.TopicID, k.Partition) {
		if ref.LastOffset < info.LowWatermark {
			continue // trimmed by retention
		}
		if ref.IsGap() || ref.MaxTimestamp < ts {
			from = max(from, ref.LastOffset+1)
			continue
		}
		if ref.MinTimestamp >= ts {
			return max(ref.BaseOffset, info.LowWatermark), true, nil
		}
		recs, err := f.segs.ReadSegment(ctx, k.TopicID, k.Partition, ref)
		if err != nil {
			return 0, false, fmt.Errorf("read segment %s: %w", ref.ObjectKey, err)
		}
		for _, r := range recs {
			if r.Offset >= info.LowWatermark && r.Timestamp >= ts {
				return r.Offset, true, nil
			}
		}
		from = max(from, ref.LastOffset+1) // the index promised a match: read on
	}
	return from, false, nil
}

// scanRecords scans the records of k from offset from up to the high
// watermark in info for the first one at or after ts.
func (f *Fetcher) scanRecords(ctx context.Context, topic string, k fsm.PartitionKey, info fsm.PartitionInfo, from, ts int64) (int64, bool, error) {
	for from < info.NextOffset {
		res, err := f.read(ctx, k, info, fsm.FetchRequest{Topic: topic, Partition: k.Partition, Offset: from, MaxRecords: f.cfg.MaxRecords})
		if err != nil {
			return 0, false, err
		}
		for _, r := range res.Records {
			if r.Timestamp >= ts {
				return r.Offset, true, nil
			}
		}
		if res.NextOffset <= from {
			break
		}
		from = res.NextOffset
	}
	return 0, false, nil
}
