package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// sealEntrySize: 1 MiB entries, four to a StoreLogs call, so every commit
// is about 4 MiB and raft-wal's commit buffer 8 MiB; a 16 MiB segment holds
// about 15 of them.
const sealEntrySize = 1 << 20

// segmentFS is raft-wal's OS filesystem that counts the open handles of
// every segment file (opened and not closed yet) and keeps a weak pointer
// to every file opened for writing: a segment writer holds its file, so
// once the file is collected the writer (and its commit buffer) is gone
// too. With failOpen, opening a file for reading fails.
type segmentFS struct {
	*fs.FS
	mu       sync.Mutex
	open     map[string]int
	writers  map[string]weak.Pointer[segmentFile]
	failOpen atomic.Bool
}

// segmentFile is a segment file handle that counts its Close.
type segmentFile struct {
	types.WritableFile // a types.ReadableFile for readers
	fs                 *segmentFS
	name               string
	once               sync.Once
}

func (f *segmentFile) Close() error {
	f.once.Do(func() {
		f.fs.mu.Lock()
		f.fs.open[f.name]--
		f.fs.mu.Unlock()
	})
	return f.WritableFile.Close()
}

// readOnly adapts a types.ReadableFile to segmentFile's embedded type.
type readOnly struct{ types.ReadableFile }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, errors.New("read-only") }
func (readOnly) Sync() error                        { return errors.New("read-only") }

func newSegmentFS() *segmentFS {
	return &segmentFS{FS: fs.New(), open: map[string]int{}, writers: map[string]weak.Pointer[segmentFile]{}}
}

func (f *segmentFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	w, err := f.FS.Create(dir, name, size)
	return f.writer(name, w, err)
}

func (f *segmentFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	w, err := f.FS.OpenWriter(dir, name)
	return f.writer(name, w, err)
}

func (f *segmentFS) OpenReader(dir, name string) (types.ReadableFile, error) {
	if f.failOpen.Load() {
		return nil, errors.New("test: open for reading refused")
	}
	r, err := f.FS.OpenReader(dir, name)
	if err != nil {
		return nil, err
	}
	return f.track(name, readOnly{r}), nil
}

func (f *segmentFS) writer(name string, w types.WritableFile, err error) (types.WritableFile, error) {
	if err != nil {
		return nil, err
	}
	sf := f.track(name, w)
	f.mu.Lock()
	f.writers[name] = weak.Make(sf)
	f.mu.Unlock()
	return sf, nil
}

func (f *segmentFS) track(name string, file types.WritableFile) *segmentFile {
	f.mu.Lock()
	f.open[name]++
	f.mu.Unlock()
	return &segmentFile{WritableFile: file, fs: f, name: name}
}

// liveWriters are the segment files (base names) whose writer is still
// reachable after a garbage collection.
func (f *segmentFS) liveWriters() []string {
	runtime.GC()
	runtime.GC()
	f.mu.Lock()
	defer f.mu.Unlock()
	var live []string
	for name, p := range f.writers {
		if p.Value() != nil {
			live = append(live, name)
		}
	}
	sort.Strings(live)
	return live
}

// openHandles are the segment files with open handles, and how many.
func (f *segmentFS) openHandles() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	open := map[string]int{}
	for name, n := range f.open {
		if n != 0 {
			open[name] = n
		}
	}
	return open
}

// storeBig stores 1 MiB entries first..last through l, four to a call, and
// publishes each call's last index in stored.
func storeBig(t *testing.T, l *walLog, first, last uint64, term uint64, stored *atomic.Uint64) {
	t.Helper()
	for i := first; i <= last; i += 4 {
		n := min(4, int(last-i+1))
		logs := testEntries(i, n, sealEntrySize)
		for _, e := range logs {
			e.Term = term
		}
		if err := l.StoreLogs(logs); err != nil {
			t.Fatalf("StoreLogs %d..%d: %v", i, i+uint64(n)-1, err)
		}
		stored.Store(i + uint64(n) - 1)
	}
}

// checkBig reads entry idx and compares it with what storeBig wrote.
func checkBig(l raft.LogStore, idx, term uint64) error {
	var got raft.Log
	if err := l.GetLog(idx, &got); err != nil {
		return fmt.Errorf("entry %d: %w", idx, err)
	}
	want := testEntries(idx, 1, sealEntrySize)[0]
	if got.Index != idx || got.Term != term || !bytes.Equal(got.Data, want.Data) {
		return fmt.Errorf("entry %d differs: index %d, term %d/%d, %d bytes", idx, got.Index, got.Term, term, len(got.Data))
	}
	return nil
}

// checkBigRange checks that the log holds exactly first..last as
// storeBig wrote them (term of the entries from split on: term2).
func checkBigRange(t *testing.T, l *walLog, first, last, split, term1, term2 uint64) {
	t.Helper()
	if f, la, err := logBounds(l); err != nil || f != first || la != last {
		t.Fatalf("log holds %d-%d (%v), want %d-%d", f, la, err, first, last)
	}
	for i := first; i <= last; i++ {
		term := term1
		if i >= split {
			term = term2
		}
		if err := checkBig(l, i, term); err != nil {
			t.Fatal(err)
		}
	}
}

// readWhileWriting reads random stored entries until stop is closed and
// returns how many it read; the first failure goes to t.Error.
func readWhileWriting(t *testing.T, l *walLog, stored *atomic.Uint64, stop <-chan struct{}) int {
	reads := 0
	for i := uint64(0); ; i++ {
		select {
		case <-stop:
			return reads
		default:
		}
		last := stored.Load()
		if last == 0 {
			runtime.Gosched()
			continue
		}
		// Alternate the newest entry (the tail, being sealed) with older ones.
		idx := last
		if i%2 == 1 {
			idx = 1 + (i*7919)%last
		}
		if err := checkBig(l, idx, 1); err != nil {
			t.Errorf("concurrent read: %v", err)
			return reads
		}
		reads++
	}
}

// segmentBase is the base index in a raft-wal segment file name.
func segmentBase(t *testing.T, path string) uint64 {
	t.Helper()
	var base, id uint64
	if _, err := fmt.Sscanf(filepath.Base(path), "%020d-%016x.wal", &base, &id); err != nil {
		t.Fatalf("segment name %s: %v", path, err)
	}
	return base
}

// openSegmentFDs counts this process's open file descriptors per segment
// file of dir (base name; " (deleted)" appended once unlinked).
func openSegmentFDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || filepath.Dir(target) != dir || !strings.Contains(target, ".wal") {
			continue // closed meanwhile (ReadDir's own descriptor), or not a segment of dir
		}
		fds[filepath.Base(target)]++
	}
	return fds
}

// checkSegmentsOpenOnce waits until every segment file of dir has exactly
// one handle open — the segment's writer or reader (vfs counts opens and
// Closes) — and one descriptor in this process, and no deleted segment
// has either. Deleted segments' handles are closed before DeleteRange
// returns; the wait is for lazyDeleteFS to unlink their files.
func checkSegmentsOpenOnce(t *testing.T, vfs *segmentFS, dir, when string) {
	t.Helper()
	var open, fds map[string]int
	var files []string
	defer func() {
		if t.Failed() {
			t.Logf("%s: handles %v; descriptors %v; segment files %d", when, open, fds, len(files))
		}
	}()
	waitFor(t, 10*time.Second, when+": every segment file open exactly once", func() bool {
		open, fds, files = vfs.openHandles(), openSegmentFDs(t, dir), walSegments(t, dir)
		if len(open) != len(files) || len(fds) != len(files) {
			return false
		}
		for _, f := range files {
			if open[filepath.Base(f)] != 1 || fds[filepath.Base(f)] != 1 {
				return false
			}
		}
		return true
	})
}

// heapInUse is the heap in use after a garbage collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// startReader reads stored entries on its own goroutine until the
// returned stop is called; stop returns how many it read (idempotent).
func startReader(t *testing.T, l *walLog, stored *atomic.Uint64) (stop func() int) {
	done := make(chan struct{})
	result := make(chan int, 1)
	go func() { result <- readWhileWriting(t, l, stored, done) }()
	var once sync.Once
	reads := 0
	return func() int {
		once.Do(func() {
			close(done)
			reads = <-result
		})
		return reads
	}
}

// raft-wal keeps a sealed segment's writer — with its commit buffer, at
// the largest commit rounded up to a power of two — as the segment's
// reader until compaction. walLog's sealingFiler swaps it for a reader of
// the file: once sealed, no segment's writer is reachable, the heap does
// not grow by a buffer per sealed segment, every entry reads back while
// segments are sealed under concurrent reads, after compaction (whose
// closed segments leave no open descriptor) and across a reopen.
func TestWALLogSealedSegmentsDropTheirWriter(t *testing.T) {
	vfs := newSegmentFS()
	dir, l := openTempWALLog(t, vfs)
	defer func() { _ = l.Close() }()
	const n = 100 // about six sealed segments
	before := heapInUse()
	var stored atomic.Uint64
	stop := startReader(t, l, &stored)
	defer stop()
	storeBig(t, l, 1, n, 1, &stored)
	reads := stop()
	segs := walSegments(t, dir)
	if len(segs) < 6 {
		t.Fatalf("%d segment files after %d MiB, want at least 6", len(segs), n)
	}
	// raft-wal alone keeps 8 MiB per sealed segment here (56 MiB in all);
	// the tail's writer keeps its 8 MiB.
	growth := int64(heapInUse()) - int64(before)
	t.Logf("%d sealed segments; heap in use grew by %.1f MiB; %d concurrent reads", len(segs)-1, float64(growth)/(1<<20), reads)
	if growth > 24<<20 {
		t.Fatalf("heap in use grew by %d MiB writing %d sealed segments, want at most 24 MiB (no commit buffer per sealed segment)", growth>>20, len(segs)-1)
	}
	tail := filepath.Base(segs[len(segs)-1])
	if live := vfs.liveWriters(); len(live) != 1 || live[0] != tail {
		t.Fatalf("segment writers still reachable: %v; want only the tail's (%s)", live, tail)
	}
	checkBigRange(t, l, 1, n, n+1, 1, 1)
	checkSegmentsOpenOnce(t, vfs, dir, "after the writes")

	cut := segmentBase(t, segs[3]) - 1 // compaction deletes the first three segments
	if err := l.DeleteRange(1, cut); err != nil {
		t.Fatal(err)
	}
	checkSegmentsOpenOnce(t, vfs, dir, "after compaction")
	checkBigRange(t, l, cut+1, n, n+1, 1, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := openWALLog(dir, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkBigRange(t, l, cut+1, n, n+1, 1, 1)
}

// Raft deletes a suffix on a conflict: raft-wal force-seals the tail at
// the new end (its writer is then swapped too) or, for a suffix that
// starts in an older segment, closes and deletes the later ones, swapped
// or not. Entries below the cut read back, the rewritten suffix with its
// new term, no descriptor stays open, and the log reopens intact.
func TestWALLogSuffixDeletionsSealAndCloseSegments(t *testing.T) {
	vfs := newSegmentFS()
	dir, l := openTempWALLog(t, vfs)
	defer func() { _ = l.Close() }()
	var stored atomic.Uint64
	const n = 40 // two sealed segments and a tail with entries
	storeBig(t, l, 1, n, 1, &stored)
	segs := walSegments(t, dir)
	base := segmentBase(t, segs[len(segs)-1])
	if len(segs) != 3 || n-base < 3 {
		t.Fatalf("layout: %d segments, tail from %d of %d; the test needs 3 segments and 4 entries in the tail", len(segs), base, n)
	}

	// A suffix within the tail: raft-wal force-seals it.
	if err := l.DeleteRange(base+2, n); err != nil {
		t.Fatal(err)
	}
	segs = walSegments(t, dir)
	tail := filepath.Base(segs[len(segs)-1])
	if live := vfs.liveWriters(); len(live) != 1 || live[0] != tail {
		t.Fatalf("segment writers still reachable after the force-seal: %v; want only the new tail's (%s)", live, tail)
	}
	checkBigRange(t, l, 1, base+1, n+1, 1, 1)
	storeBig(t, l, base+2, base+9, 2, &stored)
	checkBigRange(t, l, 1, base+9, base+2, 1, 2)
	checkSegmentsOpenOnce(t, vfs, dir, "after the force-seal")

	// A suffix from the first segment: the force-sealed segment and the
	// tail are closed and deleted.
	if err := l.DeleteRange(5, base+9); err != nil {
		t.Fatal(err)
	}
	checkSegmentsOpenOnce(t, vfs, dir, "after deleting segments")
	storeBig(t, l, 5, 12, 3, &stored)
	checkBigRange(t, l, 1, 12, 5, 1, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := openWALLog(dir, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkBigRange(t, l, 1, 12, 5, 1, 3)
}

// If a sealed segment cannot be opened for reading, its writer stays and
// serves its entries: the append that sealed it succeeds.
func TestWALLogKeepsTheWriterWhenASealedSegmentCannotBeOpened(t *testing.T) {
	vfs := newSegmentFS()
	dir, l := openTempWALLog(t, vfs)
	defer func() { _ = l.Close() }()
	vfs.failOpen.Store(true)
	var stored atomic.Uint64
	const n = 40
	storeBig(t, l, 1, n, 1, &stored)
	segs := walSegments(t, dir)
	if live := vfs.liveWriters(); len(segs) < 3 || len(live) != len(segs) {
		t.Fatalf("%d segments, writers still reachable: %v; want every writer kept", len(segs), live)
	}
	checkBigRange(t, l, 1, n, n+1, 1, 1)
	checkSegmentsOpenOnce(t, vfs, dir, "with the writers kept")
	vfs.failOpen.Store(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := openWALLog(dir, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkBigRange(t, l, 1, n, n+1, 1, 1)
}

// sealingWriter answers Append, Sealed, ForceSeal and LastIndex as the
// writer would once swapped, reads through the sealed file's reader, and
// closes once.
func TestSealingWriterAnswersAsTheSealedWriter(t *testing.T) {
	dir := t.TempDir()
	f := newSealingFiler(segment.NewFiler(dir, fs.New()), testHCLog())
	info := types.SegmentInfo{ID: 1, BaseIndex: 10, MinIndex: 10, SizeLimit: 64 << 10, Codec: raftwal.CodecBinaryV1, CreateTime: time.Now()}
	sw, err := f.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	s := sw.(*sealingWriter)
	var written [][]byte
	for idx := uint64(10); ; idx++ {
		data := bytes.Repeat([]byte{byte(idx)}, 4000)
		if err := s.Append([]types.LogEntry{{Index: idx, Data: data}}); err != nil {
			t.Fatal(err)
		}
		written = append(written, data)
		sealed, indexStart, err := s.Sealed()
		if err != nil {
			t.Fatal(err)
		}
		if !sealed {
			if s.released() {
				t.Fatalf("writer released before the segment sealed (entry %d)", idx)
			}
			continue
		}
		if !s.released() {
			t.Fatal("sealed segment still holds its writer")
		}
		if again, start2, _ := s.Sealed(); !again || start2 != indexStart {
			t.Fatalf("Sealed again = %v, %d; want true, %d", again, start2, indexStart)
		}
		if start2, err := s.ForceSeal(); err != nil || start2 != indexStart {
			t.Fatalf("ForceSeal of a sealed segment = %d, %v; want %d", start2, err, indexStart)
		}
		break
	}
	last := 10 + uint64(len(written)) - 1
	if s.LastIndex() != last {
		t.Fatalf("LastIndex = %d, want %d", s.LastIndex(), last)
	}
	if err := s.Append([]types.LogEntry{{Index: last + 1, Data: []byte("x")}}); !errors.Is(err, types.ErrSealed) {
		t.Fatalf("Append after the seal = %v, want ErrSealed", err)
	}
	for i, want := range written {
		buf, err := s.GetLog(10 + uint64(i))
		if err != nil {
			t.Fatalf("entry %d: %v", 10+i, err)
		}
		if !bytes.Equal(buf.Bs, want) {
			t.Fatalf("entry %d differs", 10+i)
		}
		buf.Close()
	}
	for _, idx := range []uint64{9, last + 1} {
		if _, err := s.GetLog(idx); !errors.Is(err, types.ErrNotFound) {
			t.Fatalf("GetLog(%d) outside the segment = %v, want ErrNotFound", idx, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// raft-wal's writer cannot force-seal a segment without entries: the
// error comes back as it is and the writer stays, ready for appends.
func TestSealingWriterForceSealErrorKeepsTheWriter(t *testing.T) {
	dir := t.TempDir()
	f := newSealingFiler(segment.NewFiler(dir, fs.New()), testHCLog())
	info := types.SegmentInfo{ID: 1, BaseIndex: 1, MinIndex: 1, SizeLimit: 64 << 10, Codec: raftwal.CodecBinaryV1, CreateTime: time.Now()}
	sw, err := f.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	s := sw.(*sealingWriter)
	if _, err := s.ForceSeal(); err == nil {
		t.Fatal("ForceSeal of an empty segment succeeded; raft-wal's writer refuses it")
	}
	if s.released() {
		t.Fatal("writer released after a failed ForceSeal")
	}
	if err := s.Append([]types.LogEntry{{Index: 1, Data: []byte("one")}}); err != nil {
		t.Fatalf("Append after the failed ForceSeal: %v", err)
	}
	if _, err := s.ForceSeal(); err != nil {
		t.Fatal(err)
	}
	if !s.released() || s.LastIndex() != 1 {
		t.Fatalf("after ForceSeal: released %v, LastIndex %d; want true, 1", s.released(), s.LastIndex())
	}
	buf, err := s.GetLog(1)
	if err != nil || string(buf.Bs) != "one" {
		t.Fatalf("GetLog(1) = %v, %v", buf, err)
	}
	buf.Close()
}
