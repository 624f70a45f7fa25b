package fsm

import (
	"fmt"
	"math/bits"
	"slices"
)

// Header is one record header. Order is preserved.
type Header struct {
	Key   string
	Value []byte
}

// Record is one produced record. A nil Key is a null key and stays distinct
// from an empty key; likewise a nil Value is a null value (a tombstone).
type Record struct {
	Timestamp int64 // unix milliseconds
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Size is the approximate encoded size of the record, used for limits and
// accounting.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value) + 8
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 2
	}
	return n
}

// Record flags, written only for a record that needs one (today: a null
// value) behind recordFlagsMark, so that every other record encodes exactly
// as before and blobs written before flags existed decode unchanged.
// recordFlagsMark is a zero timestamp varint in two bytes (0x80 0x00),
// which the encoder never writes for a timestamp (varints are minimal), so
// a record starting with it is unambiguous.
const recordFlagNullValue = 1 << 0

var recordFlagsMark = [2]byte{0x80, 0x00}

// AppendRecords encodes records into the compact blob carried by an
// AppendBatch command and stored in the WAL. The blob is opaque to Apply,
// which only needs the record count: offsets are assigned per batch. A
// nil Value is a null value (a tombstone), distinct from an empty one.
// dst grows once, by RecordsSize, not by doubling as the records append.
func AppendRecords(dst []byte, recs []Record) []byte {
	e := enc{b: slices.Grow(dst, RecordsSize(recs))}
	for i := range recs {
		r := &recs[i]
		if r.Value == nil {
			e.b = append(e.b, recordFlagsMark[:]...)
			e.uv(recordFlagNullValue)
		}
		e.iv(r.Timestamp)
		e.nbytes(r.Key)
		e.bytes(r.Value)
		e.uv(uint64(len(r.Headers)))
		for _, h := range r.Headers {
			e.str(h.Key)
			e.bytes(h.Value)
		}
	}
	return e.b
}

// RecordsSize is the exact length of AppendRecords' encoding of recs.
func RecordsSize(recs []Record) int {
	n := 0
	for i := range recs {
		r := &recs[i]
		if r.Value == nil {
			n += len(recordFlagsMark) + uvLen(recordFlagNullValue)
		}
		n += uvLen(zigzag(r.Timestamp)) + uvLen(uint64(len(r.Value))) + len(r.Value) + uvLen(uint64(len(r.Headers)))
		if r.Key == nil {
			n++
		} else {
			n += uvLen(uint64(len(r.Key))+1) + len(r.Key)
		}
		for _, h := range r.Headers {
			n += uvLen(uint64(len(h.Key))) + len(h.Key) + uvLen(uint64(len(h.Value))) + len(h.Value)
		}
	}
	return n
}

// uvLen is the length of x's uvarint encoding.
func uvLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// zigzag is the unsigned value binary.AppendVarint encodes for x.
func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

// DecodeRecords decodes exactly count records from blob. Returned byte
// slices alias blob.
func DecodeRecords(blob []byte, count int) ([]Record, error) {
	return AppendDecodedRecords(nil, blob, count)
}

// minRecordBytes is the smallest encoded record: a one-byte timestamp,
// null key, empty value and header count.
const minRecordBytes = 4

// AppendDecodedRecords is DecodeRecords appending to dst, so a reader of
// many batches reuses one slice (dst[:0]) instead of allocating per batch.
// On an error dst's contents past its length may have changed.
func AppendDecodedRecords(dst []Record, blob []byte, count int) ([]Record, error) {
	// Every record takes at least minRecordBytes, so a count beyond that
	// is refused before count records are allocated for it.
	if count < 0 || count > len(blob)/minRecordBytes {
		return nil, fmt.Errorf("%w: record count %d for %d bytes", ErrDecode, count, len(blob))
	}
	d := &dec{b: blob}
	start := len(dst)
	dst = slices.Grow(dst, count)[:start+count]
	out := dst[start:]
	for i := 0; i < count; i++ {
		r := &out[i]
		*r = Record{}
		var flags uint64
		if len(d.b) >= 2 && d.b[0] == recordFlagsMark[0] && d.b[1] == recordFlagsMark[1] {
			d.b = d.b[2:]
			if flags = d.uv(); flags&^recordFlagNullValue != 0 {
				return nil, fmt.Errorf("%w: record %d has unknown flags %#x", ErrDecode, i, flags)
			}
		}
		r.Timestamp = d.iv()
		r.Key = d.nbytes()
		r.Value = d.bytes()
		if flags&recordFlagNullValue != 0 {
			if len(r.Value) != 0 {
				return nil, fmt.Errorf("%w: record %d is null-valued with %d value bytes", ErrDecode, i, len(r.Value))
			}
			r.Value = nil
		}
		r.Headers = decodeSlice(d, 2, func(h *Header) {
			h.Key = d.str()
			h.Value = d.bytes()
		})
		if d.err != nil {
			return nil, d.done("records")
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after %d records", ErrDecode, len(d.b), count)
	}
	return dst, nil
}
