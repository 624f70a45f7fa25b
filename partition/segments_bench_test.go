package partition

import (
	"context"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// benchBlockPart is one partition block of n records with 100-byte
// JSON-like values and short keys (the shape of s3seg's benchmarks).
func benchBlockPart(comp string, n int) SegmentPart {
	sp := SegmentPart{TopicID: 7, Topic: "orders", Compression: comp}
	for i := range n {
		sp.Records = append(sp.Records, fsm.FetchedRecord{Offset: int64(i), Record: fsm.Record{
			Timestamp: 1_700_000_000_000 + int64(i),
			Key:       fmt.Appendf(nil, "user-%d", i%1000),
			Value:     fmt.Appendf(nil, `{"user":%d,"event":"click","page":"/p/%06d","ms":%08d,"pad":"%012d"}`, i%1000, i*7919%1000000, i*31, i),
		}})
	}
	return sp
}

// BenchmarkCachedBlockFetch measures one fetch of a block that is already
// cached, for the two things the segment cache could hold:
//
//   - raw: the verified compressed bytes (s3seg.Reader over a Cache[[]byte]);
//     every fetch checks the CRC, decompresses, decodes and converts the
//     block to fsm records.
//   - decoded: the fsm records (ObjectSegments over a SegmentCache); a fetch
//     is a lookup.
//
// cached-B/block is what one block costs of the cache budget.
func BenchmarkCachedBlockFetch(b *testing.B) {
	for _, comp := range []string{"zstd", "lz4"} {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d-records/raw", comp, n), func(b *testing.B) { benchRawFetch(b, comp, n) })
			b.Run(fmt.Sprintf("%s/%d-records/decoded", comp, n), func(b *testing.B) { benchDecodedFetch(b, comp, n) })
		}
	}
}

func writeBenchBlock(b *testing.B, s *ObjectSegments, comp string, n int) fsm.SegmentRef {
	b.Helper()
	_, refs, err := s.WriteSegment(context.Background(), []SegmentPart{benchBlockPart(comp, n)}, 0)
	if err != nil {
		b.Fatal(err)
	}
	return refs[0]
}

func benchRawFetch(b *testing.B, comp string, n int) {
	ctx := context.Background()
	store := s3segtest.NewMemStore()
	ref := writeBenchBlock(b, NewSegmentStore("bench", store, nil), comp, n)
	cache := s3seg.NewCache(1<<30, nil, s3seg.RawSize)
	r := s3seg.NewReader(store, cache)
	e := IndexEntryOf(7, 0, ref)
	b.ReportAllocs()
	for b.Loop() {
		recs, err := r.ReadBlock(ctx, ref.ObjectKey, e)
		if err != nil || len(fetchedRecords(0, recs)) != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cache.Size()), "cached-B/block")
}

func benchDecodedFetch(b *testing.B, comp string, n int) {
	ctx := context.Background()
	cache := NewSegmentCache(1<<30, nil)
	s := NewSegmentStore("bench", s3segtest.NewMemStore(), cache)
	defer s.Close()
	ref := writeBenchBlock(b, s, comp, n)
	b.ReportAllocs()
	for b.Loop() {
		recs, err := s.ReadSegment(ctx, 7, 0, ref)
		if err != nil || len(recs) != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cache.Size()), "cached-B/block")
}
