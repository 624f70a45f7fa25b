package partition

import (
	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
)

// SegmentRefOf is the FSM's reference to the block that index entry e
// describes in object key. It is the one conversion from the segment
// format's index to the replicated state (flush and DR restore both use it).
func SegmentRefOf(key string, e s3seg.IndexEntry, committedAt int64) fsm.SegmentRef {
	return fsm.SegmentRef{
		ObjectKey: key, ByteOffset: e.Offset, ByteLength: e.Length,
		BaseOffset: e.BaseOffset, LastOffset: e.LastOffset, RecordCount: e.RecordCount,
		MinTimestamp: e.MinTimestamp, MaxTimestamp: e.MaxTimestamp, Compression: uint8(e.Compression),
		CRC: e.CRC, UncompressedSize: e.UncompressedSize, CommittedAt: committedAt,
	}
}

// IndexEntryOf is the inverse of SegmentRefOf for partition part of topicID:
// what the segment reader needs to fetch and check the block ref names.
func IndexEntryOf(topicID uint64, part int32, ref fsm.SegmentRef) s3seg.IndexEntry {
	return s3seg.IndexEntry{
		TopicID: topicID, Partition: part, Offset: ref.ByteOffset, Length: ref.ByteLength,
		BaseOffset: ref.BaseOffset, LastOffset: ref.LastOffset, RecordCount: ref.RecordCount,
		MinTimestamp: ref.MinTimestamp, MaxTimestamp: ref.MaxTimestamp,
		Compression: s3seg.Compression(ref.Compression), CRC: ref.CRC, UncompressedSize: ref.UncompressedSize,
	}
}
