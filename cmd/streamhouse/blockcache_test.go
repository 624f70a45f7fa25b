package main

import (
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

func recsOf(n int) []fsm.FetchedRecord {
	out := make([]fsm.FetchedRecord, n)
	for i := range out {
		out[i].Offset = int64(i)
	}
	return out
}

func TestDecodedCacheEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	// Each entry costs 500 + 10*recordOverhead = 1460 bytes; four fit in
	// 6000 (and each is under the quarter-of-budget limit of 1500).
	c := newDecodedCache(6000)
	key := func(i int) blockKey { return blockKey{object: "o", topicID: 1, partition: int32(i)} }
	for i := 0; i < 4; i++ {
		c.put(key(i), recsOf(10), 500)
	}
	if _, ok := c.get(key(0)); !ok { // 0 becomes most recently used
		t.Fatal("entry 0 missing before any eviction")
	}
	c.put(key(4), recsOf(10), 500) // evicts 1, the least recently used
	if _, ok := c.get(key(1)); ok {
		t.Fatal("entry 1 should have been evicted")
	}
	for _, i := range []int{0, 2, 3, 4} {
		recs, ok := c.get(key(i))
		if !ok || len(recs) != 10 {
			t.Fatalf("entry %d: ok=%v len=%d", i, ok, len(recs))
		}
	}
	if c.size > c.max {
		t.Fatalf("size %d over the budget %d", c.size, c.max)
	}
}

func TestDecodedCacheSkipsHugeBlocksAndDisabled(t *testing.T) {
	c := newDecodedCache(8000)
	c.put(blockKey{object: "big"}, recsOf(1), 5000) // over a quarter of the budget
	if _, ok := c.get(blockKey{object: "big"}); ok {
		t.Fatal("a block over a quarter of the budget was cached")
	}
	off := newDecodedCache(0)
	off.put(blockKey{object: "x"}, recsOf(1), 1)
	if _, ok := off.get(blockKey{object: "x"}); ok {
		t.Fatal("a disabled cache returned an entry")
	}
}
