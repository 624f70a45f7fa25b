package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// A raft-wal tail segment sealed on disk (its index frame and commit frame
// written and fsynced by the append that filled it) while wal-meta.db still
// lists it unsealed, because the roll's meta commit never happened (process
// killed) or failed, or because a power loss tore the sealing append. Without
// finishInterruptedRoll every later append failed with "segment is sealed",
// across any number of reopens (the agent was out of the Raft group for
// good).

const stuckEntry = 1 << 20 // 1 MiB entries: 16 fill a 16 MiB segment

// hookMeta runs hook (once) at the start of the first CommitState after
// arm: for a log that only appends, that is the roll of a full segment,
// run by raft-wal's rotation goroutine after the sealing append returned.
type hookMeta struct {
	types.MetaStore
	mu    sync.Mutex
	hook  func()
	fired atomic.Bool
}

func (m *hookMeta) arm(f func()) { m.mu.Lock(); m.hook = f; m.mu.Unlock() }

func (m *hookMeta) CommitState(s types.PersistentState) error {
	m.mu.Lock()
	f := m.hook
	m.hook = nil
	m.mu.Unlock()
	if f != nil {
		f()
		m.fired.Store(true)
	}
	return m.MetaStore.CommitState(s)
}

// copyDir copies every file of src into dst: the files a SIGKILL at this
// instant leaves (the page cache survives a process kill).
func copyDir(t *testing.T, src, dst string) {
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Error(err)
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
}

// crashBetweenSealAndRoll writes 1 MiB entries until a segment fills and
// returns a copy of the log dir taken when the roll is about to commit its
// meta state, and the entries written.
func crashBetweenSealAndRoll(t *testing.T) (string, []*raft.Log) {
	dir, crash := t.TempDir(), t.TempDir()
	hook := &hookMeta{}
	l, err := openWALLogWith(dir, testHCLog(), walDeps{meta: func(b *metadb.BoltMetaDB) types.MetaStore {
		hook.MetaStore = b
		return hook
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hook.arm(func() { copyDir(t, dir, crash) })
	var all []*raft.Log
	for i := uint64(1); !hook.fired.Load() && i < 40; i++ {
		e := testEntries(i, 1, stuckEntry)
		if err := l.StoreLogs(e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e...)
	}
	if !hook.fired.Load() {
		t.Fatal("no segment roll")
	}
	return crash, all
}

// appendAfter opens dir, checks it holds want, and tries to append the next
// entry: three tries on one open store, then once more after a restart.
func appendAfter(t *testing.T, dir string, want []*raft.Log) {
	t.Helper()
	l, err := openWALLog(dir, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, l, want)
	next := testEntries(want[len(want)-1].Index+1, 1, 1000)
	var errs []error
	for try := 0; try < 4; try++ {
		if try == 3 {
			_ = l.Close()
			if l, err = openWALLog(dir, testHCLog(), nil); err != nil {
				t.Fatal(err)
			}
		}
		err := l.StoreLogs(next)
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	if len(errs) == 4 {
		_ = l.Close()
		t.Fatalf("last index %d: every append fails, across a restart too:\n%v\n%v\n%v\n%v",
			want[len(want)-1].Index, errs[0], errs[1], errs[2], errs[3])
	}
	if len(errs) > 0 {
		t.Logf("%d failed tries before success: %v", len(errs), errs)
	}
	checkEntriesAcrossReopen(t, l, dir, append(want, next...))
}

// A kill between the sealing append (acknowledged) and the roll's meta
// commit.
func TestWALLogFinishesARollInterruptedByAKill(t *testing.T) {
	crash, all := crashBetweenSealAndRoll(t)
	tail, last, indexStart := crashTail(t, crash)
	if !tail.SealTime.IsZero() || indexStart == 0 {
		t.Fatal("want a tail unsealed in meta, sealed on disk")
	}
	// 16 entries of 1 MiB fill the 16 MiB segment; the kill comes right
	// after the 16th, sealing, append was acknowledged
	if last != 16 {
		t.Fatalf("crash copy holds 1..%d, want the acknowledged 1..16", last)
	}
	appendAfter(t, crash, all[:last])
}

// The roll's meta commit fails (EIO) once; the meta store works again.
func TestWALLogFinishesARollWhoseMetaCommitFailed(t *testing.T) {
	dir := t.TempDir()
	l, meta, _ := openFaultyWAL(t, dir)
	meta.set(1)
	var all []*raft.Log
	var failed error
	for i := uint64(1); i < 40; i++ {
		e := testEntries(i, 1, stuckEntry)
		if failed = l.StoreLogs(e); failed != nil {
			break
		}
		all = append(all, e...)
	}
	if failed == nil || meta.failures() != 1 {
		t.Fatalf("want the append after a failed roll to fail: %v, %d meta failures", failed, meta.failures())
	}
	t.Logf("append after the failed roll: %v", failed)
	_ = l.Close()
	appendAfter(t, dir, all)
}

// crashTail reads the tail segment as wal-meta.db lists it and recovers
// its file: the last committed index and where its index array starts (0:
// not sealed on disk).
func crashTail(t *testing.T, dir string) (types.SegmentInfo, uint64, uint64) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	st, err := meta.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = meta.Close()
	tail := st.Segments[len(st.Segments)-1]
	w, err := segment.NewFiler(dir, fs.New()).RecoverTail(tail)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, indexStart, _ := w.Sealed()
	t.Logf("wal-meta.db: %d segments, tail %d (base %d) sealed in meta: %v; its file: last %d, index at %d",
		len(st.Segments), tail.ID, tail.BaseIndex, !tail.SealTime.IsZero(), w.LastIndex(), indexStart)
	return tail, w.LastIndex(), indexStart
}

// tornSeal edits the crash copy as a power loss during the sealing append
// can leave it: the commit frame after the index frame missing (and with
// garbleIndex, the index array too). It returns the last index before.
func tornSeal(t *testing.T, dir string, garbleIndex bool) uint64 {
	tail, last, indexStart := crashTail(t, dir)
	if !tail.SealTime.IsZero() || indexStart == 0 {
		t.Fatal("want a tail unsealed in meta, sealed on disk")
	}
	f, err := os.OpenFile(filepath.Join(dir, segment.FileName(tail)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], int64(indexStart)-8); err != nil || hdr[0] != segment.FrameIndex {
		t.Fatalf("no index frame header before %d: %v %v", indexStart, hdr, err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[4:]))
	commit := int64(indexStart) + (n+7)/8*8
	zero := make([]byte, 8)
	if garbleIndex {
		zero, commit = make([]byte, (n+7)/8*8+8), int64(indexStart)
	}
	if _, err := f.WriteAt(zero, commit); err != nil {
		t.Fatal(err)
	}
	return last
}

// Power loss during the sealing append: its commit frame never reached the
// disk (the append was not acknowledged: its entry goes), the index frame
// did, intact or torn. With the index intact for every entry before the
// torn append the segment is sealed there; with it torn, the index frame
// is unsealed (its header zeroed). Either way the log appends again.
func TestWALLogRecoversATornSeal(t *testing.T) {
	for _, garble := range []bool{false, true} {
		t.Run(map[bool]string{false: "index intact", true: "index torn"}[garble], func(t *testing.T) {
			crash, all := crashBetweenSealAndRoll(t)
			last := tornSeal(t, crash, garble)
			appendAfter(t, crash, all[:last-1])
		})
	}
}

// With the torn index of the test above, raft-wal's own way out — a suffix
// deletion (Raft deleting a conflicting suffix) seals the tail with
// ForceSeal, which returns the on-disk index as it is — serves garbage
// for the entries that stay.
func TestWALLogTornSealThenSuffixDeletion(t *testing.T) {
	crash, all := crashBetweenSealAndRoll(t)
	last := tornSeal(t, crash, true)
	l, err := openWALLog(crash, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	keep := all[:last-2] // the torn batch (last) is gone; delete last-1
	if err := l.DeleteRange(last-1, last-1); err != nil {
		t.Fatal(err)
	}
	checkEntriesAcrossReopen(t, l, crash, keep)
}

// diskFS models what a power loss keeps of raft-wal's segment files: a
// write reaches the disk image at the first successful fsync of its file
// after it; a write whose fsync failed never does (the kernel marks the
// pages clean and a later fsync reports success without writing them),
// although reads go on seeing it (the page cache).
type diskFS struct {
	*fs.FS
	mu       sync.Mutex
	image    map[string][]byte // file name → the bytes on disk
	dirty    map[string][][2]int64
	failSync func(name string) bool
	// noSync: Sync returns without syncing, and the written spans stay
	// dirty (a process killed right before its fsync; the page cache
	// keeps them, and a later fsync of the file writes them).
	noSync atomic.Bool
}

func newDiskFS() *diskFS {
	return &diskFS{FS: fs.New(), image: map[string][]byte{}, dirty: map[string][][2]int64{}}
}

func (d *diskFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	w, err := d.FS.Create(dir, name, size)
	if err == nil {
		d.mu.Lock()
		d.image[name] = make([]byte, size)
		d.mu.Unlock()
	}
	return &diskFile{WritableFile: w, d: d, dir: dir, name: name}, err
}

func (d *diskFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	w, err := d.FS.OpenWriter(dir, name)
	return &diskFile{WritableFile: w, d: d, dir: dir, name: name}, err
}

type diskFile struct {
	types.WritableFile
	d         *diskFS
	dir, name string
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.WritableFile.WriteAt(p, off)
	f.d.mu.Lock()
	f.d.dirty[f.name] = append(f.d.dirty[f.name], [2]int64{off, off + int64(n)})
	f.d.mu.Unlock()
	return n, err
}

func (f *diskFile) Sync() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.noSync.Load() {
		return nil
	}
	spans := f.d.dirty[f.name]
	delete(f.d.dirty, f.name)
	if f.d.failSync != nil && f.d.failSync(f.name) {
		return syscall.EIO // the spans are lost for good
	}
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	img := f.d.image[f.name]
	for _, s := range spans {
		if int64(len(img)) < s[1] {
			img = append(img, make([]byte, s[1]-int64(len(img)))...)
		}
		if _, err := f.WritableFile.ReadAt(img[s[0]:s[1]], s[0]); err != nil {
			return err
		}
	}
	f.d.image[f.name] = img
	return nil
}

// powerLoss writes into a new directory what the disk holds: the segment
// images and the meta store (Bolt fsyncs its own commits).
func (d *diskFS) powerLoss(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	copyDir(t, dir, out)
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, img := range d.image {
		if err := os.WriteFile(filepath.Join(out, name), img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// unsyncedTail is a log dir over a diskFS holding entries 1..5 fsynced and
// 6..8 written but not (a kill before their fsync), closed.
func unsyncedTail(t *testing.T) (string, *diskFS) {
	t.Helper()
	dir := t.TempDir()
	d := newDiskFS()
	l, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: d})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.StoreLogs(testEntries(1, 5, 100)); err != nil {
		t.Fatal(err)
	}
	d.noSync.Store(true) // killed before the fsync of 6..8
	if err := l.StoreLogs(testEntries(6, 3, 100)); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	d.noSync.Store(false)
	return dir, d
}

// TestWALLogRecoveredTailIsDurable: an agent killed after writing entries
// and before fsyncing them finds them in the page cache when it restarts,
// and counts them durable from then on (the leader's write behind starts
// its durable index at the last one: it applies them and tells followers
// they are committed). Opening the log must therefore make them durable:
// after a power loss that follows the restart, every entry up to that
// index is still there.
func TestWALLogRecoveredTailIsDurable(t *testing.T) {
	dir, d := unsyncedTail(t)

	l2, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: d}) // the restart
	if err != nil {
		t.Fatal(err)
	}
	ll, err := newLeaderLog(l2, func() bool { return false }, slog.New(slog.DiscardHandler), make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	durable := ll.Durable()
	_ = ll.Close()
	_ = l2.Close()
	if durable != 8 {
		t.Fatalf("durable index %d after the restart, want 8 (the recovered tail)", durable)
	}

	l3, err := openWALLog(d.powerLoss(t, dir), testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	want := testEntries(1, 8, 100)
	for _, e := range want {
		var got raft.Log
		if err := l3.GetLog(e.Index, &got); err != nil || !bytes.Equal(got.Data, e.Data) {
			t.Fatalf("entry %d, counted durable after the restart, lost in the power loss: %v", e.Index, err)
		}
	}
}

// TestWALLogRepairedSealSurvivesAPowerLoss: the fsync of the append that
// seals a segment fails (EIO); the reopen after the failed write finds the
// seal in the page cache and finishes the roll. The seal must then be on
// disk: committed to the meta store as sealed, raft-wal reads the
// acknowledged entries through that index for good, and an index that
// only the page cache held reads back as zeros after a power loss.
func TestWALLogRepairedSealSurvivesAPowerLoss(t *testing.T) {
	dir := t.TempDir()
	d := newDiskFS()
	var fail atomic.Bool
	d.failSync = func(string) bool { return fail.Load() }
	l, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: d})
	if err != nil {
		t.Fatal(err)
	}
	var acked []*raft.Log
	for i := uint64(1); i < 40; i++ {
		e := testEntries(i, 1, stuckEntry)
		fail.Store(i == 16) // the 16th 1 MiB entry fills and seals the 16 MiB segment
		if err := l.StoreLogs(e); err != nil {
			if i != 16 {
				t.Fatalf("entry %d: %v", i, err)
			}
			break
		}
		acked = append(acked, e...)
	}
	fail.Store(false)
	if len(acked) != 15 {
		t.Fatalf("%d entries stored before the failed seal, want 15", len(acked))
	}
	_ = l.Close()
	disk := d.powerLoss(t, dir)
	l2, err := openWALLog(disk, testHCLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, e := range acked {
		var got raft.Log
		if err := l2.GetLog(e.Index, &got); err != nil || !bytes.Equal(got.Data, e.Data) {
			t.Fatalf("acknowledged entry %d after the power loss: %v", e.Index, err)
		}
	}
}

// TestWALLogFailedStartSyncIsRefusedAfterwards: the start-up fsync of a
// tail written but never fsynced (a kill before the fsync) fails, so the
// agent does not start. The next start's fsync succeeds — the kernel marked
// the pages clean — although the disk never got them: that start must be
// refused too, not count the tail durable.
func TestWALLogFailedStartSyncIsRefusedAfterwards(t *testing.T) {
	dir, d := unsyncedTail(t)

	var fail atomic.Bool
	fail.Store(true)
	d.failSync = func(string) bool { return fail.Load() }
	if l2, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: d}); err == nil {
		_ = l2.Close()
		t.Fatal("the start whose fsync failed opened the log")
	}
	fail.Store(false)
	l3, err := openWALLogWith(dir, testHCLog(), walDeps{vfs: d})
	if err == nil {
		_ = l3.Close()
		t.Fatal("the next start opened the log although its tail never reached the disk")
	}
	if !errors.Is(err, ErrRaftLogSyncFailed) {
		t.Fatalf("the next start: %v, want ErrRaftLogSyncFailed", err)
	}
}
