package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

func testHCLog() hclog.Logger { return newHCLogger("raft", discardLogger()) }

// testEntries are n raft entries from index first, term = index/10+1,
// with size bytes of data each that name their index.
func testEntries(first uint64, n, size int) []*raft.Log {
	out := make([]*raft.Log, n)
	for i := range out {
		idx := first + uint64(i)
		d := bytes.Repeat([]byte{byte(idx)}, size)
		copy(d, fmt.Sprintf("entry-%d", idx))
		out[i] = &raft.Log{Index: idx, Term: idx/10 + 1, Type: raft.LogCommand, Data: d}
	}
	return out
}

// openTempWALLog opens a walLog in a new temp dir over vfs.
func openTempWALLog(t *testing.T, vfs types.VFS) (string, *walLog) {
	t.Helper()
	dir := t.TempDir()
	l, err := openWALLog(dir, testHCLog(), vfs)
	if err != nil {
		t.Fatal(err)
	}
	return dir, l
}

// checkEntriesAcrossReopen checks l holds want, closes it, and checks the
// log opened again from dir holds want too.
func checkEntriesAcrossReopen(t *testing.T, l *walLog, dir string, want []*raft.Log) {
	t.Helper()
	checkEntries(t, l, want)
	_ = l.Close()
	l, err := openWALLog(dir, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checkEntries(t, l, want)
}

func checkEntries(t *testing.T, s raft.LogStore, want []*raft.Log) {
	t.Helper()
	first, last, err := logBounds(s)
	if err != nil {
		t.Fatal(err)
	}
	if first != want[0].Index || last != want[len(want)-1].Index {
		t.Fatalf("log holds %d-%d, want %d-%d", first, last, want[0].Index, want[len(want)-1].Index)
	}
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatalf("entry %d: %v", w.Index, err)
		}
		if got.Term != w.Term || got.Type != w.Type || !bytes.Equal(got.Data, w.Data) {
			t.Fatalf("entry %d differs: term %d/%d, %d/%d bytes", w.Index, got.Term, w.Term, len(got.Data), len(w.Data))
		}
	}
}

// boltWithLog makes dir/raft.db as an agent of the previous version left
// it: entries 101..400 (1..100 compacted away) and a term and vote.
func boltWithLog(t *testing.T, dir string) []*raft.Log {
	t.Helper()
	b, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	all := testEntries(1, 400, 2000)
	if err := b.StoreLogs(all); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 41); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte("LastVoteCand"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	return all[100:]
}

func checkStable(t *testing.T, dir string) {
	t.Helper()
	b, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if term, err := b.GetUint64([]byte("CurrentTerm")); err != nil || term != 41 {
		t.Fatalf("CurrentTerm = %d, %v; want 41", term, err)
	}
	if cand, err := b.Get([]byte("LastVoteCand")); err != nil || string(cand) != "b" {
		t.Fatalf("LastVoteCand = %q, %v", cand, err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A Bolt log is moved to raft-wal on first start. The process dying after
// any step leaves one store authoritative with every entry: before the
// rename of wal.migrating, Bolt (the next start copies again); after it,
// raft-wal (the next start only drops Bolt's copy). Term and vote stay,
// and raft.db ends up small.
func TestLogMigrationSurvivesACrashAtEveryStep(t *testing.T) {
	for _, step := range []string{"batch", "copied", "committed", "compacting", ""} {
		t.Run("crash after "+step, func(t *testing.T) {
			dir := t.TempDir()
			want := boltWithLog(t, dir)
			before := fileSize(t, filepath.Join(dir, boltFileName))
			crash := errors.New("crash")
			migrateHook = func(s string) error {
				if s == step {
					return crash
				}
				return nil
			}
			defer func() { migrateHook = func(string) error { return nil } }()
			bolt, logs, err := openLogStores(dir, testHCLog())
			committed := step == "committed" || step == "compacting" || step == ""
			switch {
			case step == "compacting" || step == "":
				// dropBoltLog goes on with raft.db as it is when the rewrite fails.
				if err != nil {
					t.Fatal(err)
				}
				_ = logs.Close()
				_ = bolt.Close()
			case !errors.Is(err, crash):
				t.Fatalf("open = %v, want the simulated crash", err)
			}
			_, walErr := os.Stat(filepath.Join(dir, walDirName))
			if committed != (walErr == nil) {
				t.Fatalf("after %q: wal dir exists = %v, want %v", step, walErr == nil, committed)
			}
			if !committed {
				checkBoltAuthoritative(t, dir, want)
			} else {
				checkLogStoreKey(t, dir)
			}
			migrateHook = func(string) error { return nil }
			bolt, logs, err = openLogStores(dir, testHCLog())
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, logs, want)
			if first, last, _ := logBounds(bolt); first != 0 || last != 0 {
				t.Fatalf("raft.db still holds entries %d-%d", first, last)
			}
			_ = logs.Close()
			_ = bolt.Close()
			checkStable(t, dir)
			for _, gone := range []string{walTmpDirName, boltFileName + boltCompactExt} {
				if _, err := os.Stat(filepath.Join(dir, gone)); err == nil {
					t.Fatalf("%s left behind", gone)
				}
			}
			if after := fileSize(t, filepath.Join(dir, boltFileName)); after >= before/4 {
				t.Fatalf("raft.db is %d bytes after the migration, was %d", after, before)
			}
		})
	}
}

// checkLogStoreKey: once wal/ is committed, raft.db says so, so that
// losing wal/ is refused from then on (before the Bolt log is dropped).
func checkLogStoreKey(t *testing.T, dir string) {
	t.Helper()
	b, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if v, err := b.Get(logStoreKey); err != nil || string(v) != walDirName {
		t.Fatalf("raft.db %s = %q, %v; want %q", logStoreKey, v, err, walDirName)
	}
}

func checkBoltAuthoritative(t *testing.T, dir string, want []*raft.Log) {
	t.Helper()
	b, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checkEntries(t, b, want)
}

// walSegments lists the segment files of a raft-wal dir, oldest first.
func walSegments(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// dataEnd is the end of the written part of a preallocated segment file.
func dataEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(bytes.TrimRight(b, "\x00")))
}

// A crash in the middle of an append leaves a torn tail: the last batch's
// bytes partly on disk, or garbled. raft-wal's commit frame carries a
// CRC-32C of the batch, so on open the batch that was never acknowledged is
// dropped, everything before it reads back intact, and appending resumes
// at its index.
func TestWALLogTornTailDropsOnlyTheUnacknowledgedBatch(t *testing.T) {
	cases := map[string]func(t *testing.T, seg string, lastLen int){
		"cut mid-entry": func(t *testing.T, seg string, lastLen int) {
			if err := os.Truncate(seg, dataEnd(t, seg)-int64(lastLen)/2); err != nil {
				t.Fatal(err)
			}
		},
		"garbled byte": func(t *testing.T, seg string, lastLen int) {
			f, err := os.OpenFile(seg, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff, 0x00, 0xff}, dataEnd(t, seg)-int64(lastLen)/2); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := openWALLog(dir, testHCLog(), nil)
			if err != nil {
				t.Fatal(err)
			}
			kept := testEntries(1, 30, 3000)
			for i := 0; i < len(kept); i += 10 {
				if err := l.StoreLogs(kept[i : i+10]); err != nil {
					t.Fatal(err)
				}
			}
			torn := testEntries(31, 3, 3000)
			if err := l.StoreLogs(torn); err != nil {
				t.Fatal(err)
			}
			_ = l.Close()
			segs := walSegments(t, dir)
			damage(t, segs[len(segs)-1], 3*3000)
			if l, err = openWALLog(dir, testHCLog(), nil); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			checkEntries(t, l, kept)
			if err := l.StoreLogs(torn); err != nil {
				t.Fatalf("append after repair: %v", err)
			}
			checkEntries(t, l, append(kept, torn...))
		})
	}
}

// The Raft log's disk use is bounded: after entries and a snapshot that
// compacts them, whole segment files are deleted and the directory
// shrinks (raft-boltdb's file never did).
func TestRaftLogDiskShrinksAfterSnapshot(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", "", func(cfg *Config) {
		cfg.Bootstrap = true
		cfg.TrailingLogs = 16
		cfg.SnapshotThreshold = 1 << 20 // only the explicit snapshot below
		cfg.SnapshotInterval = time.Hour
	})
	c.waitLeader(10 * time.Second)
	topicID := createTopic(t, a, "t", 1)
	big := strings.Repeat("x", 100<<10)
	for i := range 3 * walSegmentSize / len(big) {
		if _, err := propose(t, a, appendOne(topicID, big+fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	walDir := filepath.Join(a.dir, "raft", walDirName)
	before, segsBefore := dirBlocks(t, walDir), len(walSegments(t, walDir))
	if err := a.node.r().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	// The files are unlinked in the background (lazyDeleteFS).
	waitFor(t, 10*time.Second, "compacted segments deleted", func() bool {
		return len(walSegments(t, walDir)) < segsBefore
	})
	after, segsAfter := dirBlocks(t, walDir), len(walSegments(t, walDir))
	t.Logf("raft log: %d segments, %d MiB before the snapshot; %d segments, %d MiB after", segsBefore, before>>20, segsAfter, after>>20)
	if after > before-walSegmentSize {
		t.Fatalf("raft log did not shrink: %d → %d bytes, %d → %d segments", before, after, segsBefore, segsAfter)
	}
	first, err := a.node.logStore.FirstIndex()
	if err != nil || first < uint64(3*walSegmentSize/len(big)-16) {
		t.Fatalf("first index after compaction = %d, %v", first, err)
	}
}

// fullFS is raft-wal's OS filesystem whose writes fail with ENOSPC while
// full is set.
type fullFS struct {
	*fs.FS
	mu      sync.Mutex
	full    bool
	refused int // writes and creates refused so far
}

func (f *fullFS) isFull() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full {
		f.refused++
	}
	return f.full
}

func (f *fullFS) refusals() int { f.mu.Lock(); defer f.mu.Unlock(); return f.refused }

func (f *fullFS) set(v bool) { f.mu.Lock(); f.full = v; f.mu.Unlock() }

func (f *fullFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	if f.isFull() {
		return nil, syscall.ENOSPC
	}
	w, err := f.FS.Create(dir, name, size)
	return &fullFile{WritableFile: w, fs: f}, err
}

func (f *fullFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	w, err := f.FS.OpenWriter(dir, name)
	return &fullFile{WritableFile: w, fs: f}, err
}

type fullFile struct {
	types.WritableFile
	fs *fullFS
}

// WriteAt writes half of p, then fails: a partial write, as a full disk
// gives.
func (f *fullFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.isFull() {
		n, _ := f.WritableFile.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.WritableFile.WriteAt(p, off)
}

// A StoreLogs that fails on a full disk left raft-wal v0.4.0 unable to
// append again (its in-memory index already held the failed frames);
// walLog reopens it, so the retry succeeds once space is back and the log
// holds each entry once.
func TestWALLogAppendsAgainAfterAFullDisk(t *testing.T) {
	dir := t.TempDir()
	vfs := &fullFS{FS: fs.New()}
	l, err := openWALLog(dir, testHCLog(), vfs)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first := testEntries(1, 10, 1000)
	if err := l.StoreLogs(first); err != nil {
		t.Fatal(err)
	}
	next := testEntries(11, 10, 1000)
	vfs.set(true)
	for range 3 {
		if err := l.StoreLogs(next); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("StoreLogs on a full disk = %v, want ENOSPC", err)
		}
	}
	vfs.set(false)
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("StoreLogs once space is back: %v", err)
	}
	want := append(first, next...)
	checkEntriesAcrossReopen(t, l, dir, want)
}

// Raft deletes the whole log after installing a snapshot only when the
// store it holds says it is monotonic; raft-wal would otherwise refuse the
// first append after the gap.
func TestRaftSeesTheLogStoreAsMonotonic(t *testing.T) {
	l, err := openWALLog(t.TempDir(), testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ll, err := newLeaderLog(l, func() bool { return false }, slog.New(slog.DiscardHandler), make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	if !newLogCache(&retryingLogs{LogStore: ll}, 8, 1<<20).IsMonotonic() {
		t.Fatal("the log store Raft gets does not report IsMonotonic")
	}
}

// Term and vote (raft.db) and the log (wal/) are separate files: an agent
// that lost only wal/ refuses to start instead of keeping its identity
// with an empty log.
func TestLostRaftLogDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	bolt, logs, err := openLogStores(dir, testHCLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.StoreLogs(testEntries(1, 3, 100)); err != nil {
		t.Fatal(err)
	}
	_ = logs.Close()
	_ = bolt.Close()
	if err := os.RemoveAll(filepath.Join(dir, walDirName)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openLogStores(dir, testHCLog()); !errors.Is(err, ErrRaftLogLost) {
		t.Fatalf("open without wal/ = %v, want ErrRaftLogLost", err)
	}
}

// eioFS is raft-wal's OS filesystem whose fsyncs fail with EIO while
// failing is set (the write itself lands, in the page cache). It counts
// the bytes written and the fsyncs that returned success since reset.
type eioFS struct {
	*fs.FS
	mu      sync.Mutex
	failing bool
	written int
	synced  int // successful fsyncs after the last write
}

func (f *eioFS) setFailing(v bool) {
	f.mu.Lock()
	f.failing, f.written, f.synced = v, 0, 0
	f.mu.Unlock()
}

func (f *eioFS) counts() (written, synced int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written, f.synced
}

func (f *eioFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	w, err := f.FS.Create(dir, name, size)
	return &eioFile{WritableFile: w, fs: f}, err
}

func (f *eioFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	w, err := f.FS.OpenWriter(dir, name)
	return &eioFile{WritableFile: w, fs: f}, err
}

type eioFile struct {
	types.WritableFile
	fs *eioFS
}

func (f *eioFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.WritableFile.WriteAt(p, off)
	f.fs.mu.Lock()
	f.fs.written += n
	f.fs.synced = 0
	f.fs.mu.Unlock()
	return n, err
}

func (f *eioFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.failing {
		return syscall.EIO
	}
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	f.fs.synced++
	return nil
}

// eioStore stores 1..10, then fails to fsync 11..20 (term 2), whose
// frames nonetheless land in the segment file.
func eioStore(t *testing.T, dir string) (*walLog, *eioFS, []*raft.Log) {
	t.Helper()
	vfs := &eioFS{FS: fs.New()}
	l, err := openWALLog(dir, testHCLog(), vfs)
	if err != nil {
		t.Fatal(err)
	}
	first := testEntries(1, 10, 1000)
	if err := l.StoreLogs(first); err != nil {
		t.Fatal(err)
	}
	vfs.setFailing(true)
	if err := l.StoreLogs(testEntries(11, 10, 1000)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("StoreLogs with a failing fsync = %v, want EIO", err)
	}
	vfs.setFailing(false)
	return l, vfs, first
}

// After a failed fsync Linux marks the dirty pages clean and a later fsync
// returns 0, so entries a failed StoreLogs wrote are not durable even
// though raft-wal's recovery finds them intact. The retry must write them
// again and fsync them, not skip them as already stored.
func TestWALLogRewritesEntriesAfterAFailedFsync(t *testing.T) {
	dir := t.TempDir()
	l, vfs, first := eioStore(t, dir)
	defer l.Close()
	next := testEntries(11, 10, 1000)
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("StoreLogs after the failed fsync: %v", err)
	}
	if written, synced := vfs.counts(); written < 10*1000 || synced == 0 {
		t.Fatalf("the retry wrote %d bytes, then fsynced %d times; want the batch (%d bytes) rewritten and fsynced", written, synced, 10*1000)
	}
	want := append(first, next...)
	checkEntriesAcrossReopen(t, l, dir, want)
}

// A leader whose StoreLogs failed after the write landed steps down
// without counting those entries; the next leader sends its own from the
// same index at a higher term. raft-wal refuses them as non-monotonic
// unless the leftover suffix goes first; otherwise the follower retries
// forever.
func TestWALLogReplacesALeftoverOfAnotherTerm(t *testing.T) {
	dir := t.TempDir()
	l, _, first := eioStore(t, dir)
	defer l.Close()
	next := testEntries(11, 5, 500)
	for _, e := range next {
		e.Term = 7
	}
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("StoreLogs of the new leader's entries: %v", err)
	}
	want := append(first, next...)
	checkEntriesAcrossReopen(t, l, dir, want)
}

// raft 1.7.3 stored entries past a gap in a non-monotonic store (Bolt)
// after installing a snapshot: only the contiguous suffix is migrated;
// the entries below the gap are in the snapshot.
func TestLogMigrationSkipsAGapInTheBoltLog(t *testing.T) {
	dir := t.TempDir()
	b, err := openBoltStore(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs(append(testEntries(1, 5, 100), testEntries(10, 3, 100)...)); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	bolt, logs, err := openLogStores(dir, testHCLog())
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	defer logs.Close()
	checkEntries(t, logs, testEntries(10, 3, 100))
}

// TestWALLogAppendsPastAGapAfterASnapshot: Raft appends past a gap only
// after installing a snapshot that covers it, and it ignores a failure of
// the clear that should have emptied the log then (a full disk). The store
// must take the append (dropping the stale log below the gap) instead of
// refusing it as non-monotonic forever.
func TestWALLogAppendsPastAGapAfterASnapshot(t *testing.T) {
	l, err := openWALLog(t.TempDir(), testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.StoreLogs(testEntries(1, 5, 100)); err != nil {
		t.Fatal(err)
	}
	after := testEntries(10, 3, 100)
	if err := l.StoreLogs(after); err != nil {
		t.Fatalf("append past a gap: %v", err)
	}
	checkEntries(t, l, after)
}
