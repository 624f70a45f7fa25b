package main

import (
	"container/list"
	"sync"

	"github.com/streamhouse/streamhouse/fsm"
)

// blockKey names one partition's block inside one segment object.
type blockKey struct {
	object    string
	topicID   uint64
	partition int32
	base      int64
}

// decodedCache keeps the most recently decoded segment blocks, bounded by
// an estimate of their in-memory size. A sequential consumer reads one
// block over several fetches (MaxRecords is usually smaller than a block);
// without this every fetch would decompress and parse the whole block
// again. The cached slices are shared by every reader: callers must treat
// them as read-only (the Fetcher copies records into its own response).
type decodedCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	order *list.List // front = most recently used; values are *decodedEntry
	items map[blockKey]*list.Element
}

type decodedEntry struct {
	key  blockKey
	recs []fsm.FetchedRecord
	size int64
}

// recordOverhead approximates a decoded record's memory beyond its bytes
// (the FetchedRecord struct and slice headers).
const recordOverhead = 96

func newDecodedCache(maxBytes int64) *decodedCache {
	return &decodedCache{max: maxBytes, order: list.New(), items: map[blockKey]*list.Element{}}
}

func (c *decodedCache) get(k blockKey) ([]fsm.FetchedRecord, bool) {
	if c == nil || c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*decodedEntry).recs, true
}

// put caches recs under k; a block larger than a quarter of the budget is
// not cached, so one huge block cannot flush everything else.
func (c *decodedCache) put(k blockKey, recs []fsm.FetchedRecord, payload int64) {
	if c == nil || c.max <= 0 {
		return
	}
	size := payload + int64(len(recs))*recordOverhead
	if size > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.order.PushFront(&decodedEntry{key: k, recs: recs, size: size})
	c.size += size
	for c.size > c.max {
		el := c.order.Back()
		e := el.Value.(*decodedEntry)
		c.order.Remove(el)
		delete(c.items, e.key)
		c.size -= e.size
	}
}
