package s3seg

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Reader defaults.
const (
	// DefaultFooterTail is how many trailing bytes ReadFooter fetches first.
	// A footer entry is 79 bytes plus the topic name, so this covers several
	// hundred partitions in one request; larger footers cost one more.
	DefaultFooterTail = 64 << 10
	// DefaultPrefetchConcurrency bounds the prefetches running at once.
	DefaultPrefetchConcurrency = 4
)

// ReaderOption configures a Reader.
type ReaderOption func(*Reader)

// WithFooterTail sets the size of ReadFooter's first ranged GET (minimum
// TrailerSize).
func WithFooterTail(n int64) ReaderOption {
	return func(r *Reader) { r.footerTail = max(n, TrailerSize) }
}

// WithPrefetchConcurrency sets how many prefetches may run at once; 0
// disables prefetching.
func WithPrefetchConcurrency(n int) ReaderOption {
	return func(r *Reader) { r.prefetch = make(chan struct{}, max(n, 0)) }
}

// Reader reads footers and blocks of segment objects from an ObjectStore
// through a Cache. It is safe for concurrent use. Its only background work is
// Prefetch; Close stops and waits for it.
type Reader struct {
	store      ObjectStore
	cache      *Cache
	footerTail int64
	prefetch   chan struct{} // semaphore of running prefetches

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// NewReader returns a Reader over store. cache may be nil (no caching). It
// starts nothing.
func NewReader(store ObjectStore, cache *Cache, opts ...ReaderOption) *Reader {
	r := &Reader{
		store:      store,
		cache:      cache,
		footerTail: DefaultFooterTail,
		prefetch:   make(chan struct{}, DefaultPrefetchConcurrency),
	}
	for _, o := range opts {
		o(r)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// ReadBlock returns the records of the block e of object key. On a cache
// miss it issues exactly one ranged GET for [e.Offset, e.Offset+e.Length)
// and verifies the CRC before caching the bytes; the bytes are verified and
// decoded again on every read, so the records returned are always checked
// against e and owned by the caller. Corruption gives an error wrapping
// ErrCorrupt (and nothing is cached); a missing object ErrNotFound.
func (r *Reader) ReadBlock(ctx context.Context, key string, e IndexEntry) ([]Record, error) {
	b, err := r.blockBytes(ctx, key, e)
	if err != nil {
		return nil, err
	}
	recs, err := DecodeBlock(b, e)
	if err != nil {
		return nil, fmt.Errorf("s3seg: object %q, block of %s[%d] at byte %d: %w", key, e.Topic, e.Partition, e.Offset, err)
	}
	return recs, nil
}

func (r *Reader) blockBytes(ctx context.Context, key string, e IndexEntry) ([]byte, error) {
	if err := validateEntry(e); err != nil {
		return nil, fmt.Errorf("s3seg: object %q: index entry: %w", key, err)
	}
	return r.cache.Get(ctx, key, e.Offset, e.Length, func(ctx context.Context) ([]byte, error) {
		b, err := r.store.GetRange(ctx, key, e.Offset, e.Length)
		if err != nil {
			return nil, fmt.Errorf("s3seg: object %q: reading block at byte %d: %w", key, e.Offset, err)
		}
		if err := verifyBlock(b, e); err != nil {
			return nil, fmt.Errorf("s3seg: object %q, block of %s[%d] at byte %d: %w", key, e.Topic, e.Partition, e.Offset, err)
		}
		return b, nil
	})
}

// ReadFooter returns the footer and size of object key: a Head, a ranged GET
// of the last bytes, and, only if the footer is larger than that, one more
// ranged GET for the missing part.
func (r *Reader) ReadFooter(ctx context.Context, key string) (Footer, int64, error) {
	info, err := r.store.Head(ctx, key)
	if err != nil {
		return Footer{}, 0, fmt.Errorf("s3seg: object %q: %w", key, err)
	}
	size := info.Size
	if size < TrailerSize+footerHeaderSize {
		return Footer{}, 0, fmt.Errorf("s3seg: object %q: %w", key, corruptf("object of %d bytes is too small to be a segment", size))
	}
	n := min(size, r.footerTail)
	tail, err := r.store.GetRange(ctx, key, size-n, n)
	if err != nil {
		return Footer{}, 0, fmt.Errorf("s3seg: object %q: reading footer: %w", key, err)
	}
	f, err := DecodeFooterTail(tail, size)
	var short *ShortTailError
	if errors.As(err, &short) {
		missing := short.Need - int64(len(tail))
		head, gerr := r.store.GetRange(ctx, key, size-short.Need, missing)
		if gerr != nil {
			return Footer{}, 0, fmt.Errorf("s3seg: object %q: reading footer: %w", key, gerr)
		}
		f, err = DecodeFooterTail(append(head, tail...), size)
	}
	if err != nil {
		return Footer{}, 0, fmt.Errorf("s3seg: object %q: %w", key, err)
	}
	return f, size, nil
}

// Prefetch starts loading block e of object key into the cache in the
// background and returns immediately. It reports whether a fetch was
// started: prefetching is a hint, so it does nothing when the cache is
// disabled, the block is cached or already being fetched, the Reader is
// closed, or the maximum number of prefetches is running. The fetch stops
// when ctx ends or the Reader is closed; its errors are dropped (a later
// ReadBlock retries and reports them).
func (r *Reader) Prefetch(ctx context.Context, key string, e IndexEntry) bool {
	if !r.cache.Enabled() || ctx.Err() != nil || r.cache.Contains(key, e.Offset, e.Length) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	select {
	case r.prefetch <- struct{}{}:
	default:
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.prefetch }()
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(r.ctx, cancel)
		defer stop()
		_, _ = r.blockBytes(pctx, key, e)
	}()
	return true
}

// Close cancels running prefetches and waits for them. It is idempotent.
// Reads keep working after Close; only Prefetch is disabled.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}
