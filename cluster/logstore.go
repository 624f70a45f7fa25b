package cluster

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// walSegmentSize is the size of one raft-wal segment file (preallocated).
// Compaction after a snapshot deletes whole segments, so the log's disk
// use is about TrailingLogs entries plus up to two segments (DESIGN.md,
// "Log store").
const walSegmentSize = 16 << 20

// walCommitBytes bounds the entry bytes of one raft-wal commit. raft-wal
// copies a whole StoreLogs call into one encoded buffer per entry and
// writes the call as one commit from a buffer that its segment writer
// keeps, at the size of the largest call rounded up to a power of two,
// until the segment is sealed (sealingFiler, logseal.go). A follower catching up gets up to MaxAppendEntries
// entries of up to the coalescer's 4 MiB in one call: at the 1 KiB
// saturated bench point a lagging follower held a 126 MB commit buffer.
// walLog stores a call in commits of at most this many bytes (an entry
// larger than that goes alone); each commit is fsynced, little next to
// writing 4 MiB. A commit's entries are counted with walEntryOverhead each
// for raft-wal's encoding and framing, and the bound leaves room for the
// commit frame, so a commit of several entries fits a 4 MiB buffer (a
// full coalescer entry, just over 4 MiB, goes alone in an 8 MiB one).
const (
	walCommitBytes   = 4<<20 - 64<<10
	walEntryOverhead = 64
)

// openBoltStore opens the Bolt file raft.db: Raft's stable store (current
// term, vote) and, in agents from before the raft-wal log store, the Raft
// log (moved out on first start, migrate.go). Every commit is fsynced
// (NoSync stays false). NoFreelistSync and the hashmap freelist cut the
// per-commit cost that profiles showed when Bolt still held the log.
func openBoltStore(path string) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{
		Path: path,
		BoltOptions: &bbolt.Options{
			Timeout:        5 * time.Second,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
}

// walLog is the Raft log store: hashicorp/raft-wal in DATA_DIR/raft/wal
// (segment files, one fsync per StoreLogs, whole segments deleted on
// compaction), reopened after a failed write, and distrusting what a
// failed write or clear may have left (logtrust.go).
//
// Why reopen: raft-wal v0.4.0 published an append's frames to its
// in-memory index before writing them (v0.4.1 rolls a failed append back),
// and a segment rotation that fails (no space for the next preallocated
// file) leaves the tail sealed in memory. After either, every later append
// fails although the disk is fine again, so a
// full disk would turn into a follower that never catches up (retryingLogs
// retries forever). Reopening rebuilds the state from the files: raft-wal's
// recovery keeps the tail up to its last intact commit frame. The entries
// of the failed call may or may not be there afterwards (the write can have
// landed before a failed fsync); they are untrusted until deleted.
//
// Locks: wmu (writes and the distrust state), then mu. Every operation
// on the WAL holds mu shared (raft-wal is safe for concurrent use);
// reopen holds it exclusively. Reads take only mu.
type walLog struct {
	dir  string
	hl   hclog.Logger
	vfs  *lazyDeleteFS
	deps walDeps

	wmu sync.Mutex // held by StoreLogs and DeleteRange
	// commits counts the raft-wal commits StoreLogs stored: progress
	// inside one call, which can span many (writeWatch).
	commits atomic.Uint64
	// untrusted: entries from this index on may not be durable or are
	// due for deletion (0: none). Reads hide them; written under wmu.
	untrusted atomic.Uint64
	// marked: the lowest untrusted index a record in the meta store may
	// hold (0: none can exist); recorded: the index it is known to hold
	// durably (0: not known). A write of the record that fails may still
	// have committed (wmu).
	marked, recorded uint64

	mu     sync.RWMutex
	w      *raftwal.WAL    // nil after a reopen that failed
	meta   types.MetaStore // w's meta store: raft-wal's Close leaves it open
	closed bool
}

// walDeps are what walLog writes through; tests inject failures.
type walDeps struct {
	vfs  types.VFS                                // nil: the OS
	meta func(*metadb.BoltMetaDB) types.MetaStore // nil: the Bolt meta store itself
}

// openWALLog opens the raft-wal log in dir over vfs (nil: the OS; tests
// inject failures).
func openWALLog(dir string, hl hclog.Logger, vfs types.VFS) (*walLog, error) {
	return openWALLogWith(dir, hl, walDeps{vfs: vfs})
}

// openWALLogWith opens the raft-wal log in dir over deps, then drops a
// tail an earlier run recorded as untrusted (loadUntrusted).
func openWALLogWith(dir string, hl hclog.Logger, deps walDeps) (*walLog, error) {
	vfs := deps.vfs
	if vfs == nil {
		vfs = fs.New()
	}
	l := &walLog{dir: dir, hl: hl, vfs: newLazyDeleteFS(vfs, hl), deps: deps}
	if err := syncSegmentsOnce(vfs, dir); err != nil {
		l.vfs.close()
		return nil, fmt.Errorf("cluster: open raft log (raft-wal %s): %w", dir, err)
	}
	if err := l.open(); err != nil {
		l.vfs.close()
		return nil, fmt.Errorf("cluster: open raft log (raft-wal %s): %w", dir, err)
	}
	if err := l.loadUntrusted(); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("cluster: open raft log (raft-wal %s): %w", dir, err)
	}
	return l, nil
}

// open opens the WAL into l.w and l.meta (mu held or l not shared yet).
func (l *walLog) open() error {
	bolt := &metadb.BoltMetaDB{}
	var meta types.MetaStore = bolt
	if l.deps.meta != nil {
		meta = l.deps.meta(bolt)
	}
	if err := finishInterruptedRoll(l.dir, meta, segment.NewFiler(l.dir, l.vfs), l.vfs, l.hl); err != nil {
		_ = meta.Close()
		return err
	}
	w, err := raftwal.Open(l.dir, raftwal.WithSegmentSize(walSegmentSize), raftwal.WithLogger(l.hl),
		raftwal.WithMetaStore(meta), raftwal.WithSegmentFiler(newSealingFiler(segment.NewFiler(l.dir, l.vfs), l.hl)))
	if err != nil {
		_ = meta.Close()
		return err
	}
	l.w, l.meta = w, meta
	return nil
}

// syncFailedFile, in the raft-wal directory, records that an fsync of
// syncSegments failed: the pages it covered may never reach the disk, and a
// later fsync would report success (DESIGN.md, "Restart").
const syncFailedFile = "sync-failed"

// errSegmentSync wraps a failed fsync of syncSegments (not a failure to
// list or open the files, which loses no page).
var errSegmentSync = errors.New("fsync failed")

// syncSegmentsOnce runs syncSegments unless an earlier start's fsync failed
// (ErrRaftLogSyncFailed); when an fsync fails, it records that first.
func syncSegmentsOnce(vfs types.VFS, dir string) error {
	marker := filepath.Join(dir, syncFailedFile)
	if b, err := os.ReadFile(marker); err == nil {
		return fmt.Errorf("%w (%s: %s). Entries this agent holds may never have reached the disk. "+
			"If the other agents of the cluster are healthy, move %s away: the agent rejoins as a new member and is re-replicated. "+
			"Do not do that on a single-agent cluster or when most agents report this (restore from the checkpoint instead); "+
			"delete the file only if the disk is known to hold every write",
			ErrRaftLogSyncFailed, marker, strings.TrimSpace(string(b)), filepath.Dir(dir))
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	err := syncSegments(vfs, dir)
	if err == nil || !errors.Is(err, errSegmentSync) {
		return err
	}
	if merr := writeSynced(marker, []byte(err.Error()+"\n")); merr != nil {
		return errors.Join(err, fmt.Errorf("cluster: record the failed fsync in %s: %w", marker, merr))
	}
	return fmt.Errorf("%w: %w", ErrRaftLogSyncFailed, err)
}

// writeSynced writes a small file and fsyncs it and its directory.
func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// syncSegments fsyncs every segment file and the directory when the agent
// opens its log. A process killed between a write and its fsync leaves the
// write in the page cache, where raft-wal's recovery reads it as part of
// the log; from then on Raft counts it (a follower acknowledges entries
// after it, the leader's write behind starts its durable index at the last
// one), so it must be on disk, not only in the page cache. Files with
// nothing dirty sync at once, so this costs little at start. The reopen
// after a failed write (same process) does not need it: that write's
// entries are untrusted (logtrust.go), and every other one was fsynced.
func syncSegments(vfs types.VFS, dir string) error {
	names, err := vfs.ListDir(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if filepath.Ext(name) != ".wal" {
			continue
		}
		f, err := vfs.OpenWriter(dir, name)
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("%w: %s: %w", errSegmentSync, name, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%w: %w", errSegmentSync, err)
	}
	return nil
}

// closeWAL closes l.w and its meta store (mu held).
func (l *walLog) closeWAL() error {
	if l.w == nil {
		return nil
	}
	err := errors.Join(l.w.Close(), l.meta.Close())
	l.w, l.meta = nil, nil
	return err
}

// errLogUnavailable: the last reopen after a failed write failed too.
var errLogUnavailable = errors.New("cluster: raft log store unavailable after a failed write (reopen failed)")

// with runs fn on the open WAL (mu held shared).
func (l *walLog) with(fn func(w *raftwal.WAL) error) error {
	l.mu.RLock()
	w := l.w
	if w == nil {
		l.mu.RUnlock()
		if err := l.reopen(); err != nil {
			return err
		}
		return l.with(fn)
	}
	defer l.mu.RUnlock()
	return fn(w)
}

// FirstIndex implements raft.LogStore.
func (l *walLog) FirstIndex() (uint64, error) {
	first, _, err := l.bounds()
	return first, err
}

// LastIndex implements raft.LogStore.
func (l *walLog) LastIndex() (uint64, error) {
	_, last, err := l.bounds()
	return last, err
}

// bounds are the first and last index of the trusted log (0, 0: empty).
// The untrusted index is read first: a settle that runs meanwhile deletes
// the tail before it forgets the index.
func (l *walLog) bounds() (first, last uint64, err error) {
	u := l.untrusted.Load()
	err = l.with(func(w *raftwal.WAL) error {
		first, last, err = walBounds(w)
		return err
	})
	if err == nil && u != 0 && last >= u {
		if first >= u {
			return 0, 0, nil
		}
		last = u - 1
	}
	return first, last, err
}

// walBounds are raft-wal's first and last index, untrusted ones included.
func walBounds(w *raftwal.WAL) (uint64, uint64, error) {
	first, err := w.FirstIndex()
	if err != nil {
		return 0, 0, err
	}
	last, err := w.LastIndex()
	return first, last, err
}

// GetLog implements raft.LogStore.
func (l *walLog) GetLog(index uint64, log *raft.Log) error {
	if u := l.untrusted.Load(); u != 0 && index >= u {
		return raft.ErrLogNotFound
	}
	return l.with(func(w *raftwal.WAL) error { return w.GetLog(index, log) })
}

// StoreLog implements raft.LogStore.
func (l *walLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore. After a failed write or clear it
// first deletes the untrusted tail (settle, from its first index or this
// call's, whichever is lower), so its entries are always written and
// fsynced anew. On failure the WAL is reopened (see the type's comment),
// the entries from this call's first index on are untrusted (distrust),
// and the error is returned; the caller retries or steps down.
func (l *walLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	index := logs[0].Index
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.with(func(w *raftwal.WAL) error {
		if u := l.untrusted.Load(); u != 0 {
			if err := l.settle(w, min(u, index)); err != nil {
				return err
			}
		}
		if err := dropBelowGap(w, index); err != nil {
			return err
		}
		return storeInCommits(w, logs, walCommitBytes, &l.commits)
	})
	if err != nil {
		return l.distrust(index, err)
	}
	return nil
}

// storeInCommits stores logs in raft-wal commits of at most maxBytes of
// entry data each (an entry larger than that alone). A failure after some
// commits leaves a durable prefix of the call: StoreLogs then distrusts
// the call from its first index, so none of it is visible and it is
// deleted before the retry, as after a failure of a single commit. A crash
// between commits leaves the same prefix a crash between two calls does;
// Raft counted none of it.
// commits counts the commits stored (writeWatch takes one as progress).
func storeInCommits(w *raftwal.WAL, logs []*raft.Log, maxBytes int, commits *atomic.Uint64) error {
	for len(logs) > 0 {
		n := commitLen(logs, maxBytes)
		if err := w.StoreLogs(logs[:n]); err != nil {
			return err
		}
		commits.Add(1)
		logs = logs[n:]
	}
	return nil
}

// dropBelowGap empties the log when index is past its last entry + 1.
// Raft appends past a gap only after installing a snapshot that covers it;
// it then clears the log itself, but ignores a failure of that clear (a
// full disk), and raft-wal would refuse every later append as
// non-monotonic, wedging the node even after a restart (Raft takes its
// last index from the snapshot). What is below the gap is covered by the
// snapshot.
func dropBelowGap(w *raftwal.WAL, index uint64) error {
	last, err := w.LastIndex()
	if err != nil || last == 0 || index <= last+1 {
		return err
	}
	first, err := w.FirstIndex()
	if err != nil {
		return err
	}
	return w.DeleteRange(first, last)
}

// reopen closes the WAL and opens it again from its files.
func (l *walLog) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	_ = l.closeWAL()
	if err := l.open(); err != nil {
		l.hl.Error("reopening the raft log after a failed write", "err", err)
		return fmt.Errorf("%w: %w", errLogUnavailable, err)
	}
	return nil
}

// IsMonotonic implements raft.MonotonicLogStore: raft-wal refuses gaps, so
// after installing a snapshot Raft must delete the whole log rather than
// append past a gap.
func (l *walLog) IsMonotonic() bool { return true }

// Close closes the WAL; it is idempotent.
func (l *walLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.closeWAL()
	l.vfs.close()
	return err
}

// lazyDeleteFS unlinks the segment files raft-wal deletes on its own
// goroutine. raft-wal deletes them — unlink plus a directory fsync each —
// while it holds its write lock, so compacting after a snapshot stalled
// appends by about 13 ms per 16 MiB segment (BenchmarkLogStore,
// deleterange-ms). Deferring the unlink is safe: the deletion's commit
// point is raft-wal's meta store, segment IDs are never reused, and on open
// raft-wal deletes any segment file its meta store does not list (a crash
// before the unlink). close unlinks what is still queued.
type lazyDeleteFS struct {
	types.VFS
	hl     hclog.Logger
	mu     sync.RWMutex // held shared while sending on ch, exclusively to close it
	closed bool
	ch     chan string
	done   chan struct{}
}

func newLazyDeleteFS(vfs types.VFS, hl hclog.Logger) *lazyDeleteFS {
	f := &lazyDeleteFS{VFS: vfs, hl: hl, ch: make(chan string, 256), done: make(chan struct{})}
	go f.run()
	return f
}

// Delete implements types.VFS: it queues the file (deleting it at once if
// the queue is full).
func (f *lazyDeleteFS) Delete(dir, name string) error {
	f.mu.RLock()
	if !f.closed {
		select {
		case f.ch <- filepath.Join(dir, name):
			f.mu.RUnlock()
			return nil
		default:
		}
	}
	f.mu.RUnlock()
	return f.VFS.Delete(dir, name)
}

func (f *lazyDeleteFS) run() {
	defer close(f.done)
	for path := range f.ch {
		if err := f.VFS.Delete(filepath.Dir(path), filepath.Base(path)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			f.hl.Warn("deleting a compacted raft log segment (deleted again on the next start)", "file", path, "err", err)
		}
	}
}

// close unlinks the queued files and stops the goroutine; idempotent.
func (f *lazyDeleteFS) close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
	f.mu.Unlock()
	<-f.done
}
