package wal

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
)

func memWrite(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func memContent(t *testing.T, m *MemFS, name string) string {
	t.Helper()
	b, err := m.ReadFile(name)
	if err != nil {
		return "<missing>"
	}
	return string(b)
}

func TestMemFSStrictCrash(t *testing.T) {
	m := NewStrictMemFS()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	// a: created, written, synced, dir synced, then more unsynced writes.
	a, err := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	memWrite(t, a, "hello")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	memWrite(t, a, " world")
	// c: durable, then removed without SyncDir; e: durable, renamed without SyncDir.
	c, _ := m.OpenFile("/d/c", os.O_RDWR|os.O_CREATE, 0o644)
	memWrite(t, c, "ccc")
	_ = c.Sync()
	e, _ := m.OpenFile("/d/e", os.O_RDWR|os.O_CREATE, 0o644)
	memWrite(t, e, "eee")
	_ = e.Sync()
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	// b: synced data but its creation never covered by SyncDir.
	b, _ := m.OpenFile("/d/b", os.O_RDWR|os.O_CREATE, 0o644)
	memWrite(t, b, "bbb")
	_ = b.Sync()
	if err := m.Remove("/d/c"); err != nil {
		t.Fatal(err)
	}
	if err := m.Rename("/d/e", "/d/f"); err != nil {
		t.Fatal(err)
	}
	// Truncate below the synced size without syncing.
	if err := a.Truncate(2); err != nil {
		t.Fatal(err)
	}

	if got := memContent(t, m, "/d/a"); got != "he" {
		t.Fatalf("live a = %q", got)
	}
	clone := m.CrashClone()
	check := func(fsys *MemFS) {
		t.Helper()
		for name, want := range map[string]string{
			"/d/a": "hello", "/d/b": "<missing>", "/d/c": "ccc", "/d/e": "eee", "/d/f": "<missing>",
		} {
			if got := memContent(t, fsys, name); got != want {
				t.Errorf("after crash %s = %q, want %q", name, got, want)
			}
		}
		names, _ := fsys.ReadDir("/d")
		if !slices.Equal(names, []string{"a", "c", "e"}) {
			t.Errorf("after crash ReadDir = %v", names)
		}
	}
	check(clone)
	// The original is unaffected by CrashClone.
	if got := memContent(t, m, "/d/f"); got != "eee" {
		t.Fatalf("live f = %q", got)
	}
	m.Crash()
	check(m)
	// Old handles are dead after Crash; the FS is usable.
	if _, err := a.Write([]byte("x")); err == nil {
		t.Fatal("write through a pre-crash handle succeeded")
	}
	if err := a.Sync(); err == nil {
		t.Fatal("sync through a pre-crash handle succeeded")
	}
	a2, err := m.OpenFile("/d/a", os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	memWrite(t, a2, "!")
	if got := memContent(t, m, "/d/a"); got != "hello!" {
		t.Fatalf("after crash and append: %q", got)
	}
	// Unsynced again: a second crash goes back to "hello".
	if got := memContent(t, m.CrashClone(), "/d/a"); got != "hello" {
		t.Fatalf("second crash: %q", got)
	}
}

func TestMemFSSyncAfterRewrite(t *testing.T) {
	m := NewStrictMemFS()
	f, _ := m.OpenFile("/x", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	_ = m.SyncDir("/")
	memWrite(t, f, "abcdef")
	_ = f.Sync()
	_ = f.Truncate(3)
	memWrite(t, f, "XYZW")
	_ = f.Sync()
	memWrite(t, f, "tail")
	if got := memContent(t, m.CrashClone(), "/x"); got != "abcXYZW" {
		t.Fatalf("durable = %q", got)
	}
}

func TestMemFSNonStrictKeepsEverything(t *testing.T) {
	m := NewMemFS()
	f, _ := m.OpenFile("/x", os.O_RDWR|os.O_CREATE, 0o644)
	memWrite(t, f, "data")
	if got := memContent(t, m.CrashClone(), "/x"); got != "data" {
		t.Fatalf("non-strict clone = %q", got)
	}
}

func TestMemFSFileSemantics(t *testing.T) {
	m := NewMemFS()
	if _, err := m.OpenFile("/nodir/x", os.O_RDWR|os.O_CREATE, 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("create in a missing dir: %v", err)
	}
	if _, err := m.OpenFile("/x", os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	f, _ := m.OpenFile("/x", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if _, err := m.OpenFile("/x", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on existing: %v", err)
	}
	memWrite(t, f, "0123456789")
	buf := make([]byte, 4)
	if n, err := f.ReadAt(buf, 8); n != 2 || !errors.Is(err, io.EOF) {
		t.Fatalf("short ReadAt = %d, %v", n, err)
	}
	ro, _ := m.OpenFile("/x", os.O_RDONLY, 0)
	if _, err := ro.Write([]byte("x")); err == nil {
		t.Fatal("write to read-only handle")
	}
	if sz, _ := ro.Size(); sz != 10 {
		t.Fatalf("Size = %d", sz)
	}
	// Without O_APPEND, writes go at the handle's offset.
	w, _ := m.OpenFile("/x", os.O_WRONLY, 0)
	memWrite(t, w, "ab")
	if got := memContent(t, m, "/x"); got != "ab23456789" {
		t.Fatalf("content = %q", got)
	}
	tr, _ := m.OpenFile("/x", os.O_WRONLY|os.O_TRUNC, 0)
	if got := memContent(t, m, "/x"); got != "" {
		t.Fatalf("after O_TRUNC = %q", got)
	}
	_ = tr.Close()
	if err := tr.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("double close: %v", err)
	}
	// A removed file stays readable through an open handle (f writes at
	// its own offset, 10, past the truncated end).
	memWrite(t, f, "keep")
	if err := m.Remove("/x"); err != nil {
		t.Fatal(err)
	}
	if n, err := f.ReadAt(buf, 10); n != 4 || err != nil || string(buf) != "keep" {
		t.Fatalf("read after remove: %q %v", buf[:n], err)
	}
	if err := m.Remove("/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestMemFSFaults(t *testing.T) {
	m := NewStrictMemFS()
	f, _ := m.OpenFile("/x", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	m.InjectError(OpWrite, syscall.ENOSPC)
	n, err := f.Write([]byte("abcdef"))
	if !errors.Is(err, syscall.ENOSPC) || n != 3 {
		t.Fatalf("injected write = %d, %v; want a short write and ENOSPC", n, err)
	}
	m.InjectError(OpWrite, nil)
	m.InjectError(OpSync, syscall.EIO)
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("injected sync: %v", err)
	}
	if m.Syncs() != 0 {
		t.Fatal("failed sync counted")
	}
	m.InjectError(OpSync, nil)
	var seen []Op
	m.SetHook(func(op Op, path string) error {
		seen = append(seen, op)
		if op == OpRename {
			return syscall.EROFS
		}
		return nil
	})
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.Rename("/x", "/y"); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("hooked rename: %v", err)
	}
	if _, err := m.ReadFile("/x"); err != nil {
		t.Fatal("failed rename had an effect")
	}
	if !slices.Equal(seen, []Op{OpSync, OpRename}) || m.Syncs() != 1 {
		t.Fatalf("hook saw %v, syncs %d", seen, m.Syncs())
	}
}

// TestMemFSGrowthCopiesNoOldContent: appending to a large in-memory file
// (a WAL segment with WAL_ENABLED=false grows to WAL_SEGMENT_BYTES, 64 MiB
// by default) must not reallocate and copy what the file already holds.
// A file kept as one slice did, on every growth step, under the MemFS lock
// that every WAL read and write takes: the agent's applies stalled for
// 100-400 ms at 20,000 records/s.
func TestMemFSGrowthCopiesNoOldContent(t *testing.T) {
	m := NewMemFS()
	f, err := m.OpenFile("/seg", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const write, total = 64 << 10, 64 << 20
	buf := make([]byte, write)
	var ms runtime.MemStats
	worst := uint64(0)
	for written := 0; written < total; written += write {
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		worst = max(worst, ms.TotalAlloc-before)
	}
	if worst > 2*memChunkBytes {
		t.Fatalf("one %d-byte append allocated %d bytes: the file's old content was copied", write, worst)
	}
	if sz, _ := f.Size(); sz != total {
		t.Fatalf("Size = %d, want %d", sz, total)
	}
}

// TestMemFSMatchesAFlatModel checks reads, writes at any offset (gaps read
// as zeros), truncation and strict-mode crashes against a plain byte
// slice, with writes and truncations across the storage's chunk
// boundaries.
func TestMemFSMatchesAFlatModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewStrictMemFS()
	f, _ := m.OpenFile("/x", os.O_RDWR|os.O_CREATE, 0o644)
	w, _ := m.OpenFile("/x", os.O_WRONLY|os.O_APPEND, 0)
	_ = m.SyncDir("/")
	var live, synced []byte
	span := 3*memChunkBytes + 17
	for i := 0; i < 400; i++ {
		switch op := rng.IntN(10); {
		case op < 5: // write at an offset, possibly past the end
			off := rng.IntN(span)
			p := make([]byte, rng.IntN(memChunkBytes/2)+1)
			for j := range p {
				p[j] = byte(rng.IntN(255) + 1)
			}
			mw := memFileAt(t, f, off)
			if _, err := mw.Write(p); err != nil {
				t.Fatal(err)
			}
			live = resized(live, max(len(live), off+len(p)))
			copy(live[off:], p)
		case op < 6: // append
			p := []byte{byte(i), byte(i >> 8), 7}
			memWrite(t, w, string(p))
			live = append(live, p...)
		case op < 8:
			size := rng.IntN(span)
			if err := f.Truncate(int64(size)); err != nil {
				t.Fatal(err)
			}
			live = resized(live, size)
		case op < 9:
			_ = f.Sync()
			synced = slices.Clone(live)
		default:
			off := rng.IntN(len(live) + 1)
			got := make([]byte, rng.IntN(memChunkBytes)+1)
			n, _ := f.ReadAt(got, int64(off))
			if want := live[off:min(off+len(got), len(live))]; !slices.Equal(got[:n], want) {
				t.Fatalf("op %d: ReadAt(%d) differs from the model", i, off)
			}
		}
		if b, _ := m.ReadFile("/x"); !slices.Equal(b, live) {
			t.Fatalf("op %d: content differs from the model (len %d, want %d)", i, len(b), len(live))
		}
		if sz, _ := f.Size(); sz != int64(len(live)) {
			t.Fatalf("op %d: Size = %d, want %d", i, sz, len(live))
		}
	}
	if b, _ := m.CrashClone().ReadFile("/x"); !slices.Equal(b, synced) {
		t.Fatalf("after a crash: len %d, want the synced %d bytes", len(b), len(synced))
	}
}

// memFileAt opens a write handle on f's file positioned at off (MemFS
// writes go at the handle's offset; a fresh handle starts at 0).
func memFileAt(t *testing.T, f File, off int) File {
	t.Helper()
	mf := f.(*memFile)
	h, err := mf.fs.OpenFile(mf.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.(*memFile).off = off
	return h
}
