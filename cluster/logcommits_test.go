package cluster

import (
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// commitFS records the largest write raft-wal makes and counts fsyncs;
// with failSync > 0 the failSync-th fsync (counted from 1) fails with EIO.
type commitFS struct {
	*fs.FS
	mu        sync.Mutex
	maxWrite  int
	syncs     int
	failSync  int
	syncCalls int
}

func (f *commitFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	w, err := f.FS.Create(dir, name, size)
	return &commitFile{WritableFile: w, fs: f}, err
}

func (f *commitFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	w, err := f.FS.OpenWriter(dir, name)
	return &commitFile{WritableFile: w, fs: f}, err
}

func (f *commitFS) reset(failSync int) {
	f.mu.Lock()
	f.maxWrite, f.syncs, f.syncCalls, f.failSync = 0, 0, 0, failSync
	f.mu.Unlock()
}

func (f *commitFS) stats() (maxWrite, syncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxWrite, f.syncs
}

type commitFile struct {
	types.WritableFile
	fs *commitFS
}

func (f *commitFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	f.fs.maxWrite = max(f.fs.maxWrite, len(p))
	f.fs.mu.Unlock()
	return f.WritableFile.WriteAt(p, off)
}

func (f *commitFile) Sync() error {
	f.fs.mu.Lock()
	f.fs.syncCalls++
	fail := f.fs.failSync > 0 && f.fs.syncCalls == f.fs.failSync
	f.fs.mu.Unlock()
	if fail {
		return syscall.EIO
	}
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	f.fs.syncs++
	f.fs.mu.Unlock()
	return nil
}

// openCommitLog opens a walLog in a temp dir over a commitFS.
func openCommitLog(t *testing.T) (string, *walLog, *commitFS) {
	t.Helper()
	vfs := &commitFS{FS: fs.New()}
	dir, l := openTempWALLog(t, vfs)
	return dir, l, vfs
}

// A follower catching up receives up to MaxAppendEntries entries in one
// StoreLogs. raft-wal writes a call as one commit from a buffer it keeps
// at the size of the largest call (doubled) for the segment's life, so one
// large catch-up pinned over 100 MB per agent at the 1 KiB saturated bench
// point. walLog stores a call in commits of at most walCommitBytes.
func TestWALLogStoresLargeCallsInBoundedCommits(t *testing.T) {
	dir, l, vfs := openCommitLog(t)
	defer l.Close()
	const size = 512 << 10
	entries := testEntries(1, 24, size) // 12 MiB in one call
	vfs.reset(0)
	if err := l.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	maxWrite, syncs := vfs.stats()
	// A commit holds at most walCommitBytes of entry data and framing
	// (and the index frame when it seals a segment).
	if limit := walCommitBytes + 64<<10; maxWrite > limit {
		t.Fatalf("largest write %d bytes, want at most %d (commits of %d bytes)", maxWrite, limit, walCommitBytes)
	}
	if want := 24 * size / walCommitBytes; syncs < want {
		t.Fatalf("%d fsyncs for a 12 MiB call, want at least %d (one per commit)", syncs, want)
	}
	// An entry larger than a commit goes alone.
	big := testEntries(25, 1, walCommitBytes+1<<20)
	if err := l.StoreLogs(big); err != nil {
		t.Fatal(err)
	}
	want := append(entries, big...)
	checkEntriesAcrossReopen(t, l, dir, want)
}

// A call whose second commit fails is a failed call: none of its entries
// is visible (the first commit's included), and the retry stores them all.
func TestWALLogFailedCommitHidesTheWholeCall(t *testing.T) {
	dir, l, vfs := openCommitLog(t)
	defer l.Close()
	first := testEntries(1, 4, 1000)
	if err := l.StoreLogs(first); err != nil {
		t.Fatal(err)
	}
	next := testEntries(5, 16, 512<<10) // 8 MiB: at least two commits
	vfs.reset(2)
	if err := l.StoreLogs(next); !errors.Is(err, syscall.EIO) {
		t.Fatalf("StoreLogs with a failing second commit = %v, want EIO", err)
	}
	if _, syncs := vfs.stats(); syncs < 1 {
		t.Fatalf("the first commit did not reach the disk (%d fsyncs): the test does not test a partly written call", syncs)
	}
	if last, err := l.LastIndex(); err != nil || last != 4 {
		t.Fatalf("LastIndex after the failed call = %d, %v; want 4 (nothing of the call visible)", last, err)
	}
	vfs.reset(0)
	if err := l.StoreLogs(next); err != nil {
		t.Fatalf("retry: %v", err)
	}
	want := append(first, next...)
	checkEntriesAcrossReopen(t, l, dir, want)
}
