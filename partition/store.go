package partition

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

// Log is the subset of *wal.WAL the store uses. AppendAsync must not keep
// the entries' Data after it returns (the store reuses its buffer).
type Log interface {
	AppendAsync(entries ...wal.Entry) error
	Read(index uint64) ([]byte, error)
	ReadRange(index uint64, off, n int) ([]byte, error)
	Iterate(from uint64, fn func(index uint64, data []byte) error) error
	TruncateFront(index uint64) error
	LastIndex() uint64
}

// ErrNotInStore means the requested offset is not held locally (it was
// flushed and truncated, or never materialised here); read it from segments.
var ErrNotInStore = errors.New("partition: offset not in local store")

// entryRef locates one materialised batch in the WAL.
type entryRef struct {
	index uint64 // WAL index == Raft index of the AppendBatch(es) entry
	sub   int32  // position of the batch in its entry (AppendBatches)
	off   int32  // the batch's span in the entry (fsm.BatchSpan) ...
	n     int32  // ... of n bytes; 0: read and decode the whole entry
	base  int64
	count int32
	size  int32 // encoded record bytes
	ts    int64 // batch timestamp (unix ms), for flush age
}

func (e entryRef) end() int64 { return e.base + int64(e.count) }

type partLog struct {
	entries []entryRef // ascending by base offset
	bytes   int64      // sum of entry sizes
	notify  chan struct{}
}

func (p *partLog) next() int64 {
	if len(p.entries) == 0 {
		return -1
	}
	return p.entries[len(p.entries)-1].end()
}

// Store is the agent's local store of committed, unflushed record batches:
// the fsm.Sink over the WAL. It keeps an in-memory index partition → WAL
// entries and wakes long-poll waiters when a partition grows.
type Store struct {
	log    Log
	logger *slog.Logger

	mu     sync.RWMutex
	parts  map[fsm.PartitionKey]*partLog
	pins   map[int]uint64 // snapshot pins: id -> lowest WAL index pinned
	pinSeq int
	total  int64 // bytes indexed across partitions
	buf    []byte
	spans  []fsm.BatchSpan
}

var _ fsm.Sink = (*Store)(nil)

// OpenStore indexes every batch already in the log.
func OpenStore(log Log, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, logger: logger.With("component", "store"),
		parts: map[fsm.PartitionKey]*partLog{}, pins: map[int]uint64{}}
	err := log.Iterate(0, func(index uint64, data []byte) error {
		bs, spans, err := fsm.DecodeBatchSpans(data)
		if err != nil {
			return fmt.Errorf("wal entry %d: %w", index, err)
		}
		s.indexEntry(bs, spans, len(data))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("partition: index wal: %w", err)
	}
	return s, nil
}

func (s *Store) part(k fsm.PartitionKey) *partLog {
	p := s.parts[k]
	if p == nil {
		p = &partLog{notify: make(chan struct{})}
		s.parts[k] = p
	}
	return p
}

// indexEntry indexes the batches of one WAL entry of size bytes, with
// their spans when the entry has them (a multi-batch entry written since
// spans exist): such a batch is read alone. A batch of a multi-batch entry
// is counted as its records plus a fixed overhead.
func (s *Store) indexEntry(bs []*fsm.AppendedBatch, spans []fsm.BatchSpan, size int) {
	if len(bs) == 1 {
		s.index(bs[0], 0, fsm.BatchSpan{}, size)
		return
	}
	for i, b := range bs {
		var span fsm.BatchSpan
		if spans != nil {
			span = spans[i]
		}
		s.index(b, int32(i), span, len(b.Records)+batchOverhead)
	}
}

// maxKeptBuf is the largest encoding buffer Materialize keeps for the
// next entry.
const maxKeptBuf = 8 << 20

// batchOverhead approximates the encoded size of a batch's header.
const batchOverhead = 24

// index adds a batch to the in-memory index; s.mu must be held (or the store
// not yet shared).
func (s *Store) index(b *fsm.AppendedBatch, sub int32, span fsm.BatchSpan, size int) {
	p := s.part(fsm.PartitionKey{TopicID: b.TopicID, Partition: b.Partition})
	if n := p.next(); n >= 0 && b.BaseOffset < n {
		// Already indexed (replay of a batch we hold): keep the first copy.
		return
	}
	p.entries = append(p.entries, entryRef{index: b.Index, sub: sub, off: int32(span.Off), n: int32(span.Len),
		base: b.BaseOffset, count: b.Count, size: int32(size), ts: b.Timestamp})
	p.bytes += int64(size)
	s.total += int64(size)
	close(p.notify)
	p.notify = make(chan struct{})
}

// Materialize implements fsm.Sink: the batches of one Raft entry become one
// WAL entry at the entry's index. An entry at or below the WAL's last index
// is already held (or was flushed and truncated) and is ignored, which makes
// replay after a restart idempotent.
func (s *Store) Materialize(bs []*fsm.AppendedBatch) error {
	if len(bs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bs[0].Index <= s.log.LastIndex() {
		return nil
	}
	// The WAL copies the entry into its file before AppendAsync returns,
	// so the encoding buffer is reused, not copied per entry.
	s.buf, s.spans = fsm.EncodeBatchSpans(s.buf[:0], bs, s.spans[:0])
	data := s.buf
	if cap(s.buf) > maxKeptBuf {
		s.buf = nil // do not pin one huge entry's buffer
	}
	if err := s.log.AppendAsync(wal.Entry{Index: bs[0].Index, Data: data}); err != nil {
		return err
	}
	var spans []fsm.BatchSpan
	if len(s.spans) > 0 {
		spans = s.spans
	}
	s.indexEntry(bs, spans, len(data))
	return nil
}

// readBatch reads one indexed batch from the WAL: only its span when it
// has one (the span's own checksum verifies it), else the whole entry (the
// WAL verifies the entry's checksum).
func (s *Store) readBatch(e entryRef) (*fsm.AppendedBatch, error) {
	if e.n == 0 {
		bs, err := s.readEntry(e.index)
		if err != nil {
			return nil, err
		}
		return subBatch(bs, e)
	}
	data, err := s.log.ReadRange(e.index, int(e.off), int(e.n))
	if err != nil {
		return nil, err
	}
	b, err := fsm.DecodeBatchSpan(data)
	if err != nil {
		return nil, fmt.Errorf("partition: wal entry %d batch %d: %w", e.index, e.sub, err)
	}
	return b, nil
}

// readEntry reads and decodes every batch of one WAL entry.
func (s *Store) readEntry(index uint64) ([]*fsm.AppendedBatch, error) {
	data, err := s.log.Read(index)
	if err != nil {
		return nil, err
	}
	bs, err := fsm.DecodeBatches(data)
	if err != nil {
		return nil, fmt.Errorf("partition: wal entry %d: %w", index, err)
	}
	return bs, nil
}

// subBatch picks e's batch out of its decoded entry.
func subBatch(bs []*fsm.AppendedBatch, e entryRef) (*fsm.AppendedBatch, error) {
	if int(e.sub) >= len(bs) {
		return nil, fmt.Errorf("partition: wal entry %d holds %d batches, not %d", e.index, len(bs), e.sub+1)
	}
	return bs[e.sub], nil
}

type pinnedBatches struct {
	s    *Store
	id   int
	refs []entryRef
	once sync.Once
}

// SnapshotBatches implements fsm.Sink.
func (s *Store) SnapshotBatches(from map[fsm.PartitionKey]int64) (fsm.BatchSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var refs []entryRef
	for k, off := range from {
		p := s.parts[k]
		if p == nil {
			continue
		}
		for _, e := range p.entries {
			if e.end() > off {
				refs = append(refs, e)
			}
		}
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].index != refs[j].index {
			return refs[i].index < refs[j].index
		}
		return refs[i].sub < refs[j].sub
	})
	s.pinSeq++
	id := s.pinSeq
	low := s.log.LastIndex() + 1
	if len(refs) > 0 {
		low = refs[0].index
	}
	s.pins[id] = low
	return &pinnedBatches{s: s, id: id, refs: refs}, nil
}

// Each hands fn the pinned batches in entry order. Pinned batches of one
// WAL entry (refs are sorted by entry) are read with one read of the
// entry, or one read of the batch's span when it is the entry's only
// pinned batch.
func (p *pinnedBatches) Each(fn func(*fsm.AppendedBatch) error) error {
	for i := 0; i < len(p.refs); {
		j := i + 1
		for j < len(p.refs) && p.refs[j].index == p.refs[i].index {
			j++
		}
		if err := p.eachOfEntry(p.refs[i:j], fn); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// eachOfEntry hands fn the pinned batches refs of one WAL entry.
func (p *pinnedBatches) eachOfEntry(refs []entryRef, fn func(*fsm.AppendedBatch) error) error {
	var bs []*fsm.AppendedBatch
	if len(refs) > 1 || refs[0].n == 0 {
		var err error
		if bs, err = p.s.readEntry(refs[0].index); err != nil {
			return fmt.Errorf("read pinned wal entry %d: %w", refs[0].index, err)
		}
	}
	for _, e := range refs {
		var b *fsm.AppendedBatch
		var err error
		if bs != nil {
			b, err = subBatch(bs, e)
		} else {
			b, err = p.s.readBatch(e)
		}
		if err != nil {
			return fmt.Errorf("read pinned wal entry %d: %w", e.index, err)
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (p *pinnedBatches) Release() {
	p.once.Do(func() {
		p.s.mu.Lock()
		delete(p.s.pins, p.id)
		p.s.mu.Unlock()
	})
}

// Wait returns a channel closed when the partition's local log next grows.
func (s *Store) Wait(k fsm.PartitionKey) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part(k).notify
}

// Read returns up to maxRecords records of partition k starting at offset
// (and at least one record if any is available, even past maxBytes). It
// returns ErrNotInStore when offset is not held locally.
func (s *Store) Read(k fsm.PartitionKey, offset int64, maxRecords, maxBytes int) ([]fsm.FetchedRecord, error) {
	s.mu.RLock()
	p := s.parts[k]
	var refs []entryRef
	if p != nil {
		i := sort.Search(len(p.entries), func(i int) bool { return p.entries[i].end() > offset })
		if i < len(p.entries) && p.entries[i].base <= offset {
			// Collect consecutive entries that can satisfy the request.
			n := 0
			for j := i; j < len(p.entries) && n < maxRecords; j++ {
				refs = append(refs, p.entries[j])
				n += int(p.entries[j].count)
			}
		}
	}
	s.mu.RUnlock()
	if len(refs) == 0 {
		return nil, ErrNotInStore
	}
	// One allocation for the answer and one record slice reused for every
	// batch, instead of growing the answer and allocating per batch.
	out := make([]fsm.FetchedRecord, 0, readCap(refs, offset, maxRecords, maxBytes))
	var recs []fsm.Record
	bytes := 0
	want := offset
	for _, e := range refs {
		if e.base != want && len(out) > 0 {
			break // not contiguous; let the caller continue from want
		}
		b, err := s.readBatch(e)
		if errors.Is(err, fsm.ErrDecode) {
			return nil, err
		}
		if err != nil {
			if len(out) > 0 {
				break
			}
			return nil, ErrNotInStore
		}
		recs, err = fsm.AppendDecodedRecords(recs[:0], b.Records, int(b.Count))
		if err != nil {
			return nil, fmt.Errorf("partition: wal entry %d: %w", e.index, err)
		}
		for i := range recs {
			off := b.BaseOffset + int64(i)
			if off < want {
				continue
			}
			if len(out) >= maxRecords || (len(out) > 0 && maxBytes > 0 && bytes+recs[i].Size() > maxBytes) {
				return out, nil
			}
			out = append(out, fsm.FetchedRecord{Partition: k.Partition, Offset: off, Record: recs[i]})
			bytes += recs[i].Size()
			want = off + 1
		}
	}
	return out, nil
}

// readCap estimates how many records Read returns from refs starting at
// offset: what the entries hold from there, at most maxRecords, and when
// the entries hold more than maxBytes, the share of the records that fits
// (the answer grows past it if the records are smaller than average).
func readCap(refs []entryRef, offset int64, maxRecords, maxBytes int) int {
	n, size := 0, int64(0)
	for _, e := range refs {
		n += int(e.count)
		size += int64(e.size)
	}
	if len(refs) > 0 && offset > refs[0].base {
		n -= int(offset - refs[0].base)
	}
	if maxBytes > 0 && size > int64(maxBytes) {
		n = int(int64(n)*int64(maxBytes)/size) + 1
	}
	return max(0, min(n, maxRecords))
}

// Unflushed describes the locally held records of one partition at or above
// a flushed offset.
type Unflushed struct {
	Bytes    int64
	OldestTs int64 // batch timestamp of the oldest unflushed batch; 0 if none
	End      int64 // end offset (exclusive) of what is held locally
}

// Unflushed reports what the store holds for k at or above flushed.
func (s *Store) Unflushed(k fsm.PartitionKey, flushed int64) Unflushed {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var u Unflushed
	p := s.parts[k]
	if p == nil {
		return u
	}
	for _, e := range p.entries {
		if e.end() <= flushed {
			continue
		}
		if u.OldestTs == 0 {
			u.OldestTs = e.ts
		}
		u.Bytes += int64(e.size)
		u.End = e.end()
	}
	return u
}

// Bytes is the total size of batches currently indexed (unflushed plus not
// yet pruned).
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.total
}

// PruneState is what Prune needs of the metadata, read in this order:
// LastApplied first, then Flushed and Topics.
type PruneState struct {
	// LastApplied is the metadata's Raft index.
	LastApplied uint64
	// Flushed maps every partition of the metadata to its flushed offset.
	Flushed map[fsm.PartitionKey]int64
	// Topics holds the IDs of every topic of the metadata.
	Topics map[uint64]bool
}

// deleted reports whether partition k is gone for good: not in the
// metadata, and its topic neither (a topic ID is the Raft index of its
// CreateTopic and is never reused) although the metadata has applied that
// index. A partition missing from a topic the metadata has is not deleted:
// partitions are only ever removed with their topic, so it was added later
// (CreatePartitions) and the metadata, still replaying the log after a
// restart, does not know it yet. A topic whose ID is above LastApplied is
// likewise merely not created yet.
func (st PruneState) deleted(k fsm.PartitionKey) bool {
	if _, live := st.Flushed[k]; live {
		return false
	}
	return k.TopicID <= st.LastApplied && !st.Topics[k.TopicID]
}

// Prune drops index entries of flushed records and of deleted partitions
// (PruneState.deleted), then truncates the WAL below the lowest entry still
// needed (or pinned by a snapshot). The batches of a partition the metadata
// does not know yet stay whole: replay cannot bring them back, since
// Materialize ignores WAL indexes it already holds.
func (s *Store) Prune(st PruneState) error {
	s.mu.Lock()
	low := s.log.LastIndex() + 1
	for k, p := range s.parts {
		if st.deleted(k) {
			s.total -= p.bytes
			close(p.notify)
			delete(s.parts, k)
			continue
		}
		f, live := st.Flushed[k]
		if !live {
			f = -1 // not known yet: keep every entry
		}
		i := 0
		for i < len(p.entries) && p.entries[i].end() <= f {
			p.bytes -= int64(p.entries[i].size)
			s.total -= int64(p.entries[i].size)
			i++
		}
		if i > 0 {
			p.entries = append(p.entries[:0:0], p.entries[i:]...)
		}
		if len(p.entries) > 0 && p.entries[0].index < low {
			low = p.entries[0].index
		}
	}
	for _, pin := range s.pins {
		if pin < low {
			low = pin
		}
	}
	s.mu.Unlock()
	return s.log.TruncateFront(low)
}
