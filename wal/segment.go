package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// segment is one segment file. The file handle is reference counted so that
// TruncateFront and Close can drop a segment while a Read, an Iterate or the
// syncer still uses it; the last release closes the file.
type segment struct {
	base uint64
	path string
	f    File
	refs atomic.Int32 // the segment list holds one reference

	size    int64 // bytes of valid data incl. header; guarded by WAL.mu
	entries []pos // guarded by WAL.idxMu for readers; appended under WAL.mu too
}

func newSegment(base uint64, path string, f File) *segment {
	s := &segment{base: base, path: path, f: f}
	s.refs.Store(1)
	return s
}

func (s *segment) acquire() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		_ = s.f.Close() // data was synced (or the instance has failed); nothing to report to
	}
}

func (s *segment) lastIndex() uint64 {
	if len(s.entries) == 0 {
		return 0
	}
	return s.entries[len(s.entries)-1].index
}

// createSegment makes a new, empty segment file named for base: the header
// goes to a temp file, which is fsynced, renamed into place, and the
// directory is fsynced. The returned handle is open for reading and
// appending. renamed reports whether the failure came at or after the rename,
// i.e. left the directory in an unknown state.
func createSegment(fsys FS, dir string, base uint64) (seg *segment, renamed bool, err error) {
	name := segmentName(base)
	path := filepath.Join(dir, name)
	tmp := path + tempSuffix
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("wal: create segment %s: %w", tmp, err)
	}
	cleanup := func() {
		_ = f.Close()
		_ = fsys.Remove(tmp)
	}
	if _, err := f.Write(encodeHeader(base)); err != nil {
		cleanup()
		return nil, false, fmt.Errorf("wal: write segment header %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		cleanup()
		return nil, false, fmt.Errorf("wal: fsync new segment %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		// Whether the rename happened is unknown; the caller treats the
		// directory as being in an unknown state.
		cleanup()
		return nil, true, fmt.Errorf("wal: rename %s: %w", tmp, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		_ = f.Close()
		return nil, true, fmt.Errorf("wal: fsync directory %s: %w", dir, err)
	}
	// Reopen under the final name, so that errors (and MemFS faults) name
	// the segment rather than the temp file.
	_ = f.Close()
	if f, err = fsys.OpenFile(path, os.O_RDWR|os.O_APPEND, 0); err != nil {
		return nil, true, fmt.Errorf("wal: reopen new segment: %w", err)
	}
	seg = newSegment(base, path, f)
	seg.size = headerSize
	return seg, true, nil
}
