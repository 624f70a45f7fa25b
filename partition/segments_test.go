package partition

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// segmentPart is n records of partition p of topic 7 from offset base, with
// a null key, a null value and headers among them.
func segmentPart(p int32, compression string, base int64, n int) SegmentPart {
	sp := SegmentPart{TopicID: 7, Topic: "orders", Partition: p, Compression: compression}
	for i := range n {
		r := fsm.FetchedRecord{Partition: p, Offset: base + int64(i), Record: fsm.Record{
			Timestamp: 1_700_000_000_000 + int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "value-%d-%d", p, i),
		}}
		switch i % 4 {
		case 1:
			r.Key = nil
		case 2:
			r.Value = []byte{} // what a null value reads back as
		case 3:
			r.Headers = []fsm.Header{{Key: "h", Value: []byte("v")}}
		}
		sp.Records = append(sp.Records, r)
	}
	return sp
}

func newTestSegments(t *testing.T, cacheBytes int64, reg prometheus.Registerer) (*ObjectSegments, *s3segtest.FaultStore, *SegmentCache) {
	t.Helper()
	fs := s3segtest.NewFaultStore(s3segtest.NewMemStore())
	cache := NewSegmentCache(cacheBytes, reg)
	s := NewSegmentStore("node-1", fs, cache)
	t.Cleanup(func() { _ = s.Close() })
	return s, fs, cache
}

func TestObjectSegmentsRoundTripAndCache(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s, fs, cache := newTestSegments(t, 1<<20, reg)
	parts := []SegmentPart{segmentPart(0, "zstd", 100, 40), segmentPart(3, "none", 0, 9), segmentPart(1, "bogus", 5, 3)}
	commitBy := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	key, refs, err := s.WriteSegment(ctx, parts, commitBy)
	if err != nil || len(refs) != 3 {
		t.Fatalf("WriteSegment: %d refs, %v", len(refs), err)
	}
	if refs[2].Compression != uint8(s3seg.CompressionZstd) {
		t.Fatalf("unknown compression stored as %d, want zstd", refs[2].Compression)
	}
	for round := range 3 {
		for i, ref := range refs {
			if ref.ObjectKey != key || ref.BaseOffset != parts[i].Records[0].Offset || ref.RecordCount != int32(len(parts[i].Records)) {
				t.Fatalf("ref %d = %+v", i, ref)
			}
			got, err := s.ReadSegment(ctx, 7, parts[i].Partition, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, parts[i].Records) {
				t.Fatalf("round %d part %d: read back %+v, want %+v", round, i, got, parts[i].Records)
			}
		}
	}
	if n := fs.Calls(s3seg.OpGetRange); n != 3 {
		t.Fatalf("%d ranged GETs for 3 blocks read 3 times, want 3", n)
	}
	if h := counterValue(t, reg, "streamhouse_segment_cache_hits_total"); h != 6 {
		t.Fatalf("cache hits = %v, want 6", h)
	}
	var want int64 // each block decoded, and raw
	for _, ref := range refs {
		want += ref.UncompressedSize + int64(ref.RecordCount)*recordOverhead + ref.ByteLength
	}
	if cache.Size() != want || cache.Len() != 6 {
		t.Fatalf("cache holds %d bytes in %d entries, want %d in 6 (3 blocks, decoded and raw)", cache.Size(), cache.Len(), want)
	}

	objs, err := s.ListObjects(ctx)
	if err != nil || len(objs) != 1 || objs[0].Key != key || objs[0].CommitBy != commitBy {
		t.Fatalf("ListObjects = %+v, %v", objs, err)
	}
}

// counterValue is the value of the unlabelled counter name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestObjectSegmentsBudgetCoversDecodedBytes(t *testing.T) {
	ctx := context.Background()
	probe, _, _ := newTestSegments(t, 0, nil)
	_, refs, err := probe.WriteSegment(ctx, []SegmentPart{segmentPart(0, "lz4", 0, 50)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := refs[0].UncompressedSize + int64(refs[0].RecordCount)*recordOverhead

	// The decoded tier (an eighth of the budget) holds four decoded blocks;
	// the raw tier holds all five raw ones. Reading a fifth block evicts
	// the first decoded one, whose next read decodes it again from the raw
	// tier: five ranged GETs for six reads.
	budget := 8 * 4 * one
	s, fs, cache := newTestSegments(t, budget, nil)
	var parts []SegmentPart
	for p := int32(0); p < 5; p++ {
		parts = append(parts, segmentPart(p, "lz4", 0, 50))
	}
	_, refs, err = s.WriteSegment(ctx, parts, 0)
	if err != nil {
		t.Fatal(err)
	}
	decoded := func() (n int) {
		for _, r := range refs {
			if cache.Decoded(r.ObjectKey, r.ByteOffset, r.ByteLength) {
				n++
			}
		}
		return n
	}
	for _, i := range []int{0, 1, 2, 3, 4, 0} {
		if _, err := s.ReadSegment(ctx, 7, int32(i), refs[i]); err != nil {
			t.Fatal(err)
		}
		if decoded() > 4 || cache.Size() > budget {
			t.Fatalf("cache: %d decoded blocks, %d bytes (budget %d)", decoded(), cache.Size(), budget)
		}
	}
	if n := fs.Calls(s3seg.OpGetRange); n != 5 {
		t.Fatalf("%d ranged GETs, want 5 (the re-read came from the raw tier)", n)
	}

	// A block heavier than a quarter of the decoded tier is decoded every
	// time but its raw bytes are kept.
	big, _, bigCache := newTestSegments(t, 8*one, nil)
	_, bigRefs, err := big.WriteSegment(ctx, []SegmentPart{segmentPart(0, "lz4", 0, 50)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := bigRefs[0]
	if _, err := big.ReadSegment(ctx, 7, 0, r); err != nil || bigCache.Decoded(r.ObjectKey, r.ByteOffset, r.ByteLength) || !bigCache.Raw(r.ObjectKey, r.ByteOffset, r.ByteLength) {
		t.Fatalf("block over a quarter of the decoded tier: err %v, want it kept raw only", err)
	}

	// Disabled (0) and absent (nil) caches read from the store every time.
	for _, c := range []*SegmentCache{NewSegmentCache(0, nil), nil} {
		uncached := NewSegmentStore("node-2", fs, c)
		before := fs.Calls(s3seg.OpGetRange)
		for range 2 {
			if _, err := uncached.ReadSegment(ctx, 7, 0, refs[0]); err != nil {
				t.Fatal(err)
			}
		}
		uncached.Prefetch(ctx, 7, 1, refs[1]) // no cache: nothing to warm
		if got := fs.Calls(s3seg.OpGetRange) - before; got != 2 || c.Len() != 0 {
			t.Fatalf("uncached store: %d GETs for 2 reads, %d entries", got, c.Len())
		}
		_ = uncached.Close()
	}
}

func TestObjectSegmentsDeleteDropsCachedBlocks(t *testing.T) {
	ctx := context.Background()
	s, _, cache := newTestSegments(t, 1<<20, nil)
	keep, keepRefs, err := s.WriteSegment(ctx, []SegmentPart{segmentPart(0, "zstd", 0, 5)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	gone, goneRefs, err := s.WriteSegment(ctx, []SegmentPart{segmentPart(0, "zstd", 5, 5), segmentPart(1, "zstd", 0, 5)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		part int32
		ref  fsm.SegmentRef
	}{{0, keepRefs[0]}, {0, goneRefs[0]}, {1, goneRefs[1]}}
	for _, r := range reads {
		if _, err := s.ReadSegment(ctx, 7, r.part, r.ref); err != nil {
			t.Fatal(err)
		}
	}
	if cache.Len() != 6 {
		t.Fatalf("%d cached blocks, want 3 decoded and 3 raw", cache.Len())
	}
	if err := s.DeleteObject(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 2 || !cache.Decoded(keep, keepRefs[0].ByteOffset, keepRefs[0].ByteLength) || !cache.Raw(keep, keepRefs[0].ByteOffset, keepRefs[0].ByteLength) {
		t.Fatalf("after deleting %s: %d cached blocks, want only %s's", gone, cache.Len(), keep)
	}
	if _, err := s.ReadSegment(ctx, 7, 0, goneRefs[0]); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("read of a deleted object: %v, want ErrNotFound", err)
	}
	if err := s.DeleteObject(ctx, gone); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
}

func TestObjectSegmentsPrefetch(t *testing.T) {
	ctx := context.Background()
	s, fs, cache := newTestSegments(t, 1<<20, nil)
	_, refs, err := s.WriteSegment(ctx, []SegmentPart{segmentPart(2, "zstd", 0, 20)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Prefetch(ctx, 7, 2, refs[0])
	waitFor(t, 10*time.Second, "the prefetched block to be cached", func() bool {
		return cache.Raw(refs[0].ObjectKey, refs[0].ByteOffset, refs[0].ByteLength) && cache.Len() == 1
	})
	got, err := s.ReadSegment(ctx, 7, 2, refs[0])
	if err != nil || len(got) != 20 {
		t.Fatalf("read after prefetch: %d records, %v", len(got), err)
	}
	if n := fs.Calls(s3seg.OpGetRange); n != 1 {
		t.Fatalf("%d ranged GETs, want the prefetch's 1", n)
	}
}
