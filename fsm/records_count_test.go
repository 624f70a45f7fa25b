package fsm

import (
	"errors"
	"testing"
)

// The smallest records decode at the tightest count the check allows, and
// a count above what the bytes can hold is refused before allocating.
func TestDecodeRecordsCountBound(t *testing.T) {
	recs := []Record{{Value: []byte{}}, {Value: []byte{}}, {Value: []byte{}}}
	blob := AppendRecords(nil, recs)
	if len(blob) != len(recs)*minRecordBytes {
		t.Fatalf("%d smallest records encode to %d bytes, want %d", len(recs), len(blob), len(recs)*minRecordBytes)
	}
	got, err := DecodeRecords(blob, len(recs))
	if err != nil || len(got) != len(recs) {
		t.Fatalf("decode: %d records, %v", len(got), err)
	}
	if _, err := DecodeRecords(blob, len(recs)+1); !errors.Is(err, ErrDecode) {
		t.Fatalf("count above the bytes: %v, want ErrDecode", err)
	}
	if _, err := DecodeRecords(make([]byte, 1<<20), 1<<20); !errors.Is(err, ErrDecode) {
		t.Fatalf("a count of one record per byte: %v, want ErrDecode", err)
	}
}
