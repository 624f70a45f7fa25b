package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const testDir = "/wal"

// payload returns deterministic, index-dependent data of length n.
func payload(index uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(index*31 + uint64(i)*7)
	}
	if n >= 8 {
		binary.LittleEndian.PutUint64(b, index)
	}
	return b
}

func entry(index uint64, n int) Entry { return Entry{Index: index, Data: payload(index, n)} }

func openWAL(t testing.TB, opts Options) *WAL {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = testDir
	}
	w, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func mustAppend(t testing.TB, w *WAL, entries ...Entry) {
	t.Helper()
	if err := w.Append(context.Background(), entries...); err != nil {
		t.Fatalf("Append(%d entries starting at %d): %v", len(entries), entries[0].Index, err)
	}
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// all returns every entry via Iterate.
func all(t testing.TB, w *WAL) []Entry {
	t.Helper()
	var out []Entry
	if err := w.Iterate(0, func(index uint64, data []byte) error {
		out = append(out, Entry{index, data})
		return nil
	}); err != nil {
		t.Fatalf("Iterate: %v", err)
	}
	return out
}

func equalEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Index == y.Index && bytes.Equal(x.Data, y.Data)
	})
}

func describe(es []Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	idx := make([]uint64, len(es))
	for i, e := range es {
		idx[i] = e.Index
	}
	return fmt.Sprint(idx)
}

// segmentFiles lists the segment file names in dir.
func segmentFiles(t testing.TB, fsys FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	var segs []string
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok {
			segs = append(segs, n)
		}
	}
	return segs
}

// writeFile creates a durable file on fsys.
func writeFile(t testing.TB, fsys FS, name string, data []byte) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, fsys FS, name string) []byte {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); n != len(b) {
		t.Fatalf("ReadAt %s: %d of %d bytes: %v", name, n, size, err)
	}
	return b
}

// segmentImage builds a segment file image with the given entries.
func segmentImage(base uint64, entries ...Entry) []byte {
	b := encodeHeader(base)
	for _, e := range entries {
		b = appendFrame(b, e.Index, e.Data)
	}
	return b
}

func wantErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one wrapping %v", err, target)
	}
}

// resized returns b cut or zero-extended to size, as a file truncated to
// size reads (the model of the MemFS and lossy FS tests).
func resized(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}
