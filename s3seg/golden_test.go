package s3seg_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v1.seg from the current encoder")

const goldenPath = "testdata/golden-v1.seg"

// goldenInput is the fixed input of the golden file. Never change it: the
// file pins format v1, and old objects must stay readable forever.
func goldenInput() []s3seg.PartitionBatch {
	special := []s3seg.Record{
		{Offset: 0, Timestamp: 1_700_000_000_000, Key: []byte("k1"), Value: []byte("hello")},
		{Offset: 1, Timestamp: 1_700_000_000_005, Key: nil, Value: []byte("null key")},
		{Offset: 2, Timestamp: 1_700_000_000_003, Key: []byte{}, Value: []byte("empty key")},
		{Offset: 3, Timestamp: 1_700_000_000_003, Key: []byte("tombstone"), Value: nil},
		{Offset: 4, Timestamp: 1_700_000_000_010, Key: []byte("empty value"), Value: []byte{}},
		{Offset: 5, Timestamp: -1, Key: []byte("h"), Value: []byte("with headers"), Headers: []s3seg.Header{
			{Key: "trace-id", Value: []byte("abc123")}, {Key: "empty", Value: nil}, {Key: "trace-id", Value: []byte{0, 1, 2}},
		}},
		{Offset: 6, Timestamp: math.MaxInt64, Key: []byte("max"), Value: []byte("ts")},
	}
	repetitive := func(base int64, n int) []s3seg.Record {
		recs := make([]s3seg.Record, n)
		for i := range recs {
			recs[i] = s3seg.Record{
				Offset:    base + int64(i),
				Timestamp: 1_700_000_100_000 + int64(i)*3,
				Key:       []byte{'k', byte('0' + i%10)},
				Value:     bytes.Repeat([]byte(`{"event":"page_view","path":"/index.html"}`), 1+i%3),
			}
		}
		return recs
	}
	return []s3seg.PartitionBatch{
		{Topic: "orders", TopicID: 0x0102030405060708, Partition: 0, Compression: s3seg.CompressionNone, Records: special},
		{Topic: "events", TopicID: 42, Partition: 3, Compression: s3seg.CompressionZstd, Records: repetitive(1000, 20)},
		{Topic: "events", TopicID: 42, Partition: 7, Compression: s3seg.CompressionLZ4, Records: repetitive(1<<40, 20)},
	}
}

func TestGolden(t *testing.T) {
	input := goldenInput()
	obj, footer := mustEncode(t, input...)
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, obj, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", goldenPath, len(obj))
	}
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}

	// 1. The committed file decodes to the fixed input: the compatibility
	// promise, independent of what the current encoder writes.
	checkRoundTrip(t, golden, footer, input)

	// 2. The current encoder writes the committed bytes exactly. If this
	// fails after upgrading klauspost/compress or pierrec/lz4 while (1)
	// passes, only compressed block bytes moved; regenerate with -update.
	// Any other difference is a format change: bump the version instead.
	if !bytes.Equal(obj, golden) {
		at := 0
		for at < min(len(obj), len(golden)) && obj[at] == golden[at] {
			at++
		}
		t.Fatalf("encoder output (%d bytes) differs from %s (%d bytes) from byte %d", len(obj), goldenPath, len(golden), at)
	}
}

// TestGoldenLayout pins the fixed-position fields of the format spec in
// DESIGN.md against the committed file, independently of the decoder.
func TestGoldenLayout(t *testing.T) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	n := len(golden)
	if string(golden[n-8:]) != "SHSEG\x00v1" {
		t.Fatalf("magic = %q", golden[n-8:])
	}
	le := func(b []byte) (v uint64) {
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	footerLen := int(le(golden[n-16 : n-12]))
	if got := uint32(le(golden[n-12 : n-8])); got != crc32c(golden[n-16-footerLen:n-16]) {
		t.Fatal("trailer CRC is not the CRC32C of the footer bytes")
	}
	fb := golden[n-16-footerLen : n-16]
	if v := le(fb[0:2]); v != 1 {
		t.Fatalf("footer version %d", v)
	}
	if c := le(fb[2:6]); c != 3 {
		t.Fatalf("entry count %d", c)
	}
	// First entry: topic "orders" then topic id 0x0102030405060708.
	if tl := le(fb[6:8]); tl != 6 || string(fb[8:14]) != "orders" || le(fb[14:22]) != 0x0102030405060708 {
		t.Fatalf("first entry topic fields: % x", fb[6:22])
	}
	// Block 0 is uncompressed: it starts with the 32-byte block header.
	if le(golden[0:8]) != 0x0102030405060708 || le(golden[8:12]) != 0 || le(golden[12:20]) != 0 || le(golden[20:24]) != 7 || int64(le(golden[24:32])) != 1_700_000_000_000 {
		t.Fatalf("block 0 header: % x", golden[:32])
	}
	// First record: body length 12, attributes key+value, ts delta 0, key "k1", value "hello", no headers.
	want := []byte{12, 0x03, 0x00, 2, 'k', '1', 5, 'h', 'e', 'l', 'l', 'o', 0}
	if !bytes.Equal(golden[32:32+len(want)], append([]byte{}, want...)) {
		t.Fatalf("first record bytes % x, want % x", golden[32:32+len(want)], want)
	}
}
