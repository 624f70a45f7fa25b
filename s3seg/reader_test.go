package s3seg_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// putObject encodes parts into a MemStore wrapped in a FaultStore (which
// counts calls).
func putObject(t *testing.T, parts ...s3seg.PartitionBatch) (*s3segtest.MemStore, *s3segtest.FaultStore, string, s3seg.Footer) {
	t.Helper()
	obj, f := mustEncode(t, parts...)
	mem := s3segtest.NewMemStore()
	key := s3seg.ObjectKey("node-a", 1)
	if err := mem.Put(bg, key, obj); err != nil {
		t.Fatal(err)
	}
	return mem, s3segtest.NewFaultStore(mem), key, f
}

func TestReaderReadFooter(t *testing.T) {
	var parts []s3seg.PartitionBatch
	for p := range 50 {
		parts = append(parts, batch(uint64(p), "topic", 1, int32(p), s3seg.CompressionZstd, 0, 3, 20))
	}
	_, fs, key, want := putObject(t, parts...)
	footerSize := 16 + 6 + 50*(79+5)
	for _, tc := range []struct {
		tail      int64
		wantCalls int
	}{{s3seg.DefaultFooterTail, 1}, {int64(footerSize), 1}, {int64(footerSize - 1), 2}, {16, 2}, {1, 2}} {
		before := fs.Calls(s3seg.OpGetRange)
		r := s3seg.NewReader(fs, nil, s3seg.WithFooterTail(tc.tail))
		f, size, err := r.ReadFooter(bg, key)
		if err != nil {
			t.Fatalf("tail %d: %v", tc.tail, err)
		}
		if size != want.BlocksEnd()+int64(footerSize) || len(f.Entries) != 50 || f.Entries[49] != want.Entries[49] {
			t.Fatalf("tail %d: wrong footer (size %d)", tc.tail, size)
		}
		if got := fs.Calls(s3seg.OpGetRange) - before; got != tc.wantCalls {
			t.Fatalf("tail %d: %d ranged GETs, want %d", tc.tail, got, tc.wantCalls)
		}
	}
}

func TestReaderReadFooterErrors(t *testing.T) {
	mem := s3segtest.NewMemStore()
	r := s3seg.NewReader(mem, nil)
	if _, _, err := r.ReadFooter(bg, "missing"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("missing object: %v", err)
	}
	for key, data := range map[string][]byte{"empty": {}, "tiny": []byte("x"), "junk": make([]byte, 5000)} {
		if err := mem.Put(bg, key, data); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReadFooter(bg, key); !errors.Is(err, s3seg.ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", key, err)
		}
	}
}

func TestReaderReadBlockCaches(t *testing.T) {
	parts := []s3seg.PartitionBatch{
		batch(1, "a", 1, 0, s3seg.CompressionZstd, 0, 100, 100),
		batch(2, "b", 2, 0, s3seg.CompressionLZ4, 500, 100, 100),
	}
	_, fs, key, f := putObject(t, parts...)
	reg := prometheus.NewRegistry()
	r := s3seg.NewReader(fs, s3seg.NewCache(1<<20, reg, s3seg.RawSize))
	for round := range 3 {
		for i, e := range f.Entries {
			recs, err := r.ReadBlock(bg, key, e)
			if err != nil {
				t.Fatal(err)
			}
			if err := recordsEqual(recs, parts[i].Records); err != nil {
				t.Fatalf("round %d block %d: %v", round, i, err)
			}
			recs[0].Value[0] ^= 0xff // callers own the records
		}
	}
	if got := fs.Calls(s3seg.OpGetRange); got != 2 {
		t.Fatalf("%d ranged GETs for 2 blocks read 3 times, want 2", got)
	}
	if h := testkit.Metric(t, reg, "streamhouse_segment_cache_hits_total"); h != 4 {
		t.Fatalf("hits = %v, want 4", h)
	}
}

func TestReaderCorruptBlockNotCached(t *testing.T) {
	mem, fs, key, f := putObject(t, batch(1, "a", 1, 0, s3seg.CompressionLZ4, 0, 50, 50))
	e := f.Entries[0]
	if err := mem.Corrupt(key, func(b []byte) []byte { b[e.Offset+e.Length/2] ^= 0x10; return b }); err != nil {
		t.Fatal(err)
	}
	cache := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	r := s3seg.NewReader(fs, cache)
	for range 2 {
		if recs, err := r.ReadBlock(bg, key, e); !errors.Is(err, s3seg.ErrCorrupt) || recs != nil {
			t.Fatalf("corrupt block: %d records, %v; want ErrCorrupt", len(recs), err)
		}
	}
	if cache.Len() != 0 || fs.Calls(s3seg.OpGetRange) != 2 {
		t.Fatalf("corrupt bytes were cached (len %d, GETs %d)", cache.Len(), fs.Calls(s3seg.OpGetRange))
	}
}

func TestReaderReadBlockErrors(t *testing.T) {
	_, fs, key, f := putObject(t, batch(1, "a", 1, 0, s3seg.CompressionNone, 0, 5, 5))
	r := s3seg.NewReader(fs, s3seg.NewCache(1<<20, nil, s3seg.RawSize))
	e := f.Entries[0]
	if _, err := r.ReadBlock(bg, "segments/missing.seg", e); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("missing object: %v", err)
	}
	bogus := e
	bogus.Length = 1 << 50
	if _, err := r.ReadBlock(bg, key, bogus); !errors.Is(err, s3seg.ErrCorrupt) {
		t.Fatalf("bogus length: %v", err)
	}
	beyond := e
	beyond.Offset = 1 << 20
	if _, err := r.ReadBlock(bg, key, beyond); !errors.Is(err, s3seg.ErrInvalidRange) {
		t.Fatalf("block beyond the object: %v", err)
	}
	boom := errors.New("boom")
	fs.Fail(s3seg.OpGetRange, boom, 1)
	if _, err := r.ReadBlock(bg, key, e); !errors.Is(err, boom) {
		t.Fatalf("store error: %v", err)
	}
	if _, err := r.ReadBlock(bg, key, e); err != nil {
		t.Fatalf("after the store recovered: %v", err)
	}
}

// gateStore blocks GetRange until released or its context ends.
type gateStore struct {
	s3seg.ObjectStore
	release chan struct{}
	mu      sync.Mutex
	active  int
}

func (g *gateStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.active--
		g.mu.Unlock()
	}()
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.ObjectStore.GetRange(ctx, key, off, n)
}

func (g *gateStore) running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active
}

func TestReaderPrefetch(t *testing.T) {
	var parts []s3seg.PartitionBatch
	for p := range 6 {
		parts = append(parts, batch(uint64(p), "t", 1, int32(p), s3seg.CompressionZstd, 0, 10, 10))
	}
	_, fs, key, f := putObject(t, parts...)
	gate := &gateStore{ObjectStore: fs, release: make(chan struct{})}
	cache := s3seg.NewCache(1<<20, nil, s3seg.RawSize, s3seg.WithPrefetchConcurrency(3))
	r := s3seg.NewReader(gate, cache)

	if !r.Prefetch(bg, key, f.Entries[0]) || !r.Prefetch(bg, key, f.Entries[1]) {
		t.Fatal("prefetches within the limit were not started")
	}
	waitFor(t, 10*time.Second, "2 prefetches to reach the store", func() bool { return gate.running() == 2 })
	if r.Prefetch(bg, key, f.Entries[0]) {
		t.Fatal("a prefetch of a block already being fetched was started")
	}
	if !r.Prefetch(bg, key, f.Entries[2]) {
		t.Fatal("the third prefetch (limit 3) was not started")
	}
	waitFor(t, 10*time.Second, "3 prefetches to reach the store", func() bool { return gate.running() == 3 })
	if r.Prefetch(bg, key, f.Entries[3]) {
		t.Fatal("a prefetch beyond the concurrency limit was started")
	}
	close(gate.release)
	waitFor(t, 10*time.Second, "prefetched blocks to be cached", func() bool { return cache.Len() == 3 })
	gets := fs.Calls(s3seg.OpGetRange)
	for i := range 2 {
		recs, err := r.ReadBlock(bg, key, f.Entries[i])
		if err != nil || len(recs) != 10 {
			t.Fatalf("ReadBlock after prefetch: %v", err)
		}
	}
	if fs.Calls(s3seg.OpGetRange) != gets || gets != 3 {
		t.Fatal("reads of prefetched blocks went to the store")
	}
	if r.Prefetch(bg, key, f.Entries[0]) {
		t.Fatal("a prefetch of a cached block was started")
	}
	if s3seg.NewReader(gate, nil).Prefetch(bg, key, f.Entries[3]) {
		t.Fatal("a prefetch without a cache was started")
	}
	cache.Close()
	cache.Close() // idempotent
	if r.Prefetch(bg, key, f.Entries[4]) {
		t.Fatal("a prefetch after the cache's Close was started")
	}
}

func TestCacheCloseCancelsPrefetch(t *testing.T) {
	_, fs, key, f := putObject(t, batch(1, "t", 1, 0, s3seg.CompressionNone, 0, 3, 3))
	gate := &gateStore{ObjectStore: fs, release: make(chan struct{})} // never released
	cache := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	r := s3seg.NewReader(gate, cache)
	if !r.Prefetch(bg, key, f.Entries[0]) {
		t.Fatal("prefetch not started")
	}
	waitFor(t, 10*time.Second, "the prefetch to reach the store", func() bool { return gate.running() == 1 })
	cache.Close() // must return: the blocked fetch sees its context canceled
	if cache.Len() != 0 || gate.running() != 0 {
		t.Fatal("prefetch still running or cached after Close")
	}

	// A prefetch also stops when the caller's context ends.
	cache2 := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	defer cache2.Close()
	r2 := s3seg.NewReader(gate, cache2)
	cache = cache2
	ctx, cancel := context.WithCancel(bg)
	if !r2.Prefetch(ctx, key, f.Entries[0]) {
		t.Fatal("prefetch not started")
	}
	waitFor(t, 10*time.Second, "the prefetch to reach the store", func() bool { return gate.running() == 1 })
	cancel()
	waitFor(t, 10*time.Second, "the prefetch to stop", func() bool {
		return gate.running() == 0 && !cache.Contains(key, f.Entries[0].Offset, f.Entries[0].Length)
	})
}
