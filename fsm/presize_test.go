package fsm

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
)

// edgeRecords covers every length class of every field AppendRecords writes:
// null and empty keys and values, negative and extreme timestamps, and
// lengths on both sides of a varint byte boundary (127/128, 16383/16384).
func edgeRecords() []Record {
	long := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	return []Record{
		{},
		{Timestamp: -1, Key: []byte{}, Value: []byte{}},
		{Timestamp: math.MaxInt64, Key: long(126), Value: long(127)},
		{Timestamp: math.MinInt64, Key: long(127), Value: long(128)},
		{Timestamp: 1 << 40, Key: nil, Value: long(16383), Headers: []Header{{Key: "", Value: nil}}},
		{Timestamp: 63, Key: long(16384), Value: nil, Headers: []Header{
			{Key: strings.Repeat("h", 128), Value: long(300)}, {Key: "a", Value: []byte{}},
		}},
		{Timestamp: 64, Value: []byte("v"), Headers: make([]Header, 130)},
	}
}

// RecordsSize is exact, so AppendRecords allocates once and no more.
func TestRecordsSizeIsTheEncodedLength(t *testing.T) {
	all := edgeRecords()
	for i := range all {
		one := all[i : i+1]
		if got, want := RecordsSize(one), len(AppendRecords(nil, one)); got != want {
			t.Errorf("record %d: RecordsSize %d, encoding %d bytes", i, got, want)
		}
	}
	blob := AppendRecords([]byte("prefix"), all)
	if got, want := RecordsSize(all), len(blob)-len("prefix"); got != want {
		t.Fatalf("RecordsSize %d, encoding %d bytes", got, want)
	}
	if _, err := DecodeRecords(blob[len("prefix"):], len(all)); err != nil {
		t.Fatal(err)
	}
}

// The size hints bound the encodings from above even with every field at
// its widest, so Encode and EncodeBatchSpans never grow their buffer.
func TestSizeHintsBoundTheEncodings(t *testing.T) {
	blob := AppendRecords(nil, edgeRecords())
	widest := &AppendBatch{
		TopicID: math.MaxUint64, Partition: math.MinInt32, LeaderEpoch: math.MaxUint64,
		Timestamp: math.MinInt64, Count: math.MinInt32, Records: blob,
		ProducerID: math.MaxUint64, ProducerEpoch: math.MaxUint32, BaseSequence: math.MinInt64,
		ProducerOwner: "owner", MaxUnflushed: math.MinInt64, AllowEpochBump: true,
	}
	for _, c := range []interface {
		Command
		sizeHinter
	}{
		widest, &AppendBatch{TopicID: 1, Count: 1, Records: []byte{0}},
		&AppendBatches{Batches: []*AppendBatch{widest, widest, {TopicID: 2, Count: 1, Records: blob}}},
	} {
		enc := Encode(c)
		if len(enc) > c.sizeHint() || cap(enc) != c.sizeHint() {
			t.Errorf("%T: %d bytes encoded, size hint %d, capacity %d", c, len(enc), c.sizeHint(), cap(enc))
		}
	}
	wide := &AppendedBatch{Index: math.MaxUint64, TopicID: math.MaxUint64, Partition: math.MinInt32,
		BaseOffset: math.MinInt64, Count: math.MinInt32, Timestamp: math.MinInt64, Records: blob}
	for _, bs := range [][]*AppendedBatch{{wide}, {wide, wide, wide}} {
		enc, _ := EncodeBatchSpans(nil, bs, nil)
		// Grown once: the capacity is what one slices.Grow by the bound gives.
		if len(enc) > batchesSize(bs) || cap(enc) != cap(slices.Grow([]byte(nil), batchesSize(bs))) {
			t.Errorf("%d batches: %d bytes encoded, bound %d, capacity %d", len(bs), len(enc), batchesSize(bs), cap(enc))
		}
		got, err := DecodeBatches(enc)
		if err != nil || len(got) != len(bs) || !bytes.Equal(got[0].Records, blob) {
			t.Errorf("%d batches: decoded %d (%v)", len(bs), len(got), err)
		}
	}
}

// AppendDecodedRecords keeps dst's records and decodes after them; a
// reused slice decodes a second blob as a fresh one would.
func TestAppendDecodedRecordsReusesItsSlice(t *testing.T) {
	first := []Record{{Timestamp: 1, Key: []byte("a"), Value: []byte("1"), Headers: []Header{{Key: "h", Value: []byte("x")}}}}
	second := edgeRecords()
	got, err := AppendDecodedRecords(nil, AppendRecords(nil, first), 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err = AppendDecodedRecords(got, AppendRecords(nil, second), len(second))
	if err != nil || len(got) != 1+len(second) || string(got[0].Value) != "1" {
		t.Fatalf("appended: %d records, %v", len(got), err)
	}
	reused, err := AppendDecodedRecords(got[:0], AppendRecords(nil, second), len(second))
	if err != nil || len(reused) != len(second) {
		t.Fatalf("reused: %d records, %v", len(reused), err)
	}
	for i, r := range reused {
		w := second[i]
		if r.Timestamp != w.Timestamp || (r.Key == nil) != (w.Key == nil) || (r.Value == nil) != (w.Value == nil) ||
			!bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, r, w)
		}
	}
}
