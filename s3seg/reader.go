package s3seg

import (
	"context"
	"errors"
	"fmt"
)

// DefaultFooterTail is how many trailing bytes ReadFooter fetches first. A
// footer entry is 79 bytes plus the topic name, so this covers several
// hundred partitions in one request; larger footers cost one more.
const DefaultFooterTail = 64 << 10

// ReaderOption configures a Reader.
type ReaderOption func(*Reader)

// WithFooterTail sets the size of ReadFooter's first ranged GET (minimum
// TrailerSize).
func WithFooterTail(n int64) ReaderOption {
	return func(r *Reader) { r.footerTail = max(n, TrailerSize) }
}

// Reader reads footers and blocks of segment objects from an ObjectStore,
// optionally through a Cache of raw blocks. It is safe for concurrent use
// and starts nothing; background work (Prefetch) belongs to the Cache.
type Reader struct {
	store      ObjectStore
	cache      *Cache[[]byte]
	footerTail int64
}

// NewReader returns a Reader over store. cache may be nil (no caching of raw
// blocks; the agent caches decoded blocks above the Reader instead).
func NewReader(store ObjectStore, cache *Cache[[]byte], opts ...ReaderOption) *Reader {
	r := &Reader{store: store, cache: cache, footerTail: DefaultFooterTail}
	for _, o := range opts {
		o(r)
	}
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
	return r.cache.Get(ctx, key, e.Offset, e.Length, r.fetchBlock(key, e))
}

// fetchBlock returns the fetch of block e's verified bytes: exactly one
// ranged GET of [e.Offset, e.Offset+e.Length), then the CRC check.
func (r *Reader) fetchBlock(key string, e IndexEntry) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		b, err := r.store.GetRange(ctx, key, e.Offset, e.Length)
		if err != nil {
			return nil, fmt.Errorf("s3seg: object %q: reading block at byte %d: %w", key, e.Offset, err)
		}
		if err := verifyBlock(b, e); err != nil {
			return nil, fmt.Errorf("s3seg: object %q, block of %s[%d] at byte %d: %w", key, e.Topic, e.Partition, e.Offset, err)
		}
		return b, nil
	}
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

// Prefetch starts loading block e of object key into the Reader's cache in
// the background (see Cache.Prefetch) and reports whether it did.
func (r *Reader) Prefetch(ctx context.Context, key string, e IndexEntry) bool {
	if validateEntry(e) != nil {
		return false
	}
	return r.cache.Prefetch(ctx, key, e.Offset, e.Length, r.fetchBlock(key, e))
}
