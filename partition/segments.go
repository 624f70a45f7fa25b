package partition

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
)

// SegmentCache is the agent's one segment cache: one budget
// (SEGMENT_CACHE_SIZE) held by one cache type (s3seg.Cache) in two tiers —
// an eighth for decoded blocks, the rest for the verified raw blocks they
// are decoded from. The split is measured (s3seg/DESIGN.md): a decoded hit
// is ~10^4 times cheaper than decoding a raw block, so the blocks consumers
// are reading right now are held decoded; but a decoded block weighs 3–25
// times its raw bytes, and a budget spent on decoded blocks alone held a
// few times fewer blocks, doubled the agents' RSS and lowered hot-consume
// throughput in the cluster benchmark. Both tiers count in the same
// metrics. A nil *SegmentCache caches nothing.
type SegmentCache struct {
	decoded *s3seg.Cache[decodedBlock]
	raw     *s3seg.Cache[[]byte]
}

// decodedBlock is one cached partition block: its records, shared read-only
// by every reader, and the bytes they hold.
type decodedBlock struct {
	recs []fsm.FetchedRecord
	size int64
}

// recordOverhead approximates a decoded record's memory beyond its payload
// bytes: the fsm.FetchedRecord struct with its slice headers.
const recordOverhead = 96

func decodedSize(b decodedBlock) int64 { return b.size }

// decodedShare is the part of the budget held by decoded blocks (1/8: the
// 32 MiB of the default 256 MiB).
const decodedShare = 8

// NewSegmentCache returns a segment cache of at most maxBytes in all (0
// disables storing) with its metrics on reg (s3seg.Cache lists them).
func NewSegmentCache(maxBytes int64, reg prometheus.Registerer) *SegmentCache {
	dec := maxBytes / decodedShare
	return &SegmentCache{
		// One decoded block may take at most a quarter of its tier, so a
		// huge block cannot flush every other consumer's blocks.
		decoded: s3seg.NewCache(dec, reg, decodedSize, s3seg.WithMaxEntryBytes(dec/4)),
		raw:     s3seg.NewCache(maxBytes-dec, reg, s3seg.RawSize),
	}
}

func (c *SegmentCache) tiers() (*s3seg.Cache[decodedBlock], *s3seg.Cache[[]byte]) {
	if c == nil {
		return nil, nil
	}
	return c.decoded, c.raw
}

// Len is the number of blocks held, in both tiers.
func (c *SegmentCache) Len() int {
	d, r := c.tiers()
	return d.Len() + r.Len()
}

// Size is the bytes held, in both tiers.
func (c *SegmentCache) Size() int64 {
	d, r := c.tiers()
	return d.Size() + r.Size()
}

// Decoded reports whether the block (object, off, n) is held decoded (or
// being decoded).
func (c *SegmentCache) Decoded(object string, off, n int64) bool {
	d, _ := c.tiers()
	return d.Contains(object, off, n)
}

// Raw reports whether the raw block (object, off, n) is held (or being
// fetched).
func (c *SegmentCache) Raw(object string, off, n int64) bool {
	_, r := c.tiers()
	return r.Contains(object, off, n)
}

// dropObject drops every block of object from both tiers.
func (c *SegmentCache) dropObject(object string) {
	d, r := c.tiers()
	d.DropObject(object)
	r.DropObject(object)
}

// Close stops running prefetches and waits for them.
func (c *SegmentCache) Close() error {
	d, r := c.tiers()
	return errors.Join(d.Close(), r.Close())
}

// ObjectSegments is the SegmentStore over s3seg: the segment format, an
// object store and the segment cache. Its only goroutines are the cache's
// prefetches; Close stops them.
type ObjectSegments struct {
	nodeID string
	epoch  uint64
	store  s3seg.ObjectStore
	reader *s3seg.Reader
	cache  *SegmentCache

	mu  sync.Mutex // guards enc
	enc *s3seg.Encoder
}

var _ SegmentStore = (*ObjectSegments)(nil)

// NewSegmentStore returns the segment store of agent nodeID over objects,
// reading through cache (nil: no caching). It starts nothing.
func NewSegmentStore(nodeID string, objects s3seg.ObjectStore, cache *SegmentCache) *ObjectSegments {
	return &ObjectSegments{
		nodeID: nodeID, epoch: uint64(time.Now().UnixMilli()), store: objects,
		reader: s3seg.NewReader(objects, rawTier(cache)), cache: cache, enc: s3seg.NewEncoder(),
	}
}

func rawTier(c *SegmentCache) *s3seg.Cache[[]byte] {
	_, r := c.tiers()
	return r
}

// Close stops the cache's running prefetches and waits for them. It is
// idempotent.
func (s *ObjectSegments) Close() error { return s.cache.Close() }

// WriteSegment implements SegmentStore.
func (s *ObjectSegments) WriteSegment(ctx context.Context, parts []SegmentPart, commitBy int64) (string, []fsm.SegmentRef, error) {
	batches := make([]s3seg.PartitionBatch, len(parts))
	for i := range parts {
		batches[i] = segmentBatch(&parts[i])
	}
	s.mu.Lock()
	data, footer, err := s.enc.Encode(batches)
	s.mu.Unlock()
	if err != nil {
		return "", nil, fmt.Errorf("encode segment: %w", err)
	}
	key := s3seg.ObjectKey(s.nodeID, s.epoch)
	if commitBy > 0 {
		key = s3seg.ObjectKeyCommitBy(s.nodeID, s.epoch, commitBy)
	}
	if err := s.store.Put(ctx, key, data); err != nil {
		return "", nil, fmt.Errorf("put %s: %w", key, err)
	}
	refs := make([]fsm.SegmentRef, len(footer.Entries))
	for i, e := range footer.Entries {
		refs[i] = SegmentRefOf(key, e, 0)
	}
	return key, refs, nil
}

// segmentBatch is p in the segment format (an unknown compression name
// falls back to zstd).
func segmentBatch(p *SegmentPart) s3seg.PartitionBatch {
	comp, err := s3seg.ParseCompression(p.Compression)
	if err != nil {
		comp = s3seg.CompressionZstd
	}
	recs := make([]s3seg.Record, len(p.Records))
	for j := range p.Records {
		r := &p.Records[j]
		recs[j] = s3seg.Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
		if len(r.Headers) > 0 {
			hs := make([]s3seg.Header, len(r.Headers))
			for k, h := range r.Headers {
				hs[k] = s3seg.Header{Key: h.Key, Value: h.Value}
			}
			recs[j].Headers = hs
		}
	}
	return s3seg.PartitionBatch{Topic: p.Topic, TopicID: p.TopicID, Partition: p.Partition, Compression: comp, Records: recs}
}

// ReadSegment implements SegmentStore: the records of one block, decoded
// once and then served from the cache. The slice is shared with other
// readers: do not modify it.
func (s *ObjectSegments) ReadSegment(ctx context.Context, topicID uint64, part int32, ref fsm.SegmentRef) ([]fsm.FetchedRecord, error) {
	dec, _ := s.cache.tiers()
	b, err := dec.Get(ctx, ref.ObjectKey, ref.ByteOffset, ref.ByteLength, s.fetchBlock(topicID, part, ref))
	return b.recs, err
}

// Prefetch implements SegmentStore: it starts reading the raw block into
// the cache in the background (a hint; see s3seg.Cache.Prefetch); it is
// decoded when a consumer reads it.
func (s *ObjectSegments) Prefetch(ctx context.Context, topicID uint64, part int32, ref fsm.SegmentRef) {
	s.reader.Prefetch(ctx, ref.ObjectKey, IndexEntryOf(topicID, part, ref))
}

// fetchBlock returns the load of ref's block on a cache miss: one ranged
// GET, CRC and structure checks against the index entry, decoding.
func (s *ObjectSegments) fetchBlock(topicID uint64, part int32, ref fsm.SegmentRef) func(context.Context) (decodedBlock, error) {
	return func(ctx context.Context) (decodedBlock, error) {
		recs, err := s.reader.ReadBlock(ctx, ref.ObjectKey, IndexEntryOf(topicID, part, ref))
		if err != nil {
			return decodedBlock{}, err
		}
		return decodedBlock{
			recs: fetchedRecords(part, recs),
			size: ref.UncompressedSize + int64(len(recs))*recordOverhead,
		}, nil
	}
}

// fetchedRecords converts decoded segment records of partition part. A
// null value stays null, as it does in the WAL.
func fetchedRecords(part int32, recs []s3seg.Record) []fsm.FetchedRecord {
	out := make([]fsm.FetchedRecord, len(recs))
	for i, r := range recs {
		out[i] = fsm.FetchedRecord{Partition: part, Offset: r.Offset, Record: fsm.Record{Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}}
		if len(r.Headers) > 0 {
			hs := make([]fsm.Header, len(r.Headers))
			for k, h := range r.Headers {
				hs[k] = fsm.Header{Key: h.Key, Value: h.Value}
			}
			out[i].Headers = hs
		}
	}
	return out
}

// ListObjects implements SegmentStore.
func (s *ObjectSegments) ListObjects(ctx context.Context) ([]ObjectInfo, error) {
	objs, err := s.store.List(ctx, s3seg.SegmentKeyPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]ObjectInfo, len(objs))
	for i, o := range objs {
		out[i] = ObjectInfo{Key: o.Key, Size: o.Size, LastModified: o.LastModified, CommitBy: s3seg.KeyCommitBy(o.Key)}
	}
	return out, nil
}

// DeleteObject implements SegmentStore. Once the object is gone its cached
// blocks are dropped: nothing references it any more, so they would only
// hold budget until evicted.
func (s *ObjectSegments) DeleteObject(ctx context.Context, key string) error {
	if err := s.store.Delete(ctx, key); err != nil {
		return err
	}
	s.cache.dropObject(key)
	return nil
}
