package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/s3seg"
)

// segmentStore adapts s3seg (format, object store, cache) to the
// partition.SegmentStore interface, converting between the two packages'
// record types.
type segmentStore struct {
	nodeID string
	epoch  uint64
	store  s3seg.ObjectStore
	reader *s3seg.Reader

	decoded *decodedCache

	mu  sync.Mutex
	enc *s3seg.Encoder
}

// decodedCacheMax bounds the decoded-block cache; it sits in front of the
// compressed segment cache (SEGMENT_CACHE_SIZE) and is deliberately small:
// it only has to hold the blocks consumers are reading right now.
const decodedCacheMax = 32 << 20

var _ partition.SegmentStore = (*segmentStore)(nil)

func newSegmentStore(nodeID string, store s3seg.ObjectStore, cache *s3seg.Cache) *segmentStore {
	return &segmentStore{
		nodeID: nodeID, epoch: uint64(time.Now().UnixMilli()), store: store,
		reader: s3seg.NewReader(store, cache), enc: s3seg.NewEncoder(),
		decoded: newDecodedCache(decodedCacheMax),
	}
}

func (s *segmentStore) WriteSegment(ctx context.Context, parts []partition.SegmentPart, commitBy int64) (string, []fsm.SegmentRef, error) {
	batches := make([]s3seg.PartitionBatch, len(parts))
	for i, p := range parts {
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
		batches[i] = s3seg.PartitionBatch{Topic: p.Topic, TopicID: p.TopicID, Partition: p.Partition, Compression: comp, Records: recs}
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
		refs[i] = fsm.SegmentRef{
			ObjectKey: key, ByteOffset: e.Offset, ByteLength: e.Length, BaseOffset: e.BaseOffset,
			LastOffset: e.LastOffset, RecordCount: e.RecordCount, MinTimestamp: e.MinTimestamp,
			MaxTimestamp: e.MaxTimestamp, Compression: uint8(e.Compression), CRC: e.CRC,
			UncompressedSize: e.UncompressedSize,
		}
	}
	return key, refs, nil
}

// ReadSegment returns the records of one block. The slice may be shared
// with other readers through the decoded-block cache: do not modify it.
func (s *segmentStore) ReadSegment(ctx context.Context, topicID uint64, part int32, ref fsm.SegmentRef) ([]fsm.FetchedRecord, error) {
	key := blockKey{object: ref.ObjectKey, topicID: topicID, partition: part, base: ref.BaseOffset}
	if recs, ok := s.decoded.get(key); ok {
		return recs, nil
	}
	recs, err := s.reader.ReadBlock(ctx, ref.ObjectKey, s.entry(topicID, part, ref))
	if err != nil {
		return nil, err
	}
	out := make([]fsm.FetchedRecord, len(recs))
	for i, r := range recs {
		out[i] = fsm.FetchedRecord{Partition: part, Offset: r.Offset, Record: fsm.Record{Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}}
		if r.Value == nil {
			out[i].Value = []byte{}
		}
		if len(r.Headers) > 0 {
			hs := make([]fsm.Header, len(r.Headers))
			for k, h := range r.Headers {
				hs[k] = fsm.Header{Key: h.Key, Value: h.Value}
			}
			out[i].Headers = hs
		}
	}
	s.decoded.put(key, out, int64(ref.UncompressedSize))
	return out, nil
}

func (s *segmentStore) entry(topicID uint64, part int32, ref fsm.SegmentRef) s3seg.IndexEntry {
	return s3seg.IndexEntry{
		TopicID: topicID, Partition: part, Offset: ref.ByteOffset, Length: ref.ByteLength,
		BaseOffset: ref.BaseOffset, LastOffset: ref.LastOffset, RecordCount: ref.RecordCount,
		MinTimestamp: ref.MinTimestamp, MaxTimestamp: ref.MaxTimestamp,
		Compression: s3seg.Compression(ref.Compression), CRC: ref.CRC, UncompressedSize: ref.UncompressedSize,
	}
}

func (s *segmentStore) Prefetch(ctx context.Context, topicID uint64, part int32, ref fsm.SegmentRef) {
	s.reader.Prefetch(ctx, ref.ObjectKey, s.entry(topicID, part, ref))
}

func (s *segmentStore) ListObjects(ctx context.Context) ([]partition.ObjectInfo, error) {
	objs, err := s.store.List(ctx, s3seg.SegmentKeyPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]partition.ObjectInfo, len(objs))
	for i, o := range objs {
		out[i] = partition.ObjectInfo{Key: o.Key, Size: o.Size, LastModified: o.LastModified, CommitBy: s3seg.KeyCommitBy(o.Key)}
	}
	return out, nil
}

func (s *segmentStore) DeleteObject(ctx context.Context, key string) error {
	return s.store.Delete(ctx, key)
}
