package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft-wal/types"
)

// sealingFiler is raft-wal's segment filer whose segment writers let go of
// their memory once their segment is sealed (DESIGN.md, "Log store").
//
// raft-wal v0.4.1's segment writer keeps a commit buffer the size of its
// largest commit rounded up to a power of two, and when the segment fills
// up raft-wal keeps that same writer as the sealed segment's reader until
// compaction deletes the segment. At the 1 KiB saturated bench point the
// sealed segments held 57–181 MB of commit buffers per agent. A reopened
// log reads sealed segments through Open, a reader without a buffer;
// sealingWriter makes the running log look like that: once its segment is
// sealed it opens the file for reading through the inner filer's Open and
// closes the writer (its buffer, in-memory index and file handle go).
type sealingFiler struct {
	types.SegmentFiler
	hl hclog.Logger
}

func newSealingFiler(inner types.SegmentFiler, hl hclog.Logger) *sealingFiler {
	return &sealingFiler{SegmentFiler: inner, hl: hl}
}

// Create implements types.SegmentFiler.
func (f *sealingFiler) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.Create(info)
	if err != nil {
		return nil, err
	}
	return f.wrap(info, w), nil
}

// RecoverTail implements types.SegmentFiler (errors unchanged: raft-wal
// looks for os.ErrNotExist).
func (f *sealingFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.RecoverTail(info)
	if err != nil {
		return nil, err
	}
	return f.wrap(info, w), nil
}

func (f *sealingFiler) wrap(info types.SegmentInfo, w types.SegmentWriter) *sealingWriter {
	return &sealingWriter{open: f.SegmentFiler.Open, hl: f.hl, info: info, w: w, cur: w}
}

// sealingWriter is a segment writer that, once its segment is sealed
// (Sealed reports it after the append that filled it, or ForceSeal on a
// truncation), serves reads from a reader of the sealed file and closes
// the writer. Append, Sealed, ForceSeal and LastIndex answer as the writer
// would: raft-wal calls LastIndex when it records the seal, keeps the
// wrapper as the sealed segment's reader, and closes it when compaction or
// a truncation deletes the segment or the log closes.
//
// raft-wal calls Append, Sealed and ForceSeal one at a time under its
// write lock; GetLog, LastIndex and Close may come from any goroutine at
// any time (reads of sealed segments take no lock in raft-wal). mu is held
// shared while reading through cur and exclusively to swap or close it,
// so no read uses a closed file. mu is a leaf lock.
type sealingWriter struct {
	open func(types.SegmentInfo) (types.SegmentReader, error)
	hl   hclog.Logger
	info types.SegmentInfo

	// Write side (raft-wal's write lock): the swap is done or was tried.
	swapped    bool
	indexStart uint64

	mu     sync.RWMutex
	w      types.SegmentWriter // nil once swapped
	cur    types.SegmentReader // w, then the sealed file's reader (nil: sealed empty)
	last   uint64              // LastIndex once swapped
	closed bool
}

// writer is the segment writer, nil once swapped.
func (s *sealingWriter) writer() types.SegmentWriter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.w
}

// Append implements types.SegmentWriter.
func (s *sealingWriter) Append(entries []types.LogEntry) error {
	w := s.writer()
	if w == nil {
		if len(entries) == 0 {
			return nil
		}
		return types.ErrSealed
	}
	return w.Append(entries)
}

// Sealed implements types.SegmentWriter; the first time it reports the
// segment sealed, the writer is swapped for a reader.
func (s *sealingWriter) Sealed() (bool, uint64, error) {
	if s.swapped {
		return true, s.indexStart, nil
	}
	sealed, indexStart, err := s.w.Sealed()
	if err != nil || !sealed {
		return sealed, indexStart, err
	}
	s.swap(indexStart)
	return true, indexStart, nil
}

// ForceSeal implements types.SegmentWriter (truncations seal the tail
// with it); the writer is then swapped for a reader.
func (s *sealingWriter) ForceSeal() (uint64, error) {
	if s.swapped {
		return s.indexStart, nil
	}
	indexStart, err := s.w.ForceSeal()
	if err != nil {
		return 0, err
	}
	s.swap(indexStart)
	return indexStart, nil
}

// swap opens the sealed segment for reading and closes the writer (write
// side, once). If the file cannot be opened the writer stays and keeps
// serving reads: the append that sealed the segment has succeeded.
func (s *sealingWriter) swap(indexStart uint64) {
	s.swapped, s.indexStart = true, indexStart
	w := s.w
	last := w.LastIndex()
	var r types.SegmentReader // stays nil for a segment without entries (raft-wal
	// refuses to seal one; a reader of it would have no upper bound)
	if last >= s.info.BaseIndex {
		info := s.info
		info.IndexStart, info.MaxIndex, info.SealTime = indexStart, last, time.Now()
		var err error
		if r, err = s.open(info); err != nil {
			s.hl.Warn("cannot reopen a sealed raft log segment for reading; its writer and commit buffer stay until the segment is deleted",
				"segment", s.info.ID, "base", s.info.BaseIndex, "err", err)
			return
		}
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.w, s.cur, s.last = nil, r, last
	}
	s.mu.Unlock()
	if closed {
		if r != nil {
			_ = r.Close()
		}
		return
	}
	if err := w.Close(); err != nil {
		s.hl.Warn("closing a sealed raft log segment's writer", "segment", s.info.ID, "err", err)
	}
}

// released reports whether the writer was swapped for a reader.
func (s *sealingWriter) released() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.w == nil
}

// LastIndex implements types.SegmentWriter.
func (s *sealingWriter) LastIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.w != nil {
		return s.w.LastIndex()
	}
	return s.last
}

// GetLog implements types.SegmentReader.
func (s *sealingWriter) GetLog(idx uint64) (*types.PooledBuffer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur == nil {
		return nil, types.ErrNotFound
	}
	return s.cur.GetLog(idx)
}

// Close implements io.Closer: it closes the writer or, once swapped, the
// reader; it is idempotent.
func (s *sealingWriter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.cur == nil {
		return nil
	}
	return s.cur.Close()
}
