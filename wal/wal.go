package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSegmentMaxBytes is the segment size used when
// Options.SegmentMaxBytes is 0.
const DefaultSegmentMaxBytes = 16 << 20

// iterateChunk is the most bytes Iterate reads with one ReadAt (one frame
// may be larger).
const iterateChunk = 1 << 20

// Entry is one log entry. Index must be > 0 and strictly greater than the
// index of every entry appended before it; Data is opaque.
type Entry struct {
	Index uint64
	Data  []byte
}

// Options configures Open.
type Options struct {
	// Dir holds the segment files; it is created if missing. The WAL owns the
	// directory: no other process may write to it while the WAL is open.
	Dir string
	// FS is the filesystem; nil means OSFS.
	FS FS
	// SegmentMaxBytes: a new segment file is started when the next frame
	// would take the active one past this size (a single larger entry gets a
	// segment of its own). 0 means DefaultSegmentMaxBytes.
	SegmentMaxBytes int64
	// SyncInterval is the group-commit window: the longest extra time the
	// syncer waits, after a write arrives, to gather more writes into the
	// same fsync (WAL_SYNC_MS). 0 means fsync as soon as the previous fsync
	// has finished.
	SyncInterval time.Duration
	// Logger receives WARN on torn-tail repair and ERROR when the instance
	// fails; nil discards.
	Logger *slog.Logger
	// Registerer receives this instance's collectors; nil means no metrics.
	Registerer prometheus.Registerer
}

// Stats is a snapshot of the WAL's size and progress.
type Stats struct {
	Entries    int64  // entries retained
	Bytes      int64  // bytes of segment files retained (headers included)
	Segments   int    // segment files
	FirstIndex uint64 // 0 when empty
	LastIndex  uint64 // last index written (synced or not); 0 when empty
	LastSynced uint64 // every entry with an index <= LastSynced is durable
}

// WAL is a segmented write-ahead log. It is safe for concurrent use: writes
// are serialised by one writer lock, fsyncs run without it (group commit),
// and reads run concurrently with both.
//
// Lock order (outer first): truncMu, mu, fsyncMu, idxMu, syncMu. idxMu and syncMu
// are never held together. During an fsync only fsyncMu is held, plus mu
// during a segment roll or creation.
type WAL struct {
	fs       FS
	dir      string
	maxSeg   int64
	interval time.Duration
	log      *slog.Logger
	met      *metrics

	// mu is the writer lock: Append, AppendAsync, TruncateFront, segment
	// rolls, Close, and the syncer's snapshot of what to sync.
	mu       sync.Mutex
	active   *segment // last segment, written by appends; nil when there is none
	buf      []byte   // encode buffer
	posBuf   []pos
	closed   bool
	writeSeq atomic.Uint64 // number of completed writes; written under mu

	lastIndex atomic.Uint64 // written under mu
	entries   atomic.Int64
	bytes     atomic.Int64
	isClosed  atomic.Bool

	// idxMu guards segs and every segment's entries for readers.
	idxMu sync.RWMutex
	segs  []*segment

	// fsyncMu serialises segment fsyncs (see syncSegment).
	fsyncMu sync.Mutex

	// truncMu serialises TruncateFront, and Close after it; it guards
	// unremoved, the files of dropped segments still to be removed, oldest
	// first (their bytes still count in bytes). It is taken before mu.
	truncMu   sync.Mutex
	unremoved []droppedFile
	closing   atomic.Bool // set by Close before it waits for truncMu: removals stop

	// syncMu guards the durability state below.
	syncMu      sync.Mutex
	syncedSeq   uint64
	syncedIndex uint64
	fatal       error // set once; the instance refuses writes afterwards
	shut        bool  // Close has finished its final sync
	notify      chan struct{}

	kick chan struct{} // wakes the syncer; capacity 1
	done chan struct{} // closed by Close to stop the syncer
	wg   sync.WaitGroup

	closeOnce sync.Once
	repaired  int
}

// Open opens (or creates) the WAL in opts.Dir: it scans every segment,
// rebuilds the in-memory index, repairs a torn tail of the last segment
// (keeping the cut bytes in a ".torn" side file), and fails with an error
// wrapping ErrCorrupt on any other damage. It then starts the background
// syncer, which Close stops.
func Open(opts Options) (*WAL, error) {
	if opts.Dir == "" {
		return nil, errors.New("wal: Options.Dir is empty")
	}
	if opts.SegmentMaxBytes < 0 || opts.SyncInterval < 0 {
		return nil, errors.New("wal: negative SegmentMaxBytes or SyncInterval")
	}
	w := &WAL{
		fs:       opts.FS,
		dir:      filepath.Clean(opts.Dir),
		maxSeg:   opts.SegmentMaxBytes,
		interval: opts.SyncInterval,
		log:      opts.Logger,
		notify:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if w.fs == nil {
		w.fs = OSFS{}
	}
	if w.maxSeg == 0 {
		w.maxSeg = DefaultSegmentMaxBytes
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "wal", "dir", w.dir)
	start := time.Now()
	if err := w.load(); err != nil {
		w.releaseSegments()
		return nil, err
	}
	met, err := newMetrics(opts.Registerer, w)
	if err != nil {
		w.releaseSegments()
		return nil, err
	}
	w.met = met
	w.met.repaired(w.repaired)
	w.wg.Add(1)
	go w.syncLoop()
	w.log.Debug("opened", "segments", len(w.segs), "first", w.FirstIndex(), "last", w.LastIndex(),
		"entries", w.entries.Load(), "elapsed", time.Since(start))
	return w, nil
}

// load scans the directory and builds the segment list and index: it lists
// the segment files (creating the directory if missing), then loads each
// segment in order and makes the last one active.
func (w *WAL) load() error {
	names, err := w.listDir()
	if err != nil {
		return err
	}
	bases, err := w.segmentBases(names)
	if err != nil {
		return err
	}
	var buf []byte
	var prevLast uint64
	for i, base := range bases {
		prevLast, err = w.loadSegment(base, i == len(bases)-1, prevLast, &buf)
		if err != nil {
			return err
		}
	}
	return w.activateLast(prevLast)
}

// listDir lists the WAL directory, creating it (and fsyncing its parent)
// when it does not exist.
func (w *WAL) listDir() ([]string, error) {
	names, err := w.fs.ReadDir(w.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := w.fs.MkdirAll(w.dir, 0o755); err != nil {
			return nil, fmt.Errorf("wal: create %s: %w", w.dir, err)
		}
		if err := w.fs.SyncDir(filepath.Dir(w.dir)); err != nil {
			return nil, fmt.Errorf("wal: fsync parent of %s: %w", w.dir, err)
		}
		names, err = w.fs.ReadDir(w.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", w.dir, err)
	}
	return names, nil
}

// segmentBases returns the base indexes of the segment files among names,
// sorted. A segment creation that never reached its rename left a temp
// file: it is removed (and the removal made durable).
func (w *WAL) segmentBases(names []string) ([]uint64, error) {
	var bases []uint64
	removedTemp := false
	for _, name := range names {
		if strings.HasSuffix(name, tempSuffix) {
			if _, ok := parseSegmentName(strings.TrimSuffix(name, tempSuffix)); ok {
				if err := w.fs.Remove(filepath.Join(w.dir, name)); err != nil {
					return nil, fmt.Errorf("wal: remove leftover %s: %w", name, err)
				}
				removedTemp = true
				continue
			}
		}
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		}
	}
	if removedTemp {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return nil, fmt.Errorf("wal: fsync directory %s: %w", w.dir, err)
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// loadSegment opens the segment starting at base (the last one for
// appending), scans it into the index and returns the last index so far.
// Only the last segment may have a torn tail, which is repaired; any other
// damage, a header that contradicts the file name, or an overlap with the
// previous segment (ending at prevLast) is ErrCorrupt. buf is reused
// across segments.
func (w *WAL) loadSegment(base uint64, last bool, prevLast uint64, buf *[]byte) (uint64, error) {
	path := filepath.Join(w.dir, segmentName(base))
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR | os.O_APPEND
	}
	f, err := w.fs.OpenFile(path, flag, 0)
	if err != nil {
		return 0, fmt.Errorf("wal: open segment: %w", err)
	}
	seg := newSegment(base, path, f)
	w.segs = append(w.segs, seg) // released by Open on failure
	data, err := readSegment(f, path, buf)
	if err != nil {
		return 0, err
	}
	sc, err := scanSegment(path, data, last)
	if err != nil {
		return 0, err
	}
	if sc.base != base {
		return 0, corruptf(path, 8, "header base index %d does not match the file name", sc.base)
	}
	if base <= prevLast {
		return 0, corruptf(path, 0, "segment base %d overlaps the previous segment, which ends at index %d", base, prevLast)
	}
	if sc.torn {
		if err := w.repairTail(seg, data[sc.end:], sc.end, sc.reason); err != nil {
			return 0, err
		}
	}
	seg.entries = sc.entries
	seg.size = sc.end
	if l := seg.lastIndex(); l != 0 {
		prevLast = l
	}
	w.entries.Add(int64(len(sc.entries)))
	w.bytes.Add(sc.end)
	return prevLast, nil
}

// readSegment reads the whole file into *buf (grown when too small).
func readSegment(f File, path string, buf *[]byte) ([]byte, error) {
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("wal: stat segment %s: %w", path, err)
	}
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	data := (*buf)[:size]
	if n, err := f.ReadAt(data, 0); int64(n) < size {
		return nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	return data, nil
}

// activateLast makes the last segment the active one and everything up to
// lastIndex synced. Whatever the previous process wrote may still be only
// in the page cache; it is fsynced first so that LastSynced is true.
func (w *WAL) activateLast(lastIndex uint64) error {
	if len(w.segs) > 0 {
		w.active = w.segs[len(w.segs)-1]
		if err := w.active.f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync segment %s: %w", w.active.path, err)
		}
	}
	w.lastIndex.Store(lastIndex)
	w.syncedIndex = lastIndex
	return nil
}

// repairTail cuts a torn tail off the last segment, keeping the removed bytes
// in a side file next to it.
func (w *WAL) repairTail(seg *segment, tail []byte, end int64, reason string) error {
	side := seg.path + tornSuffix
	var f File
	var err error
	for i := 1; ; i++ {
		f, err = w.fs.OpenFile(side, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			break
		}
		side = fmt.Sprintf("%s%s.%d", seg.path, tornSuffix, i)
	}
	if err != nil {
		return fmt.Errorf("wal: create torn-tail copy for %s: %w", seg.path, err)
	}
	if _, err := f.Write(tail); err != nil {
		_ = f.Close()
		return fmt.Errorf("wal: write %s: %w", side, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("wal: fsync %s: %w", side, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", side, err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fmt.Errorf("wal: fsync directory %s: %w", w.dir, err)
	}
	if err := seg.f.Truncate(end); err != nil {
		return fmt.Errorf("wal: truncate torn tail of %s: %w", seg.path, err)
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", seg.path, err)
	}
	w.repaired++
	w.log.Warn("repaired torn tail of the last segment", "file", seg.path, "offset", end,
		"bytes_removed", len(tail), "reason", reason, "copy", side)
	return nil
}

// Append writes entries and returns once they are durable. Concurrent
// callers share fsyncs (group commit). Indexes must be strictly increasing
// across calls (gaps are allowed), otherwise nothing is written and the
// error wraps ErrOutOfOrder.
//
// A nil error means every entry is durable. On an error the entries may
// still be in the log: if ctx ends while waiting for the fsync they are
// written and normally become durable; if a write fails after a segment roll
// a prefix of them is written. LastIndex tells what was written.
func (w *WAL) Append(ctx context.Context, entries ...Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seq, err := w.write(entries)
	if err != nil {
		return err
	}
	return w.waitSynced(ctx, seq)
}

// AppendAsync writes entries without waiting for an fsync. They are visible
// to Read and Iterate at once and become durable within the group-commit
// cadence; Sync waits for that. It writes the entries' Data to the
// segment file before it returns and keeps no reference to it: callers may
// reuse the buffer.
func (w *WAL) AppendAsync(entries ...Entry) error {
	_, err := w.write(entries)
	return err
}

// Sync returns once everything written before the call is durable.
func (w *WAL) Sync(ctx context.Context) error {
	if w.isClosed.Load() {
		return ErrClosed
	}
	seq := w.writeSeq.Load()
	w.wakeSyncer()
	return w.waitSynced(ctx, seq)
}

// write encodes and writes entries under the writer lock and returns the
// write sequence number that must be synced for them to be durable.
func (w *WAL) write(entries []Entry) (seq uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if err := w.failure(); err != nil {
		return 0, err
	}
	last := w.lastIndex.Load()
	for _, e := range entries {
		if e.Index <= last {
			return 0, fmt.Errorf("%w: index %d is not greater than %d", ErrOutOfOrder, e.Index, last)
		}
		if len(e.Data) > MaxEntrySize {
			return 0, fmt.Errorf("%w: entry %d has %d bytes (max %d)", ErrEntryTooLarge, e.Index, len(e.Data), MaxEntrySize)
		}
		last = e.Index
	}
	wrote := false
	defer func() {
		if wrote {
			w.wakeSyncer()
		}
	}()
	for start := 0; start < len(entries); {
		if err := w.ensureActive(entries[start]); err != nil {
			return 0, err
		}
		a := w.active
		buf, ps := w.buf[:0], w.posBuf[:0]
		size := a.size
		end := start
		for ; end < len(entries); end++ {
			e := entries[end]
			fl := frameSize(len(e.Data))
			if end > start && size+fl > w.maxSeg {
				break
			}
			ps = append(ps, pos{index: e.Index, off: size, n: uint32(len(e.Data))})
			buf = appendFrame(buf, e.Index, e.Data)
			size += fl
		}
		n, werr := a.f.Write(buf)
		if werr == nil && n != len(buf) {
			werr = io.ErrShortWrite
		}
		if werr != nil {
			// Cut off whatever part of the frames reached the file so the
			// segment stays a clean sequence of frames.
			if terr := a.f.Truncate(a.size); terr != nil {
				return 0, w.fail(fmt.Errorf("%w: write %s: %w; rolling back the partial write: %w", ErrFailed, a.path, werr, terr))
			}
			return 0, fmt.Errorf("wal: write %s: %w", a.path, werr)
		}
		w.idxMu.Lock()
		a.entries = append(a.entries, ps...)
		w.idxMu.Unlock()
		a.size = size
		w.lastIndex.Store(entries[end-1].Index)
		w.entries.Add(int64(end - start))
		w.bytes.Add(int64(len(buf)))
		w.met.appended(end - start)
		seq = w.writeSeq.Add(1)
		wrote = true
		if cap(buf) > 4<<20 {
			buf, ps = nil, nil // do not pin a huge batch's buffer
		}
		w.buf, w.posBuf = buf, ps
		start = end
	}
	return seq, nil
}

// ensureActive makes sure the active segment can take e next: it creates the
// first segment, rolls a full one, or replaces an empty active segment whose
// name does not match e.Index (a non-empty segment is always named by its
// first entry). Called with mu held.
func (w *WAL) ensureActive(e Entry) error {
	a := w.active
	switch {
	case a == nil:
	case len(a.entries) == 0 && a.base != e.Index:
		if err := w.dropEmptyActive(); err != nil {
			return err
		}
	case len(a.entries) > 0 && a.size+frameSize(len(e.Data)) > w.maxSeg:
		// Everything in the old segment must be durable before a newer
		// segment exists: only the last segment may have a torn tail.
		if err := w.syncSegment(a, w.writeSeq.Load(), w.lastIndex.Load()); err != nil {
			return err
		}
	default:
		return nil
	}
	seg, renamed, err := createSegment(w.fs, w.dir, e.Index)
	if err != nil {
		if renamed {
			return w.fail(fmt.Errorf("%w: %w", ErrFailed, err))
		}
		return err
	}
	w.idxMu.Lock()
	w.segs = append(w.segs, seg)
	w.idxMu.Unlock()
	w.active = seg
	w.bytes.Add(seg.size)
	return nil
}

// dropEmptyActive removes the active segment, which holds no entries.
// Called with mu held.
func (w *WAL) dropEmptyActive() error {
	a := w.active
	if err := w.fs.Remove(a.path); err != nil {
		return fmt.Errorf("wal: remove empty segment: %w", err)
	}
	w.idxMu.Lock()
	w.segs = w.segs[:len(w.segs)-1]
	w.idxMu.Unlock()
	w.active = nil
	w.bytes.Add(-a.size)
	a.release()
	if err := w.fs.SyncDir(w.dir); err != nil {
		return w.fail(fmt.Errorf("%w: fsync directory %s: %w", ErrFailed, w.dir, err))
	}
	return nil
}

// syncSegment fsyncs s and then records writes up to seq (entries up to
// idx) as durable. Segment fsyncs are serialised, and none runs once one has
// failed: of two concurrent fsyncs of one file the kernel may report a
// writeback error to only one, and the other would claim durability for
// lost data.
func (w *WAL) syncSegment(s *segment, seq, idx uint64) error {
	w.fsyncMu.Lock()
	defer w.fsyncMu.Unlock()
	if err := w.failure(); err != nil {
		return err
	}
	start := time.Now()
	err := s.f.Sync()
	w.met.observeFsync(time.Since(start))
	if err != nil {
		return w.fail(fmt.Errorf("%w: fsync %s: %w", ErrFailed, s.path, err))
	}
	w.markSynced(seq, idx)
	return nil
}

// wakeSyncer nudges the syncer without blocking.
func (w *WAL) wakeSyncer() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// syncLoop is the group-commit syncer: whenever there are unsynced writes it
// waits up to SyncInterval for more, then fsyncs the active segment, covering
// every write that completed before the fsync started.
func (w *WAL) syncLoop() {
	defer w.wg.Done()
	var timer *time.Timer
	for {
		if !w.pending() {
			select {
			case <-w.kick:
				continue
			case <-w.done:
				return
			}
		}
		if w.interval > 0 {
			if timer == nil {
				timer = time.NewTimer(w.interval)
			} else {
				timer.Reset(w.interval)
			}
			select {
			case <-timer.C:
			case <-w.done:
				timer.Stop()
				return
			}
		}
		if !w.syncOnce() {
			// The instance has failed; wait for Close.
			<-w.done
			return
		}
	}
}

// pending reports whether some completed write is not yet known durable.
func (w *WAL) pending() bool {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	return w.fatal == nil && w.writeSeq.Load() > w.syncedSeq
}

// syncOnce fsyncs the active segment once. It returns false if the instance
// has failed.
func (w *WAL) syncOnce() bool {
	w.mu.Lock()
	a, seq, idx := w.active, w.writeSeq.Load(), w.lastIndex.Load()
	if a != nil {
		a.acquire()
	}
	w.mu.Unlock()
	if a == nil {
		// No segment: every earlier write went to a segment that a roll
		// already synced.
		w.markSynced(seq, idx)
		return true
	}
	defer a.release()
	return w.syncSegment(a, seq, idx) == nil
}

// markSynced records that writes up to seq (entries up to idx) are durable.
// After a failure nothing more is recorded.
func (w *WAL) markSynced(seq, idx uint64) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.fatal == nil && seq > w.syncedSeq {
		w.syncedSeq, w.syncedIndex = seq, idx
		close(w.notify)
		w.notify = make(chan struct{})
	}
}

// fail puts the instance into the failed state (once) and returns the error
// every later write will get. Nothing retries an fsync after it failed: the
// kernel may already have dropped the dirty pages.
func (w *WAL) fail(err error) error {
	w.syncMu.Lock()
	first := w.fatal == nil
	if first {
		w.fatal = err
		close(w.notify)
		w.notify = make(chan struct{})
	}
	err = w.fatal
	w.syncMu.Unlock()
	if first {
		w.log.Error("write-ahead log failed; refusing further writes", "err", err)
	}
	return err
}

func (w *WAL) failure() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	return w.fatal
}

// waitSynced blocks until write seq is durable, the instance fails or is
// closed, or ctx ends.
func (w *WAL) waitSynced(ctx context.Context, seq uint64) error {
	for {
		w.syncMu.Lock()
		synced, fatal, shut, ch := w.syncedSeq, w.fatal, w.shut, w.notify
		w.syncMu.Unlock()
		switch {
		case synced >= seq:
			return nil
		case fatal != nil:
			return fatal
		case shut:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wal: waiting for fsync: %w", ctx.Err())
		}
	}
}

// FirstIndex returns the lowest retained index, or 0 when the log is empty.
func (w *WAL) FirstIndex() uint64 {
	w.idxMu.RLock()
	defer w.idxMu.RUnlock()
	for _, s := range w.segs {
		if len(s.entries) > 0 {
			return s.entries[0].index
		}
	}
	return 0
}

// LastIndex returns the highest index written (durable or not), or 0 when
// nothing was ever written. Truncation never lowers it.
func (w *WAL) LastIndex() uint64 { return w.lastIndex.Load() }

// lookup finds the segment and position of index. Called with idxMu held.
func (w *WAL) lookup(index uint64) (*segment, pos, bool) {
	i := sort.Search(len(w.segs), func(i int) bool { return w.segs[i].base > index }) - 1
	if i < 0 {
		return nil, pos{}, false
	}
	s := w.segs[i]
	j := sort.Search(len(s.entries), func(j int) bool { return s.entries[j].index >= index })
	if j == len(s.entries) || s.entries[j].index != index {
		return nil, pos{}, false
	}
	return s, s.entries[j], true
}

// pin finds entry index and acquires its segment (the caller releases
// it), so a concurrent truncation cannot close the file under the read.
func (w *WAL) pin(index uint64) (*segment, pos, error) {
	if w.isClosed.Load() {
		return nil, pos{}, ErrClosed
	}
	w.idxMu.RLock()
	defer w.idxMu.RUnlock()
	s, p, ok := w.lookup(index)
	if !ok {
		return nil, pos{}, fmt.Errorf("%w: index %d", ErrNotFound, index)
	}
	s.acquire()
	return s, p, nil
}

// Read returns a copy of the data of entry index after verifying its
// checksum. It returns an error wrapping ErrNotFound if the entry is not in
// the log.
func (w *WAL) Read(index uint64) ([]byte, error) {
	s, p, err := w.pin(index)
	if err != nil {
		return nil, err
	}
	defer s.release()
	buf := make([]byte, frameSize(int(p.n)))
	if err := readFull(s, buf, p.off); err != nil {
		return nil, err
	}
	return verifyFrame(s.path, buf, p)
}

// ReadRange returns a copy of n bytes of entry index's data starting at
// byte off, reading only those bytes. It does not verify the entry's
// checksum (that needs the whole entry): the caller verifies what it reads,
// e.g. with a checksum of its own inside the data. It returns an error
// wrapping ErrNotFound if the entry is not in the log, and an error if the
// range is not inside the entry.
func (w *WAL) ReadRange(index uint64, off, n int) ([]byte, error) {
	s, p, err := w.pin(index)
	if err != nil {
		return nil, err
	}
	defer s.release()
	if off < 0 || n < 0 || int64(off)+int64(n) > int64(p.n) {
		return nil, fmt.Errorf("wal: range [%d, %d) outside entry %d of %d bytes", off, int64(off)+int64(n), index, p.n)
	}
	buf := make([]byte, n)
	if err := readFull(s, buf, p.off+frameHeaderSize+int64(off)); err != nil {
		return nil, err
	}
	return buf, nil
}

// readFull reads len(buf) bytes at off; a short file is corruption.
func readFull(s *segment, buf []byte, off int64) error {
	n, err := s.f.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return corruptf(s.path, off+int64(n), "file ends %d bytes early", len(buf)-n)
	}
	return fmt.Errorf("wal: read %s at offset %d: %w", s.path, off, err)
}

// verifyFrame checks that b holds exactly the frame p describes and returns
// its data.
func verifyFrame(path string, b []byte, p pos) ([]byte, error) {
	index, data, reason := decodeFrame(b)
	switch {
	case reason != "":
		return nil, corruptf(path, p.off, "%s", reason)
	case index != p.index || len(data) != int(p.n):
		return nil, corruptf(path, p.off, "frame holds index %d (%d bytes), expected index %d (%d bytes)",
			index, len(data), p.index, p.n)
	}
	return data, nil
}

// Iterate calls fn for every entry with Index >= from, in index order, as of
// the start of the call (entries appended meanwhile are not visited). The
// data passed to fn is verified and never reused, so fn may keep it. fn may
// call any WAL method. A non-nil error from fn stops the iteration and is
// returned as is.
func (w *WAL) Iterate(from uint64, fn func(index uint64, data []byte) error) error {
	if w.isClosed.Load() {
		return ErrClosed
	}
	type span struct {
		s  *segment
		ps []pos
	}
	var spans []span
	w.idxMu.RLock()
	for _, s := range w.segs {
		if len(s.entries) == 0 || s.lastIndex() < from {
			continue
		}
		j := sort.Search(len(s.entries), func(j int) bool { return s.entries[j].index >= from })
		s.acquire()
		spans = append(spans, span{s, s.entries[j:len(s.entries):len(s.entries)]})
	}
	w.idxMu.RUnlock()
	defer func() {
		for _, sp := range spans {
			sp.s.release()
		}
	}()
	for _, sp := range spans {
		for ps := sp.ps; len(ps) > 0; {
			// Frames of one segment are contiguous: read a run of them.
			k := 1
			start := ps[0].off
			end := start + frameSize(int(ps[0].n))
			for k < len(ps) && end+frameSize(int(ps[k].n))-start <= iterateChunk {
				end += frameSize(int(ps[k].n))
				k++
			}
			buf := make([]byte, end-start)
			if err := readFull(sp.s, buf, start); err != nil {
				return err
			}
			for _, p := range ps[:k] {
				rel := p.off - start
				data, err := verifyFrame(sp.s.path, buf[rel:rel+frameSize(int(p.n))], p)
				if err != nil {
					return err
				}
				if err := fn(p.index, data); err != nil {
					return err
				}
			}
			ps = ps[k:]
		}
	}
	return nil
}

// TruncateFront drops, oldest first, every segment all of whose entries
// are below index, except the active (last) segment. It never drops an
// entry >= index; entries below index may remain. The segments leave the
// index under the writer lock; their files are removed after it is
// released, oldest first, each removal made durable (directory fsync)
// before the next: an unlink and a directory fsync can take 100 ms on a
// busy disk, and appends (the state machine's applies) must not wait for
// them. A crash before a file is gone leaves it, and older entries after
// restart are harmless; a file whose removal failed is removed by the
// next call (the error is returned), and nothing newer is removed before
// it, so a crash still leaves a contiguous log.
func (w *WAL) TruncateFront(index uint64) error {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	victims, err := w.detachFront(index)
	if err != nil {
		return err
	}
	for _, v := range victims {
		w.unremoved = append(w.unremoved, droppedFile{path: v.path, size: v.size})
		v.release()
	}
	for len(w.unremoved) > 0 {
		if w.closing.Load() {
			return nil // the files left are older segments, removed after the next Open
		}
		f := w.unremoved[0]
		if err := w.fs.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: remove segment: %w", err)
		}
		w.unremoved = w.unremoved[1:]
		w.bytes.Add(-f.size)
		if err := w.fs.SyncDir(w.dir); err != nil {
			// The file may come back after a crash; that only keeps older
			// entries, which is harmless.
			return fmt.Errorf("wal: fsync directory %s: %w", w.dir, err)
		}
	}
	return nil
}

// droppedFile is the file of a segment TruncateFront dropped from the
// index, still to be removed; its bytes count in Stats until it is.
type droppedFile struct {
	path string
	size int64
}

// detachFront takes TruncateFront's segments out of the index under the
// writer lock and returns them.
func (w *WAL) detachFront(index uint64) ([]*segment, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if err := w.failure(); err != nil {
		return nil, err
	}
	w.idxMu.Lock()
	n := 0
	for n < len(w.segs)-1 && (len(w.segs[n].entries) == 0 || w.segs[n].lastIndex() < index) {
		n++
	}
	victims := slices.Clone(w.segs[:n])
	if n > 0 {
		w.segs = slices.Clone(w.segs[n:])
	}
	w.idxMu.Unlock()
	for _, v := range victims {
		w.entries.Add(-int64(len(v.entries)))
	}
	return victims, nil
}

// Stats returns a snapshot of the WAL's counters.
func (w *WAL) Stats() Stats {
	w.idxMu.RLock()
	segs := len(w.segs)
	w.idxMu.RUnlock()
	w.syncMu.Lock()
	synced := w.syncedIndex
	w.syncMu.Unlock()
	return Stats{
		Entries:    w.entries.Load(),
		Bytes:      w.bytes.Load(),
		Segments:   segs,
		FirstIndex: w.FirstIndex(),
		LastIndex:  w.lastIndex.Load(),
		LastSynced: synced,
	}
}

// Close syncs what was written, stops the syncer and closes the files. It
// returns an error if the final fsync fails or the instance had failed
// before (so data may be missing). Later calls do nothing and return nil.
func (w *WAL) Close() error {
	var err error
	w.closeOnce.Do(func() { err = w.close() })
	return err
}

func (w *WAL) close() error {
	w.closing.Store(true)
	w.truncMu.Lock() // no removal of a dropped segment's file runs past Close
	defer w.truncMu.Unlock()
	w.mu.Lock()
	w.closed = true
	w.isClosed.Store(true)
	w.mu.Unlock()

	close(w.done)
	w.wg.Wait()

	// Final sync; no writer can run any more.
	var err error
	if w.pending() {
		if !w.syncOnce() {
			err = w.failure()
		}
	}
	w.syncMu.Lock()
	w.shut = true
	close(w.notify)
	w.notify = make(chan struct{})
	if err == nil && w.fatal != nil {
		err = w.fatal
	}
	w.syncMu.Unlock()

	w.releaseSegments()
	w.met.unregister()
	return err
}

func (w *WAL) releaseSegments() {
	w.idxMu.Lock()
	segs := w.segs
	w.segs = nil
	w.idxMu.Unlock()
	for _, s := range segs {
		s.release()
	}
}
