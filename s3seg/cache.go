package s3seg

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPrefetchConcurrency bounds the prefetches a Cache runs at once.
const DefaultPrefetchConcurrency = 4

// Cache is the segment cache: an LRU of block values (V) bounded by their
// total size in bytes (SEGMENT_CACHE_SIZE) as sizeOf reports it. Entries are
// keyed by (object key, byte offset, length), i.e. by block; objects are
// immutable, so an entry never goes stale, and DropObject frees an object's
// entries when it is deleted. V is the representation its owner chose: the
// agent caches decoded records (partition.SegmentStore, see DESIGN.md for
// the measurement), a Reader can cache the verified raw bytes (Cache[[]byte]).
// Values are shared by every caller: nobody may modify one.
//
// Concurrent misses for the same key share one fetch (singleflight). A caller
// whose context ends stops waiting at once; the fetch itself runs under the
// context of the caller that started it, and if that caller gives up,
// waiting callers whose contexts are still live retry. Prefetch loads a
// value in the background; Close stops and waits for those loads.
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
type Cache[V any] struct {
	maxBytes int64
	maxEntry int64 // heaviest value stored
	sizeOf   func(V) int64

	mu     sync.Mutex
	size   int64
	lru    *list.List // of *cacheEntry[V]; front = most recently used
	items  map[cacheKey]*list.Element
	calls  map[cacheKey]*cacheCall[V]
	closed bool // guarded by mu, like wg.Add

	prefetch chan struct{}   // semaphore of running prefetches
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	hits, misses, evictions prometheus.Counter
	bytes                   prometheus.Gauge
}

type cacheKey struct {
	object string
	off, n int64
}

type cacheEntry[V any] struct {
	key  cacheKey
	val  V
	size int64
}

// cacheCall is one in-flight fetch. val and err are written before done is
// closed and read only after.
type cacheCall[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int  // callers waiting besides the fetcher; guarded by Cache.mu
	dropped bool // its object was deleted during the fetch: do not store; guarded by Cache.mu
}

// CacheOption configures a Cache.
type CacheOption func(*cacheOptions)

type cacheOptions struct {
	prefetch int
	maxEntry int64
}

// WithMaxEntryBytes sets the heaviest value the cache stores (default: the
// whole budget); a heavier one is returned to its callers but not kept, so
// one huge block cannot flush everything else.
func WithMaxEntryBytes(n int64) CacheOption {
	return func(o *cacheOptions) { o.maxEntry = n }
}

// WithPrefetchConcurrency sets how many prefetches may run at once; 0
// disables prefetching.
func WithPrefetchConcurrency(n int) CacheOption {
	return func(o *cacheOptions) { o.prefetch = max(n, 0) }
}

// RawSize is the size of a raw block: its length (for Cache[[]byte]).
func RawSize(b []byte) int64 { return int64(len(b)) }

// NewCache returns a cache holding values of at most maxBytes bytes in all,
// each weighing sizeOf(value). It starts nothing.
func NewCache[V any](maxBytes int64, reg prometheus.Registerer, sizeOf func(V) int64, opts ...CacheOption) *Cache[V] {
	o := cacheOptions{prefetch: DefaultPrefetchConcurrency}
	for _, f := range opts {
		f(&o)
	}
	c := &Cache[V]{
		maxBytes:  maxBytes,
		maxEntry:  maxBytes,
		sizeOf:    sizeOf,
		lru:       list.New(),
		items:     make(map[cacheKey]*list.Element),
		calls:     make(map[cacheKey]*cacheCall[V]),
		prefetch:  make(chan struct{}, o.prefetch),
		hits:      newCounter(reg, "streamhouse_segment_cache_hits_total", "Segment cache lookups served from the cache."),
		misses:    newCounter(reg, "streamhouse_segment_cache_misses_total", "Segment cache lookups not found in the cache."),
		evictions: newCounter(reg, "streamhouse_segment_cache_evictions_total", "Segment cache entries evicted to stay within the size budget."),
		bytes: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_segment_cache_bytes",
			Help: "Bytes of block data held by the segment cache.",
		})),
	}
	if o.maxEntry > 0 && o.maxEntry < maxBytes {
		c.maxEntry = o.maxEntry
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

func newCounter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// Get returns the value cached for (object, off, n), or calls fetch to load
// it, sharing one fetch among concurrent callers for the same key. A
// successful fetch result is stored (if it fits the budget); an error is
// returned to every caller sharing the fetch and is not stored. The returned
// value is shared: callers must not modify it.
func (c *Cache[V]) Get(ctx context.Context, object string, off, n int64, fetch func(context.Context) (V, error)) (V, error) {
	var zero V
	if c == nil {
		return fetch(ctx)
	}
	k := cacheKey{object, off, n}
	counted := false
	for {
		if err := ctx.Err(); err != nil {
			return zero, err
		}
		c.mu.Lock()
		if el, ok := c.items[k]; ok {
			c.lru.MoveToFront(el)
			v := el.Value.(*cacheEntry[V]).val
			c.mu.Unlock()
			if !counted {
				c.hits.Inc()
			}
			return v, nil
		}
		if !counted {
			c.misses.Inc()
			counted = true
		}
		if cl, ok := c.calls[k]; ok {
			v, retry, err := c.wait(ctx, cl) // unlocks c.mu
			if retry {
				continue
			}
			return v, err
		}
		cl := &cacheCall[V]{done: make(chan struct{})}
		c.calls[k] = cl
		c.mu.Unlock()
		c.run(ctx, k, cl, fetch)
		return cl.val, cl.err
	}
}

// wait joins the in-flight fetch cl; c.mu is held on entry and released. It
// reports retry when the fetching caller gave up while ctx is still live.
func (c *Cache[V]) wait(ctx context.Context, cl *cacheCall[V]) (v V, retry bool, err error) {
	cl.waiters++
	c.mu.Unlock()
	select {
	case <-cl.done:
	case <-ctx.Done():
		c.mu.Lock()
		cl.waiters--
		c.mu.Unlock()
		return v, false, ctx.Err()
	}
	if cl.err != nil && isContextErr(cl.err) && ctx.Err() == nil {
		return v, true, nil // the fetching caller gave up; try again ourselves
	}
	return cl.val, false, cl.err
}

// run performs the fetch of cl and publishes its result, also if fetch
// panics (waiters then get an error; the panic continues in this caller).
func (c *Cache[V]) run(ctx context.Context, k cacheKey, cl *cacheCall[V], fetch func(context.Context) (V, error)) {
	finished := false
	defer func() {
		if !finished {
			var zero V
			cl.val, cl.err = zero, fmt.Errorf("s3seg: segment cache fetch of %q panicked", k.object)
		}
		c.mu.Lock()
		delete(c.calls, k)
		if cl.err == nil && !cl.dropped {
			c.addLocked(k, cl.val)
		}
		c.mu.Unlock()
		close(cl.done)
	}()
	cl.val, cl.err = fetch(ctx)
	if cl.err != nil {
		var zero V
		cl.val = zero
	}
	finished = true
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// addLocked stores v under k and evicts least recently used entries until
// the cache fits its budget. A value heavier than maxEntry (by default the
// whole budget) is not stored.
func (c *Cache[V]) addLocked(k cacheKey, v V) {
	if c.maxBytes <= 0 {
		return
	}
	sz := c.sizeOf(v)
	if sz > c.maxEntry {
		return
	}
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry[V]{key: k, val: v, size: sz})
	c.size += sz
	c.bytes.Add(float64(sz))
	for c.size > c.maxBytes {
		c.removeLocked(c.lru.Back())
		c.evictions.Inc()
	}
}

func (c *Cache[V]) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry[V])
	delete(c.items, e.key)
	c.size -= e.size
	c.bytes.Sub(float64(e.size))
}

// Prefetch starts loading (object, off, n) with fetch in the background and
// returns immediately. It reports whether a load was started: prefetching
// is a hint, so it does nothing when the cache is disabled, the value is
// cached or already being fetched, the Cache is closed, or the maximum
// number of prefetches is running. The load stops when ctx ends or Close is
// called; its errors are dropped (a later Get retries and reports them).
func (c *Cache[V]) Prefetch(ctx context.Context, object string, off, n int64, fetch func(context.Context) (V, error)) bool {
	if !c.Enabled() || ctx.Err() != nil {
		return false
	}
	k := cacheKey{object, off, n}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.containsLocked(k) {
		return false
	}
	select {
	case c.prefetch <- struct{}{}:
	default:
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.prefetch }()
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(c.ctx, cancel)
		defer stop()
		_, _ = c.Get(pctx, object, off, n, fetch)
	}()
	return true
}

// Close cancels running prefetches and waits for them. It is idempotent.
// Get keeps working after Close; only Prefetch is disabled.
func (c *Cache[V]) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Contains reports whether (object, off, n) is cached or being fetched.
func (c *Cache[V]) Contains(object string, off, n int64) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.containsLocked(cacheKey{object, off, n})
}

func (c *Cache[V]) containsLocked(k cacheKey) bool {
	_, cached := c.items[k]
	_, inflight := c.calls[k]
	return cached || inflight
}

// DropObject removes every cached block of object (called when the object
// is deleted), and keeps blocks of it being fetched right now from being
// stored when their fetch ends. It is O(entries + fetches in flight).
func (c *Cache[V]) DropObject(object string) {
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
	for k, cl := range c.calls {
		if k.object == object {
			cl.dropped = true
		}
	}
}

// Size returns the bytes held.
func (c *Cache[V]) Size() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Len returns the number of entries held.
func (c *Cache[V]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Enabled reports whether the cache stores anything.
func (c *Cache[V]) Enabled() bool { return c != nil && c.maxBytes > 0 }
