package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v1.wal")

const goldenPath = "testdata/golden-v1.wal"

// goldenEntries are the fixed entries of the golden segment: a gap, empty
// data, binary data and a large index.
func goldenEntries() []Entry {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return []Entry{
		{Index: 1, Data: []byte("hello, streamhouse")},
		{Index: 2, Data: []byte{}},
		{Index: 5, Data: all},
		{Index: 6, Data: []byte{0xff, 0x00, 0xfe}},
		{Index: 1 << 40, Data: []byte("far")},
	}
}

func TestGoldenFile(t *testing.T) {
	img := segmentImage(1, goldenEntries()...)
	if *update {
		if err := os.WriteFile(goldenPath, img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenFile -update to create it)", err)
	}
	if !bytes.Equal(img, golden) {
		t.Fatalf("the encoder no longer produces %s: the on-disk format changed.\n"+
			"A format change needs a new version (and a new golden file), not an update of this one.", goldenPath)
	}

	// Hand-check the layout of the header and the first frame, so that the
	// golden file is not merely self-consistent.
	if string(golden[:4]) != "SHWL" || binary.LittleEndian.Uint16(golden[4:]) != 1 ||
		binary.LittleEndian.Uint16(golden[6:]) != 0 || binary.LittleEndian.Uint64(golden[8:]) != 1 ||
		binary.LittleEndian.Uint32(golden[16:]) != crc32.Checksum(golden[:16], crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatalf("header %x", golden[:headerSize])
	}
	f := golden[headerSize:]
	first := goldenEntries()[0]
	if n := binary.LittleEndian.Uint32(f); n != uint32(len(first.Data)) {
		t.Fatalf("frame length %d", n)
	}
	if ix := binary.LittleEndian.Uint64(f[8:]); ix != 1 {
		t.Fatalf("frame index %d", ix)
	}
	crc := crc32.Checksum(append(binary.LittleEndian.AppendUint64(nil, 1), first.Data...), crc32.MakeTable(crc32.Castagnoli))
	if got := binary.LittleEndian.Uint32(f[4:]); got != crc {
		t.Fatalf("frame crc %08x, want %08x", got, crc)
	}
	if !bytes.Equal(f[16:16+len(first.Data)], first.Data) {
		t.Fatal("frame data")
	}

	// Decode it, and open it as a WAL.
	sc, err := scanSegment(goldenPath, golden, true)
	if err != nil || sc.torn || sc.end != int64(len(golden)) || len(sc.entries) != len(goldenEntries()) {
		t.Fatalf("scan: %+v, %v", sc, err)
	}
	fsys := NewMemFS()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, filepath.Join(testDir, segmentName(1)), golden)
	w := openWAL(t, Options{FS: fsys})
	if got := all(t, w); !equalEntries(got, goldenEntries()) {
		t.Fatalf("golden entries decode as %s", describe(got))
	}
}

func TestSegmentNames(t *testing.T) {
	if got := segmentName(1); got != "00000000000000000001.wal" {
		t.Fatalf("segmentName(1) = %q", got)
	}
	for _, b := range []uint64{1, 42, 1 << 63, ^uint64(0)} {
		if got, ok := parseSegmentName(segmentName(b)); !ok || got != b {
			t.Errorf("round trip of %d: %d %v", b, got, ok)
		}
	}
	for _, bad := range []string{
		"", "1.wal", "00000000000000000000.wal", "0000000000000000001.wal",
		"00000000000000000001.wal.tmp", "00000000000000000001.wal.torn", "0000000000000000000a.wal",
		"99999999999999999999.wal", "+0000000000000000001.wal", "00000000000000000001.WAL",
	} {
		if _, ok := parseSegmentName(bad); ok {
			t.Errorf("parseSegmentName(%q) accepted", bad)
		}
	}
}

func TestZeroFrameIsNeverValid(t *testing.T) {
	// A zero-filled region must decode as a bad frame, or a zero-filled
	// tail could not be told from data.
	if _, _, reason := decodeFrame(make([]byte, 64)); reason == "" {
		t.Fatal("an all-zero frame verifies")
	}
}

// FuzzDecodeFrames feeds arbitrary bytes to the segment decoder: it must not
// panic, and either fail with ErrCorrupt or return entries that re-encode to
// exactly the bytes they were decoded from.
func FuzzDecodeFrames(f *testing.F) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)-1])
	f.Add(golden[:headerSize])
	f.Add(golden[:headerSize-1])
	f.Add(append(append([]byte(nil), golden...), make([]byte, 40)...))
	flipped := append([]byte(nil), golden...)
	flipped[headerSize+20] ^= 0x10
	f.Add(flipped)
	f.Add(segmentImage(7, Entry{7, nil}, Entry{9, []byte("x")}))
	f.Add(segmentImage(3, Entry{2, []byte("below base")}))
	f.Add([]byte{})
	f.Add([]byte("SHWL"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, last := range []bool{false, true} {
			sc, err := scanSegment("fuzz", data, last)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > int64(len(data)) {
					t.Fatalf("bad corruption error %v", err)
				}
				continue
			}
			if sc.torn && !last {
				t.Fatal("torn tail reported for a non-last segment")
			}
			if !sc.torn && sc.end != int64(len(data)) {
				t.Fatalf("clean scan ends at %d of %d", sc.end, len(data))
			}
			img := encodeHeader(sc.base)
			if !bytes.Equal(img, data[:headerSize]) {
				t.Fatal("header does not re-encode")
			}
			prev := sc.base - 1
			for _, p := range sc.entries {
				if p.index <= prev {
					t.Fatalf("index %d after %d", p.index, prev)
				}
				prev = p.index
				if p.off != int64(len(img)) {
					t.Fatalf("entry %d at offset %d, expected %d", p.index, p.off, len(img))
				}
				img = appendFrame(img, p.index, data[p.off+frameHeaderSize:p.off+frameSize(int(p.n))])
			}
			if int64(len(img)) != sc.end || !bytes.Equal(img, data[:sc.end]) {
				t.Fatal("entries do not re-encode to the scanned bytes")
			}
		}
	})
}
