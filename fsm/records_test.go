package fsm

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordsKeepNullValues(t *testing.T) {
	in := []Record{
		{Timestamp: 5, Key: []byte("k"), Value: nil}, // tombstone
		{Timestamp: 6, Key: nil, Value: []byte{}},    // empty value
		{Timestamp: 7, Key: []byte{}, Value: []byte("v"), Headers: []Header{{Key: "h", Value: []byte("x")}}},
		{Timestamp: 0, Key: nil, Value: nil},
	}
	out, err := DecodeRecords(AppendRecords(nil, in), len(in))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Timestamp != b.Timestamp || (a.Key == nil) != (b.Key == nil) || (a.Value == nil) != (b.Value == nil) ||
			!bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, b, a)
		}
	}
}

// Records with a value encode exactly as before null values existed, and
// such blobs decode with an empty (non-nil) value.
func TestRecordsWithoutFlagsKeepTheirEncoding(t *testing.T) {
	// timestamp 1000 (zigzag varint), key null, value "ab" (2), no headers;
	// then timestamp 1, key "" (1), value "" (0), no headers.
	old := []byte{0xd0, 0x0f, 0x00, 0x02, 'a', 'b', 0x00, 0x02, 0x01, 0x00, 0x00}
	recs := []Record{{Timestamp: 1000, Value: []byte("ab")}, {Timestamp: 1, Key: []byte{}, Value: []byte{}}}
	if got := AppendRecords(nil, recs); !bytes.Equal(got, old) {
		t.Fatalf("encoding %x, want %x", got, old)
	}
	out, err := DecodeRecords(old, 2)
	if err != nil {
		t.Fatal(err)
	}
	if out[1].Value == nil || out[1].Key == nil || out[0].Key != nil {
		t.Fatalf("decoded %+v", out)
	}
}

func TestRecordsUnknownFlagsAreRefused(t *testing.T) {
	blob := []byte{0x80, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00}
	if _, err := DecodeRecords(blob, 1); !errors.Is(err, ErrDecode) {
		t.Fatalf("err %v, want ErrDecode", err)
	}
	// The null flag with value bytes is corrupt too.
	blob = []byte{0x80, 0x00, 0x01, 0x02, 0x00, 0x01, 'x', 0x00}
	if _, err := DecodeRecords(blob, 1); !errors.Is(err, ErrDecode) {
		t.Fatalf("err %v, want ErrDecode", err)
	}
}
