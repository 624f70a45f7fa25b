package cluster

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory raft.LogStore that counts GetLog calls
// (cache misses) and can fail StoreLogs.
type countingStore struct {
	logs  map[uint64]*raft.Log
	gets  int
	fail  error
	first uint64
	last  uint64
}

func newCountingStore() *countingStore { return &countingStore{logs: map[uint64]*raft.Log{}} }

func (s *countingStore) FirstIndex() (uint64, error) { return s.first, nil }
func (s *countingStore) LastIndex() (uint64, error)  { return s.last, nil }
func (s *countingStore) GetLog(i uint64, l *raft.Log) error {
	s.gets++
	e, ok := s.logs[i]
	if !ok {
		return raft.ErrLogNotFound
	}
	*l = *e
	return nil
}
func (s *countingStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }
func (s *countingStore) StoreLogs(ls []*raft.Log) error {
	if s.fail != nil {
		return s.fail
	}
	for _, l := range ls {
		s.logs[l.Index] = l
		if s.first == 0 {
			s.first = l.Index
		}
		s.last = l.Index
	}
	return nil
}
func (s *countingStore) DeleteRange(lo, hi uint64) error {
	for i := lo; i <= hi; i++ {
		delete(s.logs, i)
	}
	return nil
}

// cached reports whether index i is served without reaching the store.
func cached(t *testing.T, c raft.LogStore, s *countingStore, i uint64) bool {
	t.Helper()
	before := s.gets
	var l raft.Log
	if err := c.GetLog(i, &l); err != nil {
		t.Fatalf("GetLog(%d): %v", i, err)
	}
	if l.Index != i {
		t.Fatalf("GetLog(%d) returned entry %d", i, l.Index)
	}
	return s.gets == before
}

// hashicorp/raft's LogCache keeps its last N entries whatever their
// size: with the coalescer's entries of up to 4 MiB, 256 of them pinned
// hundreds of MB on every agent (heap profiles at the 1 KiB saturated
// bench point: the followers' decoded AppendEntries, the leader's
// proposals). logCache also bounds the bytes it keeps.
func TestLogCacheKeepsRecentEntriesWithinABudget(t *testing.T) {
	s := newCountingStore()
	c := newLogCache(s, 8, 10_000)
	if err := c.StoreLogs(testEntries(1, 4, 1000)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 4; i++ {
		if !cached(t, c, s, i) {
			t.Fatalf("entry %d of 4 small ones not cached", i)
		}
	}
	// 4 × 3000 more bytes: the budget keeps the newest that fit.
	if err := c.StoreLogs(testEntries(5, 4, 3000)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(8); i >= 6; i-- {
		if !cached(t, c, s, i) {
			t.Fatalf("entry %d (of the newest 10,000 bytes) not cached", i)
		}
	}
	for _, i := range []uint64{1, 4, 5} {
		if cached(t, c, s, i) {
			t.Fatalf("entry %d still cached past the byte budget", i)
		}
	}
	// The count bound still applies.
	if err := c.StoreLogs(testEntries(9, 12, 10)); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, s, 12) || !cached(t, c, s, 13) || !cached(t, c, s, 20) {
		t.Fatal("want exactly the last 8 entries cached")
	}
	// An entry larger than the budget is cached alone (the next apply
	// reads it), and pushes out everything else.
	if err := c.StoreLogs(testEntries(21, 1, 20_000)); err != nil {
		t.Fatal(err)
	}
	if !cached(t, c, s, 21) || cached(t, c, s, 20) {
		t.Fatal("want only the oversized newest entry cached")
	}
}

func TestLogCacheDropsEverythingOnDeleteAndGaps(t *testing.T) {
	s := newCountingStore()
	c := newLogCache(s, 8, 1<<20)
	if err := c.StoreLogs(testEntries(1, 5, 100)); err != nil {
		t.Fatal(err)
	}
	// A conflicting suffix is deleted, then rewritten at another term:
	// the cache must not serve the old entries.
	if err := c.DeleteRange(4, 5); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, s, 2) {
		t.Fatal("cache kept entries across a DeleteRange")
	}
	next := testEntries(4, 2, 100)
	for _, e := range next {
		e.Term = 9
	}
	if err := c.StoreLogs(next); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(4, &l); err != nil || l.Term != 9 {
		t.Fatalf("entry 4 = term %d, %v; want the rewritten term 9", l.Term, err)
	}
	// A rewrite inside the cached range (no DeleteRange first) drops the
	// entries after it too.
	again := testEntries(2, 1, 100)
	again[0].Term = 11
	if err := c.StoreLogs(again); err != nil {
		t.Fatal(err)
	}
	if err := c.GetLog(2, &l); err != nil || l.Term != 11 {
		t.Fatalf("entry 2 = term %d, %v; want the rewritten term 11", l.Term, err)
	}
	if cached(t, c, s, 4) {
		t.Fatal("entry 4 still cached after a rewrite of entry 2")
	}
	// An append that does not follow the cached range (after a snapshot
	// install) restarts the cache there.
	if err := c.StoreLogs(testEntries(100, 2, 100)); err != nil {
		t.Fatal(err)
	}
	if !cached(t, c, s, 100) || cached(t, c, s, 5) {
		t.Fatal("want the cache to hold only the entries after the gap")
	}
}

func TestLogCacheStoresNothingOnAFailedWrite(t *testing.T) {
	s := newCountingStore()
	c := newLogCache(s, 8, 1<<20)
	s.fail = errTailUntrusted
	if err := c.StoreLogs(testEntries(1, 2, 100)); !errors.Is(err, errTailUntrusted) {
		t.Fatalf("StoreLogs = %v; want the store's error, still wrapped", err)
	}
	s.fail = nil
	var l raft.Log
	if err := c.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog after a failed write = %+v, %v; want not found", l, err)
	}
}

// Raft reads entries (replication, apply) while its main goroutine
// appends and the snapshot goroutine compacts a prefix. Every read served
// must be the entry at that index; run with -race.
func TestLogCacheConcurrentReadsSeeStoredEntries(t *testing.T) {
	l, err := openWALLog(t.TempDir(), testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := newLogCache(l, 16, 64<<10)
	const last = 600
	want := testEntries(1, last, 4096)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got raft.Log
			for i := uint64(r); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				idx := i%last + 1
				if c.GetLog(idx, &got) != nil {
					continue // not written yet, or compacted
				}
				if w := want[idx-1]; got.Index != idx || !bytes.Equal(got.Data, w.Data) {
					t.Errorf("GetLog(%d) returned entry %d (%d bytes)", idx, got.Index, len(got.Data))
					return
				}
			}
		}()
	}
	for i := 0; i < last; i += 10 {
		if err := c.StoreLogs(want[i : i+10]); err != nil {
			t.Fatal(err)
		}
		if i >= 100 && i%50 == 0 {
			if err := c.DeleteRange(1, uint64(i-50)); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}
