package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// lossyContent reads name through fsys (the whole file).
func lossyContent(t *testing.T, fsys FS, name string) []byte {
	t.Helper()
	return readFile(t, fsys, name)
}

func lossyOpen(t *testing.T, fsys FS, name string, flag int) File {
	t.Helper()
	f, err := fsys.OpenFile(name, flag, 0o644)
	if err != nil {
		t.Fatalf("OpenFile %s: %v", name, err)
	}
	return f
}

func lossyWrite(t *testing.T, f File, s string) {
	t.Helper()
	if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestLossyFSLosesUnsyncedWritesOnCrash(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	l := NewLossyFS(OSFS{})
	f := lossyOpen(t, l, name, os.O_RDWR|os.O_CREATE|os.O_APPEND)
	lossyWrite(t, f, "hello")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	lossyWrite(t, f, " world")
	// The process sees its own writes...
	if got := lossyContent(t, l, name); string(got) != "hello world" {
		t.Fatalf("live view %q", got)
	}
	if size, _ := f.Size(); size != 11 {
		t.Fatalf("Size %d, want 11", size)
	}
	buf := make([]byte, 6)
	if n, err := f.ReadAt(buf, 3); n != 6 || err != nil || string(buf) != "lo wor" {
		t.Fatalf("ReadAt across the synced boundary: %d %v %q", n, err, buf)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err == nil || string(buf[:n]) != "rld" {
		t.Fatalf("ReadAt past the end: %d %v %q", n, err, buf[:n])
	}
	// ...but the disk has only the synced part, and so has the next
	// process (a new LossyFS over the same directory).
	if got, _ := os.ReadFile(name); string(got) != "hello" {
		t.Fatalf("disk %q, want %q", got, "hello")
	}
	if got := lossyContent(t, NewLossyFS(OSFS{}), name); string(got) != "hello" {
		t.Fatalf("after crash %q", got)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(name); string(got) != "hello world" {
		t.Fatalf("disk after Sync %q", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
}

func TestLossyFSBufferedBytesOutliveCloseAndFollowRename(t *testing.T) {
	dir := t.TempDir()
	tmp, final := filepath.Join(dir, "x.tmp"), filepath.Join(dir, "x")
	l := NewLossyFS(OSFS{})
	f := lossyOpen(t, l, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL) // no O_APPEND: sequential writes
	lossyWrite(t, f, "abc")
	lossyWrite(t, f, "def")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	if got := lossyContent(t, l, final); string(got) != "abcdef" {
		t.Fatalf("after close and rename %q", got)
	}
	if got, _ := os.ReadFile(final); len(got) != 0 {
		t.Fatalf("disk %q, want empty (never synced)", got)
	}
	// A read-only handle's Sync writes the buffered bytes (fsync on any
	// descriptor flushes the file).
	r := lossyOpen(t, l, final, os.O_RDONLY)
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	if got, _ := os.ReadFile(final); string(got) != "abcdef" {
		t.Fatalf("disk after Sync %q", got)
	}
	// Remove drops buffered bytes: a new file at the path starts empty.
	w := lossyOpen(t, l, final, os.O_WRONLY|os.O_APPEND)
	lossyWrite(t, w, "zzz")
	_ = w.Close()
	if err := l.Remove(final); err != nil {
		t.Fatal(err)
	}
	n := lossyOpen(t, l, final, os.O_RDWR|os.O_CREATE)
	if size, _ := n.Size(); size != 0 {
		t.Fatalf("recreated file has size %d", size)
	}
	_ = n.Close()
}

func TestLossyFSTruncate(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "t")
	l := NewLossyFS(OSFS{})
	f := lossyOpen(t, l, name, os.O_RDWR|os.O_CREATE|os.O_APPEND)
	defer f.Close()
	lossyWrite(t, f, "0123456789")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	lossyWrite(t, f, "abcdef")
	// Within the buffered tail: nothing reaches the disk.
	if err := f.Truncate(13); err != nil {
		t.Fatal(err)
	}
	if got := lossyContent(t, l, name); string(got) != "0123456789abc" {
		t.Fatalf("after truncating the tail %q", got)
	}
	// Below the synced size: goes to the disk, drops the tail.
	if err := f.Truncate(4); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(name); string(got) != "0123" {
		t.Fatalf("disk after truncating below the synced size %q", got)
	}
	// Growing is buffered like a write of zeros.
	if err := f.Truncate(6); err != nil {
		t.Fatal(err)
	}
	if got := lossyContent(t, l, name); !bytes.Equal(got, []byte("0123\x00\x00")) {
		t.Fatalf("after growing %q", got)
	}
	if got, _ := os.ReadFile(name); string(got) != "0123" {
		t.Fatalf("disk after growing %q", got)
	}
	lossyWrite(t, f, "x")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(name); !bytes.Equal(got, []byte("0123\x00\x00x")) {
		t.Fatalf("disk after sync %q", got)
	}
}

// TestLossyFSMatchesModel runs random operations and checks the live view
// and, after each simulated crash, the surviving content against a model:
// live = everything written; durable = content as of the last Sync.
func TestLossyFSMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := t.TempDir()
			name := filepath.Join(dir, "m")
			var live, durable []byte
			l := NewLossyFS(OSFS{})
			f := lossyOpen(t, l, name, os.O_RDWR|os.O_CREATE|os.O_APPEND)
			for step := 0; step < 200; step++ {
				switch op := rng.IntN(10); {
				case op < 5:
					b := make([]byte, rng.IntN(20))
					for i := range b {
						b[i] = byte('a' + rng.IntN(26))
					}
					lossyWrite(t, f, string(b))
					live = append(live, b...)
				case op == 5:
					if err := f.Sync(); err != nil {
						t.Fatal(err)
					}
					durable = append(durable[:0], live...)
				case op == 6:
					size := rng.IntN(len(live) + 5)
					if err := f.Truncate(int64(size)); err != nil {
						t.Fatal(err)
					}
					live = resized(live, size)
					if size < len(durable) {
						// A truncation below the synced size goes to disk.
						durable = durable[:size]
					}
				case op == 7:
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					f = lossyOpen(t, l, name, os.O_RDWR|os.O_APPEND)
				case op == 8:
					// Crash: a new process sees only the durable content.
					_ = f.Close()
					l = NewLossyFS(OSFS{})
					f = lossyOpen(t, l, name, os.O_RDWR|os.O_APPEND)
					live = append(live[:0], durable...)
				default:
					if len(live) > 0 {
						off := rng.IntN(len(live))
						n := rng.IntN(len(live) - off + 1)
						buf := make([]byte, n)
						if got, err := f.ReadAt(buf, int64(off)); got != n || (err != nil && n > 0) {
							t.Fatalf("step %d: ReadAt(%d, %d) = %d, %v", step, n, off, got, err)
						}
						if !bytes.Equal(buf, live[off:off+n]) {
							t.Fatalf("step %d: ReadAt(%d, %d) = %q, want %q", step, n, off, buf, live[off:off+n])
						}
					}
				}
				if got := lossyContent(t, l, name); !bytes.Equal(got, live) {
					t.Fatalf("step %d: live view %q, want %q", step, got, live)
				}
				if got, _ := os.ReadFile(name); !bytes.HasPrefix(got, durable) {
					t.Fatalf("step %d: disk %q lacks the durable %q", step, got, durable)
				}
			}
			_ = f.Close()
		})
	}
}

// TestWALOnLossyFSKeepsSyncedEntriesAcrossCrash: a WAL on LossyFS reads
// its unsynced entries while it runs; after a crash (a new LossyFS over the
// same directory, the old instance never closed) exactly the synced entries
// are back and the WAL opens cleanly.
func TestWALOnLossyFSKeepsSyncedEntriesAcrossCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	l := NewLossyFS(OSFS{})
	w1, err := Open(Options{Dir: dir, FS: l})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, w1, entry(i, 100))
	}
	mustClose(t, w1)
	// The syncer of w2 waits an hour before syncing: AppendAsync entries
	// stay unsynced (only in the LossyFS's memory).
	w2, err := Open(Options{Dir: dir, FS: l, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w2.Close() })
	for i := uint64(11); i <= 20; i++ {
		if err := w2.AppendAsync(entry(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := w2.Read(20); err != nil || !bytes.Equal(got, payload(20, 100)) {
		t.Fatalf("unsynced entry not readable while running: %v", err)
	}
	// Crash.
	w3, err := Open(Options{Dir: dir, FS: NewLossyFS(OSFS{})})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	got := all(t, w3)
	var want []Entry
	for i := uint64(1); i <= 10; i++ {
		want = append(want, entry(i, 100))
	}
	if !equalEntries(got, want) {
		t.Fatalf("after crash: entries %s, want %s", describe(got), describe(want))
	}
	// The recovered WAL continues where the synced part ends.
	mustAppend(t, w3, entry(11, 50))
	mustClose(t, w3)
}
