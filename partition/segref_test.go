package partition

import (
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

func TestSegmentRefRoundTrip(t *testing.T) {
	e := s3seg.IndexEntry{TopicID: 7, Partition: 3, Offset: 100, Length: 50, BaseOffset: 10, LastOffset: 19,
		RecordCount: 10, MinTimestamp: 1000, MaxTimestamp: 2000, Compression: s3seg.CompressionZstd, CRC: 0xdeadbeef, UncompressedSize: 400}
	ref := SegmentRefOf("obj/key", e, 1234)
	if ref.ObjectKey != "obj/key" || ref.CommittedAt != 1234 || ref.ByteOffset != 100 || ref.ByteLength != 50 {
		t.Fatalf("ref = %+v", ref)
	}
	if back := IndexEntryOf(7, 3, ref); back != e {
		t.Fatalf("round trip: got %+v, want %+v", back, e)
	}
}
