package s3seg

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Cache is the segment cache: an LRU of verified, still-compressed block
// bytes bounded by their total size (SEGMENT_CACHE_SIZE). Entries are keyed by
// (object key, byte offset, length); objects are immutable, so an entry never
// goes stale. It stores raw blocks rather than decoded records so that the
// budget is exact and holds as much data as possible, and so that every read
// decodes into memory its caller owns (a cached value can never be mutated
// through a returned record).
//
// Concurrent misses for the same key share one fetch (singleflight). A caller
// whose context ends stops waiting at once; the fetch itself runs under the
// context of the caller that started it, and if that caller gives up,
// waiting callers whose contexts are still live retry.
//
// maxBytes <= 0 disables storage (fetches are still shared). A nil *Cache is
// valid and fetches every time. All methods are safe for concurrent use.
//
// Metrics (registered with the injected Registerer, if not nil):
//
//	streamhouse_segment_cache_hits_total       lookups served from the cache
//	streamhouse_segment_cache_misses_total     lookups not in the cache (including those that joined another caller's fetch)
//	streamhouse_segment_cache_evictions_total  entries evicted to stay within the budget
//	streamhouse_segment_cache_bytes            bytes held
//
// Caches sharing one Registerer share these collectors (the gauge is then
// the sum over them).
type Cache struct {
	maxBytes int64

	mu    sync.Mutex
	size  int64
	lru   *list.List // of *cacheEntry; front = most recently used
	items map[cacheKey]*list.Element
	calls map[cacheKey]*cacheCall

	hits, misses, evictions prometheus.Counter
	bytes                   prometheus.Gauge
}

type cacheKey struct {
	object string
	off, n int64
}

type cacheEntry struct {
	key  cacheKey
	data []byte
}

// cacheCall is one in-flight fetch. data and err are written before done is
// closed and read only after.
type cacheCall struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int // callers waiting besides the fetcher; guarded by Cache.mu
}

// NewCache returns a cache holding at most maxBytes bytes of blocks.
func NewCache(maxBytes int64, reg prometheus.Registerer) *Cache {
	c := &Cache{
		maxBytes: maxBytes,
		lru:      list.New(),
		items:    make(map[cacheKey]*list.Element),
		calls:    make(map[cacheKey]*cacheCall),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_cache_hits_total",
			Help: "Segment cache lookups served from the cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_cache_misses_total",
			Help: "Segment cache lookups not found in the cache.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_cache_evictions_total",
			Help: "Segment cache entries evicted to stay within the size budget.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_segment_cache_bytes",
			Help: "Bytes of block data held by the segment cache.",
		}),
	}
	c.hits = register(reg, c.hits)
	c.misses = register(reg, c.misses)
	c.evictions = register(reg, c.evictions)
	c.bytes = register(reg, c.bytes)
	return c
}

// Get returns the bytes cached for (object, off, n), or calls fetch to load
// them, sharing one fetch among concurrent callers for the same key. A
// successful fetch result is stored (if it fits the budget); an error is
// returned to every caller sharing the fetch and is not stored. The returned
// slice is shared: callers must not modify it.
func (c *Cache) Get(ctx context.Context, object string, off, n int64, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	if c == nil {
		return fetch(ctx)
	}
	k := cacheKey{object, off, n}
	counted := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if el, ok := c.items[k]; ok {
			c.lru.MoveToFront(el)
			data := el.Value.(*cacheEntry).data
			c.mu.Unlock()
			if !counted {
				c.hits.Inc()
			}
			return data, nil
		}
		if !counted {
			c.misses.Inc()
			counted = true
		}
		if cl, ok := c.calls[k]; ok {
			cl.waiters++
			c.mu.Unlock()
			select {
			case <-cl.done:
			case <-ctx.Done():
				c.mu.Lock()
				cl.waiters--
				c.mu.Unlock()
				return nil, ctx.Err()
			}
			if cl.err != nil && isContextErr(cl.err) && ctx.Err() == nil {
				continue // the fetching caller gave up; try again ourselves
			}
			return cl.data, cl.err
		}
		cl := &cacheCall{done: make(chan struct{})}
		c.calls[k] = cl
		c.mu.Unlock()
		c.run(ctx, k, cl, fetch)
		return cl.data, cl.err
	}
}

// run performs the fetch of cl and publishes its result, also if fetch
// panics (waiters then get an error; the panic continues in this caller).
func (c *Cache) run(ctx context.Context, k cacheKey, cl *cacheCall, fetch func(context.Context) ([]byte, error)) {
	finished := false
	defer func() {
		if !finished {
			cl.data, cl.err = nil, fmt.Errorf("s3seg: segment cache fetch of %q panicked", k.object)
		}
		c.mu.Lock()
		delete(c.calls, k)
		if cl.err == nil {
			c.addLocked(k, cl.data)
		}
		c.mu.Unlock()
		close(cl.done)
	}()
	cl.data, cl.err = fetch(ctx)
	if cl.err != nil {
		cl.data = nil
	}
	finished = true
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// addLocked stores data under k and evicts least recently used entries until
// the cache fits its budget. Data larger than the whole budget is not stored.
func (c *Cache) addLocked(k cacheKey, data []byte) {
	sz := int64(len(data))
	if sz > c.maxBytes {
		return
	}
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	c.size += sz
	c.bytes.Add(float64(sz))
	for c.size > c.maxBytes {
		c.removeLocked(c.lru.Back())
		c.evictions.Inc()
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.size -= int64(len(e.data))
	c.bytes.Sub(float64(len(e.data)))
}

// Contains reports whether (object, off, n) is cached or being fetched.
func (c *Cache) Contains(object string, off, n int64) bool {
	if c == nil {
		return false
	}
	k := cacheKey{object, off, n}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, cached := c.items[k]
	_, inflight := c.calls[k]
	return cached || inflight
}

// DropObject removes every cached block of object (e.g. after retention
// deleted it). It is O(entries).
func (c *Cache) DropObject(object string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if k.object == object {
			c.removeLocked(el)
		}
	}
}

// Size returns the bytes held.
func (c *Cache) Size() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Len returns the number of entries held.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Enabled reports whether the cache stores anything.
func (c *Cache) Enabled() bool { return c != nil && c.maxBytes > 0 }
