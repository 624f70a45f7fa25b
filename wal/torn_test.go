package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// twoSegments writes a complete first segment (entries 1..3) and returns the
// image of a second one (entries 4..7) and the offset of its last frame.
func twoSegments(t *testing.T, fsys *MemFS) (all []Entry, second []byte, lastOff int) {
	t.Helper()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 7; i++ {
		all = append(all, entry(i, int(i)*9))
	}
	writeFile(t, fsys, filepath.Join(testDir, segmentName(1)), segmentImage(1, all[:3]...))
	second = segmentImage(4, all[3:]...)
	lastOff = len(segmentImage(4, all[3:6]...))
	return all, second, lastOff
}

func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestTornTailEveryCut(t *testing.T) {
	probe := NewMemFS()
	_, img, lastOff := twoSegments(t, probe)
	seg2 := filepath.Join(testDir, segmentName(4))
	for cut := lastOff; cut < len(img); cut++ {
		for _, zeroFill := range []bool{false, true} {
			fsys := NewMemFS()
			entries, img, _ := twoSegments(t, fsys)
			damaged := append([]byte(nil), img[:cut]...)
			if zeroFill { // the rest of the frame is there but zeroed
				damaged = append(damaged, make([]byte, len(img)-cut)...)
			}
			writeFile(t, fsys, seg2, damaged)
			logger, logs := logBuffer()
			w, err := Open(Options{Dir: testDir, FS: fsys, Logger: logger})
			if err != nil {
				t.Fatalf("cut at %d (zero fill %v): Open: %v", cut, zeroFill, err)
			}
			if got := all(t, w); !equalEntries(got, entries[:6]) {
				t.Fatalf("cut at %d: entries %s", cut, describe(got))
			}
			if got := readFile(t, fsys, seg2); !bytes.Equal(got, img[:lastOff]) {
				t.Fatalf("cut at %d: segment is %d bytes after repair, want %d", cut, len(got), lastOff)
			}
			torn, err := fsys.ReadFile(seg2 + tornSuffix)
			if len(damaged) == lastOff {
				if err == nil {
					t.Fatalf("cut at a frame boundary wrote a .torn file")
				}
			} else {
				if !bytes.Equal(torn, damaged[lastOff:]) {
					t.Fatalf("cut at %d: .torn holds %d bytes (%v), want the %d cut bytes", cut, len(torn), err, len(damaged)-lastOff)
				}
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), seg2) {
					t.Fatalf("cut at %d: no WARN naming the file: %q", cut, logs.String())
				}
			}
			// The repaired log takes new appends and reopens cleanly.
			mustAppend(t, w, entry(7, 5))
			mustClose(t, w)
			w = openWAL(t, Options{FS: fsys})
			if got := all(t, w); !equalEntries(got, append(entries[:6:6], entry(7, 5))) {
				t.Fatalf("cut at %d: after append and reopen: %s", cut, describe(got))
			}
			mustClose(t, w)
		}
	}
}

func TestZeroFilledTail(t *testing.T) {
	for _, n := range []int{1, 8, 15, 16, 17, 100, 4096} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fsys := NewMemFS()
			entries, img, _ := twoSegments(t, fsys)
			seg2 := filepath.Join(testDir, segmentName(4))
			writeFile(t, fsys, seg2, append(append([]byte(nil), img...), make([]byte, n)...))
			w := openWAL(t, Options{FS: fsys})
			if got := all(t, w); !equalEntries(got, entries) {
				t.Fatalf("entries %s", describe(got))
			}
			if torn, _ := fsys.ReadFile(seg2 + tornSuffix); !bytes.Equal(torn, make([]byte, n)) {
				t.Fatalf(".torn holds %d bytes", len(torn))
			}
		})
	}
}

func TestTornTailOfOnlySegmentLeavesEmptyLog(t *testing.T) {
	fsys := NewMemFS()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := segmentImage(5, entry(5, 50))
	writeFile(t, fsys, filepath.Join(testDir, segmentName(5)), img[:len(img)-10])
	w := openWAL(t, Options{FS: fsys})
	if w.FirstIndex() != 0 || w.LastIndex() != 0 || len(all(t, w)) != 0 {
		t.Fatalf("first %d last %d", w.FirstIndex(), w.LastIndex())
	}
	mustAppend(t, w, entry(3, 5)) // below the empty segment's name
	mustClose(t, w)
	w = openWAL(t, Options{FS: fsys})
	if got := all(t, w); !equalEntries(got, []Entry{entry(3, 5)}) {
		t.Fatalf("entries %s", describe(got))
	}
}

func TestRepeatedRepairsKeepEveryCopy(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{FS: fsys}
	w := openWAL(t, opts)
	mustAppend(t, w, entry(1, 10))
	mustClose(t, w)
	seg := filepath.Join(testDir, segmentName(1))
	for i, junk := range [][]byte{{1, 2, 3}, {4, 5}} {
		f, err := fsys.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(junk); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		w = openWAL(t, opts)
		mustClose(t, w)
		side := seg + tornSuffix
		if i > 0 {
			side = fmt.Sprintf("%s.%d", side, i)
		}
		if got, err := fsys.ReadFile(side); err != nil || !bytes.Equal(got, junk) {
			t.Fatalf("repair %d: %s = %v, %v", i, side, got, err)
		}
	}
}

// flipBytes returns a copy of img with byte i inverted.
func flipped(img []byte, i int) []byte {
	c := append([]byte(nil), img...)
	c[i] ^= 0xff
	return c
}

func TestMidLogCorruptionEveryByte(t *testing.T) {
	var entries []Entry
	for i := uint64(1); i <= 5; i++ {
		entries = append(entries, entry(i, 24))
	}
	img := segmentImage(1, entries...)
	start := len(segmentImage(1, entries[:2]...)) // frame of entry 3
	end := len(segmentImage(1, entries[:3]...))
	path := filepath.Join(testDir, segmentName(1))
	for i := start; i < end; i++ {
		fsys := NewMemFS()
		if err := fsys.MkdirAll(testDir, 0o755); err != nil {
			t.Fatal(err)
		}
		bad := flipped(img, i)
		writeFile(t, fsys, path, bad)
		_, err := Open(Options{Dir: testDir, FS: fsys})
		var ce *CorruptionError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
			t.Fatalf("flip at %d: Open error %v, want ErrCorrupt", i, err)
		}
		if ce.File != path || ce.Offset != int64(start) {
			t.Fatalf("flip at %d: error names %s offset %d, want %s offset %d", i, ce.File, ce.Offset, path, start)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprint(start)) {
			t.Fatalf("error text %q lacks file or offset", err)
		}
		// Never repaired silently: the file is untouched and no copy made.
		if got := readFile(t, fsys, path); !bytes.Equal(got, bad) {
			t.Fatalf("flip at %d: Open modified a corrupt segment", i)
		}
		if _, err := fsys.ReadFile(path + tornSuffix); err == nil {
			t.Fatalf("flip at %d: .torn written for mid-log corruption", i)
		}
	}
}

func TestCorruptionInNonLastSegment(t *testing.T) {
	seg1 := filepath.Join(testDir, segmentName(1))
	tests := []struct {
		name   string
		damage func(img []byte) []byte
	}{
		{"flip in last frame", func(img []byte) []byte { return flipped(img, len(img)-3) }},
		{"truncated last frame", func(img []byte) []byte { return img[:len(img)-5] }},
		{"zero tail", func(img []byte) []byte { return append(img, make([]byte, 32)...) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewMemFS()
			_, second, _ := twoSegments(t, fsys)
			writeFile(t, fsys, filepath.Join(testDir, segmentName(4)), second)
			img := readFile(t, fsys, seg1)
			writeFile(t, fsys, seg1, tc.damage(img))
			_, err := Open(Options{Dir: testDir, FS: fsys})
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.File != seg1 {
				t.Fatalf("Open: %v, want corruption in %s", err, seg1)
			}
		})
	}
}

func TestCorruptHeadersAndOrder(t *testing.T) {
	reheader := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
		return b
	}
	e := func(i uint64) Entry { return entry(i, 12) }
	tests := []struct {
		name  string
		files map[uint64][]byte
		bad   uint64 // segment named in the error
	}{
		{"bad magic", map[uint64][]byte{1: append([]byte("XXXX"), segmentImage(1, e(1))[4:]...)}, 1},
		{"header checksum", map[uint64][]byte{1: flipped(segmentImage(1, e(1)), 9)}, 1},
		{"future version", map[uint64][]byte{1: reheader(func() []byte {
			b := segmentImage(1, e(1))
			b[4] = 2
			return b
		}())}, 1},
		{"short header", map[uint64][]byte{1: segmentImage(1)[:headerSize-1]}, 1},
		{"empty file", map[uint64][]byte{1: {}}, 1},
		{"base differs from name", map[uint64][]byte{2: segmentImage(1, e(1))}, 2},
		{"first index differs from base", map[uint64][]byte{1: segmentImage(1, e(2))}, 1},
		{"index not increasing", map[uint64][]byte{1: segmentImage(1, e(1), e(3), e(3))}, 1},
		{"index decreasing at tail", map[uint64][]byte{1: segmentImage(1, e(1), e(5), e(4))}, 1},
		{"overlapping segments", map[uint64][]byte{
			1: segmentImage(1, e(1), e(2), e(3)),
			3: segmentImage(3, e(3), e(4)),
		}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewMemFS()
			if err := fsys.MkdirAll(testDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for base, img := range tc.files {
				writeFile(t, fsys, filepath.Join(testDir, segmentName(base)), img)
			}
			_, err := Open(Options{Dir: testDir, FS: fsys})
			var ce *CorruptionError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if want := filepath.Join(testDir, segmentName(tc.bad)); ce.File != want {
				t.Fatalf("error names %s, want %s", ce.File, want)
			}
			for base, img := range tc.files {
				if got := readFile(t, fsys, filepath.Join(testDir, segmentName(base))); !bytes.Equal(got, img) {
					t.Fatalf("Open modified segment %d", base)
				}
			}
		})
	}
}

func TestTornTailOnOSFS(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir}
	w := openWAL(t, opts)
	mustAppend(t, w, entry(1, 100), entry(2, 100))
	mustClose(t, w)
	seg := filepath.Join(dir, segmentName(1))
	img, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, img[:len(img)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	w = openWAL(t, opts)
	if got := all(t, w); !equalEntries(got, []Entry{entry(1, 100)}) {
		t.Fatalf("entries %s", describe(got))
	}
	torn, err := os.ReadFile(seg + tornSuffix)
	if err != nil || !bytes.Equal(torn, img[len(img)-116:len(img)-40]) {
		t.Fatalf(".torn = %d bytes, %v", len(torn), err)
	}
	// Mid-log corruption on real files.
	mustAppend(t, w, entry(2, 100), entry(3, 100))
	mustClose(t, w)
	img, _ = os.ReadFile(seg)
	img[headerSize+frameHeaderSize+3] ^= 1
	if err := os.WriteFile(seg, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(opts); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
}

func TestLastFrameBitFlipIsTreatedAsTornTail(t *testing.T) {
	// A damaged final frame cannot be told apart from a torn write: it is cut
	// off (and kept in the side file), as the recovery rules say.
	fsys := NewMemFS()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := segmentImage(1, entry(1, 20), entry(2, 20))
	writeFile(t, fsys, filepath.Join(testDir, segmentName(1)), flipped(img, len(img)-1))
	w := openWAL(t, Options{FS: fsys})
	if got := all(t, w); !equalEntries(got, []Entry{entry(1, 20)}) {
		t.Fatalf("entries %s", describe(got))
	}
}
