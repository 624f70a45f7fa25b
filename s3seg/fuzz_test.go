package s3seg_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

func footerSeeds(f *testing.F) {
	obj, _, _ := smallObject(f)
	f.Add(obj, false)
	f.Add(obj, true)
	if golden, err := os.ReadFile(goldenPath); err == nil {
		f.Add(golden, false)
		f.Add(golden, true)
	}
	one, _ := mustEncode(f, batch(9, "x", 1, 0, s3seg.CompressionNone, 0, 1, 1))
	f.Add(one, true)
	f.Add(obj[:len(obj)-1], false)
	f.Add(obj[1:], true)
	f.Add([]byte(s3seg.Magic), false)
	f.Add([]byte{}, false)
}

// FuzzDecodeFooter feeds arbitrary objects to DecodeFooter. With fixCRC the
// trailer CRC is recomputed first, so mutations reach the footer parser
// instead of stopping at the checksum. Properties: no panic; errors wrap
// ErrCorrupt or ErrUnsupportedVersion; an accepted footer re-encodes to the
// exact trailing bytes, tiles the object, is found again through
// DecodeFooterTail, and its blocks decode or fail with ErrCorrupt.
func FuzzDecodeFooter(f *testing.F) {
	footerSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC {
			data = slices.Clone(data)
			fixTrailerCRC(data)
		}
		footer, err := s3seg.DecodeFooter(data)
		if err != nil {
			if !errors.Is(err, s3seg.ErrCorrupt) && !errors.Is(err, s3seg.ErrUnsupportedVersion) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrUnsupportedVersion: %v", err)
			}
			return
		}
		enc, err := s3seg.EncodeFooterForTest(nil, footer)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > len(data) || !bytes.Equal(enc, data[len(data)-len(enc):]) {
			t.Fatal("accepted footer does not re-encode to the object's tail")
		}
		if footer.BlocksEnd() != int64(len(data)-len(enc)) {
			t.Fatalf("blocks end at %d, footer starts at %d", footer.BlocksEnd(), len(data)-len(enc))
		}
		again, err := s3seg.DecodeFooterTail(data[len(data)-len(enc):], int64(len(data)))
		if err != nil || !slices.Equal(again.Entries, footer.Entries) {
			t.Fatalf("DecodeFooterTail disagrees: %v", err)
		}
		for _, e := range footer.Entries {
			if _, err := s3seg.DecodeBlock(block(data, e), e); err != nil && !errors.Is(err, s3seg.ErrCorrupt) {
				t.Fatalf("DecodeBlock: %v", err)
			}
		}
	})
}

// FuzzDecodeBlock feeds arbitrary stored bytes and index entries to
// DecodeBlock. The entry's Length and CRC are set to match the bytes so the
// fuzzer reaches decompression and record parsing. Properties: no panic, no
// allocation beyond the documented bounds; errors wrap ErrCorrupt; accepted
// records agree with the entry and survive a re-encode/decode round trip.
func FuzzDecodeBlock(f *testing.F) {
	obj, footer, _ := smallObject(f)
	for _, e := range footer.Entries {
		f.Add(block(obj, e), e.TopicID, e.Partition, e.BaseOffset, e.RecordCount, e.MinTimestamp, e.MaxTimestamp, uint8(e.Compression), e.UncompressedSize)
	}
	gobj, gfooter := mustEncode(f, goldenInput()...)
	for _, e := range gfooter.Entries {
		f.Add(block(gobj, e), e.TopicID, e.Partition, e.BaseOffset, e.RecordCount, e.MinTimestamp, e.MaxTimestamp, uint8(e.Compression), e.UncompressedSize)
	}
	f.Add([]byte{}, uint64(0), int32(0), int64(0), int32(1), int64(0), int64(0), uint8(1), int64(1<<20))
	f.Fuzz(func(t *testing.T, stored []byte, topicID uint64, partition int32, base int64, count int32, minTS, maxTS int64, comp uint8, usize int64) {
		e := s3seg.IndexEntry{
			Topic: "t", TopicID: topicID, Partition: partition,
			Length: int64(len(stored)), CRC: crc32c(stored),
			BaseOffset: base, LastOffset: base + int64(count) - 1, RecordCount: count,
			MinTimestamp: minTS, MaxTimestamp: maxTS,
			Compression: s3seg.Compression(comp), UncompressedSize: usize,
		}
		recs, err := s3seg.DecodeBlock(stored, e)
		if err != nil {
			if !errors.Is(err, s3seg.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			if recs != nil {
				t.Fatal("records returned with an error")
			}
			return
		}
		if len(recs) != int(count) {
			t.Fatalf("%d records, entry says %d", len(recs), count)
		}
		lo, hi := recs[0].Timestamp, recs[0].Timestamp
		for i, r := range recs {
			if r.Offset != base+int64(i) {
				t.Fatalf("record %d has offset %d", i, r.Offset)
			}
			lo, hi = min(lo, r.Timestamp), max(hi, r.Timestamp)
		}
		if lo != minTS || hi != maxTS {
			t.Fatalf("timestamps span [%d,%d], entry says [%d,%d]", lo, hi, minTS, maxTS)
		}
		p := s3seg.PartitionBatch{Topic: "t", TopicID: topicID, Partition: partition, Compression: s3seg.CompressionNone, Records: recs}
		obj2, f2, err := s3seg.NewEncoder().Encode([]s3seg.PartitionBatch{p})
		if err != nil {
			t.Fatalf("re-encoding accepted records: %v", err)
		}
		recs2, err := s3seg.DecodeBlock(block(obj2, f2.Entries[0]), f2.Entries[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := recordsEqual(recs2, recs); err != nil {
			t.Fatalf("re-encode round trip: %v", err)
		}
	})
}
