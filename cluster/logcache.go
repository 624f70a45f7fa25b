package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Log cache bounds (DESIGN.md, "Log store"): the newest entries up to
// logCacheEntries and logCacheBytes of entry data.
const (
	logCacheEntries = 256
	logCacheBytes   = 32 << 20
)

// logCache is hashicorp/raft's LogCache bounded by bytes as well as by
// entries. Raft reads recent entries back to replicate them (leader) and
// to apply them (every agent); the cache serves those without a read and
// decode from the log store. LogCache keeps its last N entries whatever
// their size: with the coalescer's entries of up to 4 MiB, its 256 slots
// pinned most of an agent's heap at the 1 KiB saturated bench point.
//
// The cache holds a contiguous range of indexes, filled only after a
// successful StoreLogs; an append that does not follow the range, or any
// DeleteRange, empties it first, so it never serves an entry the store no
// longer holds at that index. Unlike LogCache it returns the store's
// errors as they are (errors.Is sees errTailUntrusted through it).
type logCache struct {
	store    raft.LogStore
	maxBytes int

	mu    sync.RWMutex
	ring  []*raft.Log // slot index % len(ring)
	first uint64      // index of the oldest cached entry (n > 0)
	n     int         // cached entries
	bytes int         // their Data + Extensions
}

func newLogCache(store raft.LogStore, entries, maxBytes int) *logCache {
	return &logCache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, max(entries, 1))}
}

// IsMonotonic implements raft.MonotonicLogStore for the wrapped store.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// GetLog implements raft.LogStore.
func (c *logCache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	if c.n > 0 && index >= c.first && index-c.first < uint64(c.n) {
		*log = *c.ring[index%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.store.GetLog(index, log)
}

// StoreLog implements raft.LogStore.
func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: the store first, then the cache.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		c.add(l)
	}
	return nil
}

// add caches l as the newest entry, then drops the oldest until both
// bounds hold (the newest entry stays even if it alone is over the byte
// bound: the apply that follows reads it). mu held.
func (c *logCache) add(l *raft.Log) {
	if c.n > 0 && l.Index != c.first+uint64(c.n) {
		c.clear()
	}
	if c.n == len(c.ring) {
		c.dropOldest()
	}
	if c.n == 0 {
		c.first = l.Index
	}
	c.ring[l.Index%uint64(len(c.ring))] = l
	c.n++
	c.bytes += logBytes(l)
	for c.n > 1 && c.bytes > c.maxBytes {
		c.dropOldest()
	}
}

func (c *logCache) dropOldest() {
	slot := c.first % uint64(len(c.ring))
	c.bytes -= logBytes(c.ring[slot])
	c.ring[slot] = nil
	c.first++
	c.n--
}

func (c *logCache) clear() {
	clear(c.ring)
	c.first, c.n, c.bytes = 0, 0, 0
}

func logBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }

// FirstIndex implements raft.LogStore.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex implements raft.LogStore.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange implements raft.LogStore; it empties the cache first.
func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	c.clear()
	c.mu.Unlock()
	return c.store.DeleteRange(lo, hi)
}
