package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// The WAL-backed store writes the batches of one Raft entry as one WAL
// entry (EncodeBatches). A single batch is written as EncodeBatch writes
// it. Several are written as multiBatchTag, a version byte, the count and
// the batches:
//
//   - version 1 (read only): each batch as encodeBatch writes it;
//   - version 2: each batch as a span — its encoding's length (uint32
//     little endian), the CRC-32C of its encoding (uint32 little endian),
//     the encoding — so a reader can read and verify one batch's span
//     (DecodeBatchSpan) without reading the whole entry.
//
// A single batch's encoding starts with its index as a uvarint, never 0,
// so the first byte tells the two apart.
const (
	multiBatchTag       = 0x00
	multiBatchVersion   = 2
	multiBatchVersionV1 = 1
	spanHeader          = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchSpan is where one batch's span lies in an EncodeBatches encoding:
// Len bytes from byte Off.
type BatchSpan struct {
	Off, Len int
}

// EncodeBatches serialises the batches of one Raft entry (used by the
// WAL-backed store: one WAL entry per Raft entry).
func EncodeBatches(dst []byte, bs []*AppendedBatch) []byte {
	out, _ := EncodeBatchSpans(dst, bs, nil)
	return out
}

// EncodeBatchSpans is EncodeBatches that also appends to spans where each
// batch's span lies, relative to len(dst). A single batch has no span
// (nothing is appended to spans): it is the whole encoding.
func EncodeBatchSpans(dst []byte, bs []*AppendedBatch, spans []BatchSpan) ([]byte, []BatchSpan) {
	dst = slices.Grow(dst, batchesSize(bs))
	if len(bs) == 1 {
		return EncodeBatch(dst, bs[0]), spans
	}
	start := len(dst)
	e := enc{b: dst}
	e.u8(multiBatchTag)
	e.u8(multiBatchVersion)
	e.uv(uint64(len(bs)))
	for _, b := range bs {
		off := len(e.b)
		e.b = append(e.b, make([]byte, spanHeader)...)
		encodeBatch(&e, b)
		body := e.b[off+spanHeader:]
		binary.LittleEndian.PutUint32(e.b[off:], uint32(len(body)))
		binary.LittleEndian.PutUint32(e.b[off+4:], crc32.Checksum(body, castagnoli))
		spans = append(spans, BatchSpan{Off: off - start, Len: len(e.b) - off})
	}
	return e.b, spans
}

// maxBatchFixed bounds encodeBatch's bytes other than the records (seven
// varints).
const maxBatchFixed = 7 * binary.MaxVarintLen64

// batchesSize bounds EncodeBatchSpans' encoding of bs, so that the buffer
// grows once.
func batchesSize(bs []*AppendedBatch) int {
	n := 2 + binary.MaxVarintLen64
	for _, b := range bs {
		n += spanHeader + maxBatchFixed + len(b.Records)
	}
	return n
}

// minEncodedBatch is the fewest bytes encodeBatch writes.
const minEncodedBatch = 7

// DecodeBatches parses what EncodeBatches (or EncodeBatch) wrote. Records
// alias b.
func DecodeBatches(b []byte) ([]*AppendedBatch, error) {
	bs, _, err := DecodeBatchSpans(b)
	return bs, err
}

// DecodeBatchSpans parses what EncodeBatches (or EncodeBatch) wrote and
// returns where each batch's span lies; spans is nil when the encoding has
// none (a single batch, or version 1). Records alias b.
func DecodeBatchSpans(b []byte) ([]*AppendedBatch, []BatchSpan, error) {
	if len(b) == 0 || b[0] != multiBatchTag {
		one, err := DecodeBatch(b)
		if err != nil {
			return nil, nil, err
		}
		return []*AppendedBatch{one}, nil, nil
	}
	d := &dec{b: b[1:]}
	v := d.u8()
	var out []*AppendedBatch
	var spans []BatchSpan
	switch {
	case d.err != nil:
	case v == multiBatchVersionV1:
		d.each(minEncodedBatch, func() { out = append(out, decodeBatch(d)) })
	case v == multiBatchVersion:
		d.each(spanHeader+minEncodedBatch, func() {
			off := len(b) - len(d.b)
			n := uint64(binary.LittleEndian.Uint32(d.take(spanHeader, "batch span")))
			span := BatchSpan{Off: off, Len: spanHeader + int(min(n, uint64(len(d.b))))}
			d.take(n, "batch span")
			if d.err != nil {
				return
			}
			one, err := DecodeBatchSpan(b[off : off+span.Len])
			if err != nil {
				d.err = err
				return
			}
			out, spans = append(out, one), append(spans, span)
		})
	default:
		return nil, nil, fmt.Errorf("%w: batches encoding version %d not supported", ErrDecode, v)
	}
	if err := d.done("batches"); err != nil {
		return nil, nil, err
	}
	if len(d.b) != 0 || len(out) < 2 {
		return nil, nil, fmt.Errorf("%w: malformed batches encoding (%d batches, %d trailing bytes)", ErrDecode, len(out), len(d.b))
	}
	return out, spans, nil
}

// DecodeBatchSpan verifies and parses one batch's span (the bytes a
// BatchSpan of DecodeBatchSpans or EncodeBatchSpans locates). Records
// alias b.
func DecodeBatchSpan(b []byte) (*AppendedBatch, error) {
	if len(b) < spanHeader {
		return nil, fmt.Errorf("%w: batch span of %d bytes", ErrDecode, len(b))
	}
	body := b[spanHeader:]
	if n := binary.LittleEndian.Uint32(b); uint64(n) != uint64(len(body)) {
		return nil, fmt.Errorf("%w: batch span holds %d bytes, its header says %d", ErrDecode, len(body), n)
	}
	if want, got := binary.LittleEndian.Uint32(b[4:]), crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: batch span checksum mismatch (stored %08x, computed %08x)", ErrDecode, want, got)
	}
	return DecodeBatch(body)
}
