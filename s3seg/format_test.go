package s3seg_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

var allCompressions = []s3seg.Compression{s3seg.CompressionNone, s3seg.CompressionZstd, s3seg.CompressionLZ4}

// recordsEqual compares records exactly, including null vs empty keys and
// values; header values compare by content (null and empty are the same).
func recordsEqual(got, want []s3seg.Record) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		switch {
		case g.Offset != w.Offset:
			return fmt.Errorf("record %d: offset %d, want %d", i, g.Offset, w.Offset)
		case g.Timestamp != w.Timestamp:
			return fmt.Errorf("record %d: timestamp %d, want %d", i, g.Timestamp, w.Timestamp)
		case (g.Key == nil) != (w.Key == nil) || !bytes.Equal(g.Key, w.Key):
			return fmt.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, g.Key, g.Key == nil, w.Key, w.Key == nil)
		case (g.Value == nil) != (w.Value == nil) || !bytes.Equal(g.Value, w.Value):
			return fmt.Errorf("record %d: value of %d bytes (nil %v), want %d (nil %v)", i, len(g.Value), g.Value == nil, len(w.Value), w.Value == nil)
		case len(g.Headers) != len(w.Headers):
			return fmt.Errorf("record %d: %d headers, want %d", i, len(g.Headers), len(w.Headers))
		}
		for j := range w.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !bytes.Equal(g.Headers[j].Value, w.Headers[j].Value) {
				return fmt.Errorf("record %d header %d: %q=%q, want %q=%q", i, j, g.Headers[j].Key, g.Headers[j].Value, w.Headers[j].Key, w.Headers[j].Value)
			}
		}
	}
	return nil
}

// checkRoundTrip decodes obj and compares it with the batches it was
// encoded from and with the footer Encode returned.
func checkRoundTrip(t *testing.T, obj []byte, footer s3seg.Footer, parts []s3seg.PartitionBatch) {
	t.Helper()
	decoded, err := s3seg.DecodeFooter(obj)
	if err != nil {
		t.Fatalf("DecodeFooter: %v", err)
	}
	if decoded.Version != s3seg.FormatVersion || !slices.Equal(decoded.Entries, footer.Entries) {
		t.Fatalf("decoded footer differs from the one Encode returned")
	}
	if len(decoded.Entries) != len(parts) {
		t.Fatalf("%d entries for %d batches", len(decoded.Entries), len(parts))
	}
	for i, e := range decoded.Entries {
		p := parts[i]
		minTS, maxTS := int64(math.MaxInt64), int64(math.MinInt64)
		for _, r := range p.Records {
			minTS, maxTS = min(minTS, r.Timestamp), max(maxTS, r.Timestamp)
		}
		want := s3seg.IndexEntry{
			Topic: p.Topic, TopicID: p.TopicID, Partition: p.Partition,
			Offset: e.Offset, Length: e.Length, CRC: e.CRC, UncompressedSize: e.UncompressedSize,
			BaseOffset: p.Records[0].Offset, LastOffset: p.Records[len(p.Records)-1].Offset,
			RecordCount: int32(len(p.Records)), MinTimestamp: minTS, MaxTimestamp: maxTS, Compression: p.Compression,
		}
		if e != want {
			t.Fatalf("entry %d = %+v, want %+v", i, e, want)
		}
		recs, err := s3seg.DecodeBlock(block(obj, e), e)
		if err != nil {
			t.Fatalf("DecodeBlock(entry %d): %v", i, err)
		}
		if err := recordsEqual(recs, p.Records); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := rng(42)
	one := func(recs ...s3seg.Record) []s3seg.PartitionBatch {
		for i := range recs {
			recs[i].Offset = 7 + int64(i)
		}
		return []s3seg.PartitionBatch{{Topic: "t", TopicID: 1, Partition: 0, Records: recs}}
	}
	manyParts := func() []s3seg.PartitionBatch {
		var ps []s3seg.PartitionBatch
		for p := range 200 {
			ps = append(ps, batch(uint64(p), fmt.Sprintf("topic-%d", p%7), uint64(p%7)+1, int32(p), allCompressions[p%3], int64(p)*1000, 1+p%5, 20))
		}
		return ps
	}
	cases := []struct {
		name  string
		parts []s3seg.PartitionBatch
	}{
		{"null, empty and set keys", one(
			s3seg.Record{Key: nil, Value: []byte("a")},
			s3seg.Record{Key: []byte{}, Value: []byte("b")},
			s3seg.Record{Key: []byte("k"), Value: []byte("c")},
		)},
		{"null and empty values", one(
			s3seg.Record{Key: []byte("tombstone"), Value: nil},
			s3seg.Record{Key: []byte("empty"), Value: []byte{}},
			s3seg.Record{},
		)},
		{"headers", one(
			s3seg.Record{Value: []byte("v"), Headers: []s3seg.Header{{Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("3")}}},
			s3seg.Record{Value: []byte("v"), Headers: []s3seg.Header{{Key: "", Value: nil}, {Key: "empty", Value: []byte{}}, {Key: "bin", Value: []byte{0, 0xff, 0}}}},
			s3seg.Record{Value: []byte("v"), Headers: []s3seg.Header{}},
		)},
		{"timestamps", one(
			s3seg.Record{Timestamp: math.MaxInt64},
			s3seg.Record{Timestamp: math.MinInt64},
			s3seg.Record{Timestamp: 0},
			s3seg.Record{Timestamp: -1},
			s3seg.Record{Timestamp: 1_700_000_000_000},
			s3seg.Record{Timestamp: 1_699_999_999_999},
		)},
		{"big values", one(
			s3seg.Record{Key: []byte("random"), Value: r.bytes(1 << 20)},
			s3seg.Record{Key: []byte("zeros"), Value: make([]byte, 3<<20)},
			s3seg.Record{Key: r.bytes(70000), Value: []byte("big key"), Headers: []s3seg.Header{{Key: strings.Repeat("h", 300), Value: r.bytes(200000)}}},
		)},
		{"single record", one(s3seg.Record{Timestamp: 5, Key: []byte("k"), Value: []byte("v")})},
		{"many partitions", manyParts()},
		{"offsets near max", []s3seg.PartitionBatch{{Topic: "t", TopicID: math.MaxUint64, Partition: math.MaxInt32, Records: []s3seg.Record{
			{Offset: math.MaxInt64 - 1, Value: []byte("x")}, {Offset: math.MaxInt64, Value: []byte("y")},
		}}}},
		{"unicode topic", []s3seg.PartitionBatch{batch(3, "τοπικ/ü", 5, 3, 0, 0, 10, 30)}},
	}
	for _, tc := range cases {
		for _, c := range allCompressions {
			t.Run(fmt.Sprintf("%s/%v", tc.name, c), func(t *testing.T) {
				parts := slices.Clone(tc.parts)
				if tc.name != "many partitions" {
					for i := range parts {
						parts[i].Compression = c
					}
				}
				obj, footer := mustEncode(t, parts...)
				checkRoundTrip(t, obj, footer, parts)
			})
		}
	}
}

func TestEncoderReuse(t *testing.T) {
	enc := s3seg.NewEncoder()
	var objs [][]byte
	var inputs [][]s3seg.PartitionBatch
	for i := range 4 {
		parts := []s3seg.PartitionBatch{
			batch(uint64(i), "a", 1, 0, s3seg.CompressionZstd, 0, 100+i*50, 100),
			batch(uint64(i)+10, "b", 2, 0, s3seg.CompressionLZ4, 5, 30, 300),
			batch(uint64(i)+20, "c", 3, 1, s3seg.CompressionNone, 9, 10, 10),
		}
		obj, _, err := enc.Encode(parts)
		if err != nil {
			t.Fatal(err)
		}
		objs, inputs = append(objs, obj), append(inputs, parts)
	}
	// Earlier results must not be overwritten by later calls (no scratch
	// aliasing), and the same input must encode identically.
	for i, obj := range objs {
		f, err := s3seg.DecodeFooter(obj)
		if err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
		checkRoundTrip(t, obj, f, inputs[i])
		again, _ := mustEncode(t, inputs[i]...)
		if !bytes.Equal(again, obj) {
			t.Fatalf("object %d: a fresh encoder produced different bytes", i)
		}
	}
}

func TestDecodedRecordsDoNotAliasInput(t *testing.T) {
	p := batch(1, "t", 1, 0, s3seg.CompressionNone, 0, 3, 10)
	obj, f := mustEncode(t, p)
	e := f.Entries[0]
	blk := slices.Clone(block(obj, e))
	recs, err := s3seg.DecodeBlock(blk, e)
	if err != nil {
		t.Fatal(err)
	}
	clear(blk)
	if err := recordsEqual(recs, p.Records); err != nil {
		t.Fatalf("records changed when the input block was overwritten: %v", err)
	}
	// Appending to one record's value must not overwrite the next record.
	_ = append(recs[0].Value, "XXXXXXXXXXXXXXXXXXXXXXXX"...)
	if err := recordsEqual(recs, p.Records); err != nil {
		t.Fatalf("append to a decoded value clobbered a neighbour: %v", err)
	}
}

func TestEncodeValidation(t *testing.T) {
	good := func() s3seg.PartitionBatch { return batch(1, "t", 1, 0, s3seg.CompressionNone, 10, 3, 5) }
	mod := func(f func(*s3seg.PartitionBatch)) []s3seg.PartitionBatch {
		p := good()
		p.Records = slices.Clone(p.Records)
		f(&p)
		return []s3seg.PartitionBatch{p}
	}
	cases := map[string][]s3seg.PartitionBatch{
		"no batches":          nil,
		"no records":          mod(func(p *s3seg.PartitionBatch) { p.Records = nil }),
		"gap":                 mod(func(p *s3seg.PartitionBatch) { p.Records[2].Offset++ }),
		"duplicate offset":    mod(func(p *s3seg.PartitionBatch) { p.Records[1].Offset-- }),
		"descending":          mod(func(p *s3seg.PartitionBatch) { p.Records[0].Offset, p.Records[2].Offset = 12, 10 }),
		"negative base":       mod(func(p *s3seg.PartitionBatch) { p.Records = p.Records[:1]; p.Records[0].Offset = -1 }),
		"offset overflow":     mod(func(p *s3seg.PartitionBatch) { p.Records[0].Offset = math.MaxInt64 - 1 }),
		"empty topic":         mod(func(p *s3seg.PartitionBatch) { p.Topic = "" }),
		"long topic":          mod(func(p *s3seg.PartitionBatch) { p.Topic = strings.Repeat("x", s3seg.MaxTopicLength+1) }),
		"invalid utf8 topic":  mod(func(p *s3seg.PartitionBatch) { p.Topic = "\xff" }),
		"negative partition":  mod(func(p *s3seg.PartitionBatch) { p.Partition = -1 }),
		"unknown compression": mod(func(p *s3seg.PartitionBatch) { p.Compression = 3 }),
		"duplicate partition": {good(), good()},
	}
	for name, parts := range cases {
		t.Run(name, func(t *testing.T) {
			obj, _, err := s3seg.NewEncoder().Encode(parts)
			if !errors.Is(err, s3seg.ErrInvalidBatch) {
				t.Fatalf("Encode: %v, want ErrInvalidBatch", err)
			}
			if obj != nil {
				t.Fatal("Encode returned an object with an error")
			}
		})
	}
	// Same partition number under different topic ids is fine.
	a, b := good(), good()
	b.TopicID = 2
	if _, _, err := s3seg.NewEncoder().Encode([]s3seg.PartitionBatch{a, b}); err != nil {
		t.Fatalf("distinct topic ids: %v", err)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 256 MiB")
	}
	big := make([]byte, 64<<20)
	p := s3seg.PartitionBatch{Topic: "t", TopicID: 1}
	for i := range 4 {
		p.Records = append(p.Records, s3seg.Record{Offset: int64(i), Value: big})
	}
	if _, _, err := s3seg.NewEncoder().Encode([]s3seg.PartitionBatch{p}); !errors.Is(err, s3seg.ErrInvalidBatch) {
		t.Fatalf("Encode of a block over MaxBlockSize: %v, want ErrInvalidBatch", err)
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]s3seg.Compression{"none": 0, "zstd": 1, "LZ4": 2, " Zstd ": 1} {
		got, err := s3seg.ParseCompression(in)
		if err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", in, got, err, want)
		}
		if again, _ := s3seg.ParseCompression(got.String()); again != got {
			t.Errorf("String/Parse round trip of %v", got)
		}
	}
	for _, in := range []string{"", "gzip", "snappy"} {
		if _, err := s3seg.ParseCompression(in); !errors.Is(err, s3seg.ErrUnknownCompression) {
			t.Errorf("ParseCompression(%q): %v, want ErrUnknownCompression", in, err)
		}
	}
	if s := s3seg.Compression(9).String(); s != "compression(9)" {
		t.Errorf("String of an unknown codec = %q", s)
	}
}

func TestDecodeFooterTail(t *testing.T) {
	var parts []s3seg.PartitionBatch
	for p := range 100 {
		parts = append(parts, batch(uint64(p), "a-rather-long-topic-name-to-grow-the-footer", 77, int32(p), s3seg.CompressionLZ4, 0, 2, 10))
	}
	obj, want := mustEncode(t, parts...)
	size := int64(len(obj))
	footerBytes := int64(len(obj)) - want.BlocksEnd()
	for _, n := range []int64{0, 1, 15, 16, 17, 100, footerBytes - 1} {
		_, err := s3seg.DecodeFooterTail(obj[size-n:], size)
		var short *s3seg.ShortTailError
		if !errors.As(err, &short) || !errors.Is(err, s3seg.ErrShortTail) {
			t.Fatalf("tail of %d bytes: %v, want ErrShortTail", n, err)
		}
		wantNeed := footerBytes
		if n < s3seg.TrailerSize {
			wantNeed = s3seg.TrailerSize
		}
		if short.Need != wantNeed || short.Have != n {
			t.Fatalf("tail of %d bytes: %+v, want Need %d", n, *short, wantNeed)
		}
		if n < s3seg.TrailerSize {
			// Second attempt with the trailer tells the real need.
			_, err = s3seg.DecodeFooterTail(obj[size-short.Need:], size)
			if !errors.As(err, &short) || short.Need != footerBytes {
				t.Fatalf("trailer-only tail: %v, want Need %d", err, footerBytes)
			}
		}
		got, err := s3seg.DecodeFooterTail(obj[size-short.Need:], size)
		if n >= s3seg.TrailerSize && err != nil {
			t.Fatalf("tail of the needed %d bytes: %v", short.Need, err)
		}
		if err == nil && !slices.Equal(got.Entries, want.Entries) {
			t.Fatal("footer from tail differs")
		}
	}
	for _, n := range []int64{footerBytes, footerBytes + 1, size} {
		got, err := s3seg.DecodeFooterTail(obj[size-n:], size)
		if err != nil || !slices.Equal(got.Entries, want.Entries) {
			t.Fatalf("tail of %d bytes: %v", n, err)
		}
	}
	if _, err := s3seg.DecodeFooterTail(obj, size-1); err == nil || errors.Is(err, s3seg.ErrCorrupt) {
		t.Fatalf("tail longer than the object: %v, want a usage error", err)
	}
	// A tail from a different (larger) object size does not tile.
	if _, err := s3seg.DecodeFooterTail(obj[size-footerBytes:], size+1); !errors.Is(err, s3seg.ErrCorrupt) {
		t.Fatalf("wrong object size: %v, want ErrCorrupt", err)
	}
}

func TestDecodeBlockEntryMismatch(t *testing.T) {
	for _, c := range allCompressions {
		t.Run(c.String(), func(t *testing.T) {
			p := batch(5, "t", 3, 2, c, 100, 20, 50)
			obj, f := mustEncode(t, p, batch(6, "u", 4, 0, c, 0, 20, 50))
			e := f.Entries[0]
			blk := block(obj, e)
			if _, err := s3seg.DecodeBlock(blk, e); err != nil {
				t.Fatal(err)
			}
			// The topic name is not needed to read a block.
			noName := e
			noName.Topic = ""
			if _, err := s3seg.DecodeBlock(blk, noName); err != nil {
				t.Fatalf("entry without topic name: %v", err)
			}
			// Every field change must be detected, also when the CRC in
			// the entry is right for the bytes (a wrong entry, not bit rot).
			muts := map[string]func(*s3seg.IndexEntry){
				"topic id":          func(e *s3seg.IndexEntry) { e.TopicID++ },
				"partition":         func(e *s3seg.IndexEntry) { e.Partition++ },
				"base offset":       func(e *s3seg.IndexEntry) { e.BaseOffset++; e.LastOffset++ },
				"last offset":       func(e *s3seg.IndexEntry) { e.LastOffset++ },
				"record count":      func(e *s3seg.IndexEntry) { e.RecordCount--; e.LastOffset-- },
				"min timestamp":     func(e *s3seg.IndexEntry) { e.MinTimestamp-- },
				"max timestamp":     func(e *s3seg.IndexEntry) { e.MaxTimestamp++ },
				"uncompressed size": func(e *s3seg.IndexEntry) { e.UncompressedSize-- },
				"compression":       func(e *s3seg.IndexEntry) { e.Compression = (e.Compression + 1) % 3 },
				"unknown codec":     func(e *s3seg.IndexEntry) { e.Compression = 7 },
				"crc":               func(e *s3seg.IndexEntry) { e.CRC ^= 1 },
				"length":            func(e *s3seg.IndexEntry) { e.Length-- },
				"other block":       func(e *s3seg.IndexEntry) { *e = f.Entries[1] },
			}
			for name, m := range muts {
				bad := e
				m(&bad)
				if _, err := s3seg.DecodeBlock(blk, bad); !errors.Is(err, s3seg.ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCorrupt", name, err)
				}
			}
		})
	}
}

// smallObject is a deterministic object with one block per codec.
func smallObject(t testing.TB) ([]byte, s3seg.Footer, []s3seg.PartitionBatch) {
	parts := []s3seg.PartitionBatch{
		batch(1, "a", 1, 0, s3seg.CompressionNone, 0, 4, 12),
		batch(2, "b", 2, 1, s3seg.CompressionZstd, 50, 5, 30),
		batch(3, "c", 3, 2, s3seg.CompressionLZ4, 9, 4, 30),
	}
	obj, f := mustEncode(t, parts...)
	return obj, f, parts
}

func TestTruncatedObject(t *testing.T) {
	obj, f, _ := smallObject(t)
	for n := range len(obj) {
		// Lost tail and lost head.
		for _, cut := range [][]byte{obj[:n], obj[len(obj)-n:]} {
			if _, err := s3seg.DecodeFooter(cut); !errors.Is(err, s3seg.ErrCorrupt) {
				t.Fatalf("object cut to %d bytes: %v, want ErrCorrupt", n, err)
			}
		}
	}
	for i, e := range f.Entries {
		blk := block(obj, e)
		for n := range len(blk) {
			if _, err := s3seg.DecodeBlock(blk[:n], e); !errors.Is(err, s3seg.ErrCorrupt) {
				t.Fatalf("block %d cut to %d bytes: %v, want ErrCorrupt", i, n, err)
			}
			// Even with an entry rewritten to match the cut bytes (length
			// and CRC), decoding must fail rather than return records.
			fixed := e
			fixed.Length, fixed.CRC = int64(n), crc32c(blk[:n])
			if recs, err := s3seg.DecodeBlock(blk[:n], fixed); err == nil {
				t.Fatalf("block %d cut to %d bytes with a matching entry decoded to %d records", i, n, len(recs))
			}
		}
	}
}

func TestBitFlips(t *testing.T) {
	obj, _, _ := smallObject(t)
	for bit := range len(obj) * 8 {
		bad := slices.Clone(obj)
		bad[bit/8] ^= 1 << (bit % 8)
		f, err := s3seg.DecodeFooter(bad)
		if err != nil {
			if !errors.Is(err, s3seg.ErrCorrupt) {
				t.Fatalf("bit %d: %v, want ErrCorrupt", bit, err)
			}
			continue
		}
		detected := false
		for _, e := range f.Entries {
			if _, err := s3seg.DecodeBlock(block(bad, e), e); err != nil {
				if !errors.Is(err, s3seg.ErrCorrupt) {
					t.Fatalf("bit %d: %v, want ErrCorrupt", bit, err)
				}
				detected = true
			}
		}
		if !detected {
			t.Fatalf("flipping bit %d (byte %d of %d) went undetected", bit, bit/8, len(obj))
		}
	}
}

func TestDecodeFooterRejects(t *testing.T) {
	obj, f, _ := smallObject(t)
	blocksEnd := f.BlocksEnd()
	reencode := func(f s3seg.Footer) []byte {
		out, err := s3seg.EncodeFooterForTest(slices.Clone(obj[:blocksEnd]), f)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !bytes.Equal(reencode(f), obj) {
		t.Fatal("footer re-encoding is not the identity")
	}
	// Footers with a valid CRC but inconsistent content.
	muts := map[string]func(*s3seg.Footer){
		"no entries":          func(f *s3seg.Footer) { f.Entries = nil },
		"gap between blocks":  func(f *s3seg.Footer) { f.Entries[1].Offset++ },
		"overlap":             func(f *s3seg.Footer) { f.Entries[1].Offset-- },
		"first not at 0":      func(f *s3seg.Footer) { f.Entries[0].Offset = 1 },
		"short of footer":     func(f *s3seg.Footer) { f.Entries[2].Length-- },
		"duplicate partition": func(f *s3seg.Footer) { f.Entries[1].TopicID, f.Entries[1].Partition = 1, 0 },
		"empty topic":         func(f *s3seg.Footer) { f.Entries[0].Topic = "" },
		"negative partition":  func(f *s3seg.Footer) { f.Entries[0].Partition = -1 },
		"zero records":        func(f *s3seg.Footer) { f.Entries[0].RecordCount = 0 },
		"last offset":         func(f *s3seg.Footer) { f.Entries[0].LastOffset++ },
		"negative base":       func(f *s3seg.Footer) { f.Entries[0].BaseOffset = -1; f.Entries[0].LastOffset = 2 },
		"min > max ts":        func(f *s3seg.Footer) { f.Entries[0].MinTimestamp = f.Entries[0].MaxTimestamp + 1 },
		"unknown codec":       func(f *s3seg.Footer) { f.Entries[0].Compression = 9 },
		"huge uncompressed":   func(f *s3seg.Footer) { f.Entries[1].UncompressedSize = 1 << 40 },
		"impossible ratio":    func(f *s3seg.Footer) { f.Entries[2].UncompressedSize = f.Entries[2].Length*255 + 100 },
		"none size mismatch":  func(f *s3seg.Footer) { f.Entries[0].UncompressedSize++ },
	}
	for name, m := range muts {
		bad := s3seg.Footer{Version: f.Version, Entries: slices.Clone(f.Entries)}
		m(&bad)
		if _, err := s3seg.DecodeFooter(reencode(bad)); !errors.Is(err, s3seg.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	v2 := s3seg.Footer{Version: 2, Entries: f.Entries}
	if _, err := s3seg.DecodeFooter(reencode(v2)); !errors.Is(err, s3seg.ErrUnsupportedVersion) || errors.Is(err, s3seg.ErrCorrupt) {
		t.Errorf("version 2: %v, want ErrUnsupportedVersion", err)
	}
	// Entry count larger than the footer can hold must not allocate.
	bad := reencode(f)
	fstart := f.BlocksEnd()
	bad[fstart+2], bad[fstart+3], bad[fstart+4], bad[fstart+5] = 0xff, 0xff, 0xff, 0xff
	fixTrailerCRC(bad)
	if _, err := s3seg.DecodeFooter(bad); !errors.Is(err, s3seg.ErrCorrupt) {
		t.Errorf("huge entry count: %v, want ErrCorrupt", err)
	}
	for _, junk := range [][]byte{nil, make([]byte, 100), []byte(s3seg.Magic), append(make([]byte, 8), s3seg.Magic...)} {
		if _, err := s3seg.DecodeFooter(junk); !errors.Is(err, s3seg.ErrCorrupt) {
			t.Errorf("DecodeFooter(%q): %v, want ErrCorrupt", junk, err)
		}
	}
}

func TestFooterLookup(t *testing.T) {
	_, f, _ := smallObject(t)
	e, ok := f.Lookup(2, 1)
	if !ok || e.Topic != "b" || !e.Contains(50) || !e.Contains(54) || e.Contains(55) || e.Contains(49) {
		t.Fatalf("Lookup(2, 1) = %+v, %v", e, ok)
	}
	if _, ok := f.Lookup(2, 0); ok {
		t.Fatal("Lookup of a missing partition succeeded")
	}
}

func TestZstdLevels(t *testing.T) {
	parts := []s3seg.PartitionBatch{batch(4, "t", 1, 0, s3seg.CompressionZstd, 0, 200, 100)}
	sizes := map[int]int{}
	for _, level := range []int{1, 3, 7, 19} {
		obj, f, err := s3seg.NewEncoder(s3seg.WithZstdLevel(level)).Encode(parts)
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, obj, f, parts)
		sizes[level] = len(obj)
	}
	if sizes[1] == sizes[19] {
		t.Fatalf("zstd level had no effect: %v", sizes)
	}
}
