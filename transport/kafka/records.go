package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/fsm"
)

// Record batch v2 (magic 2), the only message format this broker reads and
// writes. Layout (big endian):
//
//	0  base offset        int64
//	8  batch length       int32 (bytes after this field)
//	12 leader epoch       int32
//	16 magic              int8 (2)
//	17 crc                uint32, CRC-32C of everything from attributes on
//	21 attributes         int16 (bits 0-2 codec, 3 log-append time, 4 transactional, 5 control)
//	23 last offset delta  int32
//	27 base timestamp     int64
//	35 max timestamp      int64
//	43 producer id        int64
//	51 producer epoch     int16
//	53 base sequence      int32
//	57 record count       int32
//	61 records (compressed as a whole when the codec is not none)
const (
	batchHeaderSize = 61
	batchLenOffset  = 12 // bytes before the length field's end
	crcStart        = 21

	attrCodecMask     = 0x07
	attrTransactional = 0x10
	attrControl       = 0x20

	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchError is a produce batch the broker refuses, with its Kafka code.
type batchError struct {
	code int16
	msg  string
}

func (e *batchError) Error() string { return e.msg }

func corrupt(format string, args ...any) error {
	return &batchError{code: kerr.CorruptMessage.Code, msg: fmt.Sprintf(format, args...)}
}

// producedBatch is one decoded record batch of a produce request.
type producedBatch struct {
	producerID    int64
	producerEpoch int16
	baseSequence  int32
	records       []fsm.Record
}

// idempotent reports whether the batch carries a producer id and sequence.
func (b *producedBatch) idempotent() bool { return b.producerID >= 0 }

// decodeBatches decodes every record batch of one partition's produce
// data. maxBytes bounds each batch's decompressed records.
func decodeBatches(data []byte, maxBytes int) ([]producedBatch, error) {
	var out []producedBatch
	for len(data) > 0 {
		if len(data) < batchHeaderSize {
			return nil, corrupt("record batch of %d bytes is shorter than its %d-byte header", len(data), batchHeaderSize)
		}
		if magic := int8(data[16]); magic != 2 {
			return nil, &batchError{code: kerr.UnsupportedForMessageFormat.Code, msg: fmt.Sprintf("message format v%d is not supported: use record batch v2 (magic 2)", magic)}
		}
		n := int64(int32(binary.BigEndian.Uint32(data[8:]))) + batchLenOffset
		if n < batchHeaderSize || n > int64(len(data)) {
			return nil, corrupt("record batch length %d outside [%d, %d]", n, batchHeaderSize, len(data))
		}
		b, err := decodeBatch(data[:n], maxBytes)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		data = data[n:]
	}
	if len(out) == 0 {
		return nil, corrupt("no record batch")
	}
	return out, nil
}

// decodeBatch checks one batch's CRC and attributes and decodes its records.
func decodeBatch(b []byte, maxBytes int) (producedBatch, error) {
	if want, got := binary.BigEndian.Uint32(b[17:]), crc32.Checksum(b[crcStart:], castagnoli); want != got {
		return producedBatch{}, corrupt("record batch CRC-32C %08x, computed %08x", want, got)
	}
	attrs := int16(binary.BigEndian.Uint16(b[21:]))
	if attrs&(attrTransactional|attrControl) != 0 {
		return producedBatch{}, &batchError{code: kerr.InvalidRecord.Code, msg: "transactional and control batches are not supported"}
	}
	pb := producedBatch{
		producerID:    int64(binary.BigEndian.Uint64(b[43:])),
		producerEpoch: int16(binary.BigEndian.Uint16(b[51:])),
		baseSequence:  int32(binary.BigEndian.Uint32(b[53:])),
	}
	baseTS := int64(binary.BigEndian.Uint64(b[27:]))
	count := int32(binary.BigEndian.Uint32(b[57:]))
	lastDelta := int32(binary.BigEndian.Uint32(b[23:]))
	if count <= 0 || lastDelta != count-1 {
		return producedBatch{}, corrupt("record batch holds %d records with last offset delta %d", count, lastDelta)
	}
	raw, err := decompress(int(attrs&attrCodecMask), b[batchHeaderSize:], maxBytes)
	if err != nil {
		return producedBatch{}, err
	}
	if int(count) > len(raw) {
		return producedBatch{}, corrupt("record count %d for %d bytes", count, len(raw))
	}
	pb.records, err = decodeRecords(raw, int(count), baseTS)
	return pb, err
}

// decodeRecords decodes count records (Kafka varint framing). A record's
// null key or value stays nil; an empty one stays empty.
func decodeRecords(raw []byte, count int, baseTS int64) ([]fsm.Record, error) {
	out := make([]fsm.Record, count)
	for i := range out {
		var (
			r   recordReader
			err error
		)
		r.b = raw
		n := r.varint()
		if r.err != nil || n < 0 || n > int64(len(r.b)) {
			return nil, corrupt("record %d: bad length", i)
		}
		r.b, raw = r.b[:n], r.b[n:]
		out[i], err = r.record(i, baseTS)
		if err != nil {
			return nil, err
		}
	}
	if len(raw) != 0 {
		return nil, corrupt("%d bytes after the last record", len(raw))
	}
	return out, nil
}

// recordReader reads one record's fields; the first error sticks.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a varint-length byte string; length -1 is null (nil).
func (r *recordReader) bytes() []byte {
	n := r.varint()
	if r.err != nil || n == -1 {
		return nil
	}
	if n < -1 || n > int64(len(r.b)) {
		r.err = errors.New("bad length")
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *recordReader) record(i int, baseTS int64) (fsm.Record, error) {
	if len(r.b) < 1 {
		return fsm.Record{}, corrupt("record %d: empty", i)
	}
	r.b = r.b[1:] // attributes, unused
	tsDelta := r.varint()
	if delta := r.varint(); r.err == nil && delta != int64(i) {
		return fsm.Record{}, corrupt("record %d has offset delta %d", i, delta)
	}
	rec := fsm.Record{Key: r.bytes(), Value: r.bytes()}
	if baseTS >= 0 {
		rec.Timestamp = baseTS + tsDelta
	}
	nh := r.varint()
	if r.err == nil && (nh < 0 || nh > int64(len(r.b))) {
		return fsm.Record{}, corrupt("record %d: %d headers", i, nh)
	}
	if nh > 0 {
		rec.Headers = make([]fsm.Header, nh)
	}
	for j := range rec.Headers {
		k := r.bytes()
		rec.Headers[j] = fsm.Header{Key: string(k), Value: r.bytes()}
	}
	if r.err != nil || len(r.b) != 0 {
		return fsm.Record{}, corrupt("record %d is malformed", i)
	}
	return rec, nil
}

// decompress returns the records of a batch compressed with codec, at most
// maxBytes of them. The framings are the ones Kafka clients write: gzip
// and lz4 streams (lz4 frame format), a zstd frame, and snappy either as a
// raw block (franz-go, librdkafka) or in the Java client's xerial framing.
func decompress(codec int, src []byte, maxBytes int) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch codec {
	case codecNone:
		return src, nil
	case codecGzip:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(src)); err == nil {
			out, err = readBounded(zr, maxBytes)
		}
	case codecSnappy:
		out, err = decodeSnappy(src, maxBytes)
	case codecLz4:
		out, err = readBounded(lz4.NewReader(bytes.NewReader(src)), maxBytes)
	case codecZstd:
		out, err = decodeZstd(src, maxBytes)
	default:
		return nil, corrupt("unknown compression codec %d", codec)
	}
	if errors.Is(err, errTooLarge) {
		return nil, &batchError{code: kerr.MessageTooLarge.Code, msg: fmt.Sprintf("record batch decompresses to more than %d bytes", maxBytes)}
	}
	if err != nil {
		return nil, corrupt("decompressing record batch (codec %d): %v", codec, err)
	}
	return out, nil
}

var errTooLarge = errors.New("decompressed batch too large")

func readBounded(r io.Reader, maxBytes int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(maxBytes)+1))
	if err == nil && len(out) > maxBytes {
		err = errTooLarge
	}
	return out, err
}

// xerialMagic starts snappy data in the Java client's xerial framing: the
// magic, two int32 versions, then blocks of [int32 length][snappy block].
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func decodeSnappy(src []byte, maxBytes int) ([]byte, error) {
	if len(src) < 16 || !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(nil, src, maxBytes)
	}
	var out []byte
	for src = src[16:]; len(src) > 0; {
		if len(src) < 4 {
			return nil, errors.New("truncated xerial block length")
		}
		n := binary.BigEndian.Uint32(src)
		if uint64(n) > uint64(len(src)-4) {
			return nil, errors.New("truncated xerial block")
		}
		var err error
		if out, err = snappyBlock(out, src[4:4+n], maxBytes-len(out)); err != nil {
			return nil, err
		}
		src = src[4+n:]
	}
	return out, nil
}

// snappyBlock appends one decoded snappy block to dst (s2 decodes snappy).
func snappyBlock(dst, block []byte, maxBytes int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if n > maxBytes {
		return nil, errTooLarge
	}
	buf, err := s2.Decode(make([]byte, n), block)
	if err != nil {
		return nil, err
	}
	return append(dst, buf...), nil
}

// zstdDecoders are streaming decoders with concurrency 1 (they decode in
// the caller's goroutine and start none), reused across requests: a frame
// is read through readBounded, so a small frame claiming a huge content
// size costs at most maxBytes, never the claim.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(fmt.Sprintf("kafka: zstd decoder: %v", err)) // constant options
	}
	return d
}}

func decodeZstd(src []byte, maxBytes int) ([]byte, error) {
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return nil, err
	}
	return readBounded(d, maxBytes)
}

// appendBatch appends recs (consecutive offsets from recs[0].Offset) as one
// uncompressed record batch v2 with the partition's leader epoch.
func appendBatch(dst []byte, recs []fsm.FetchedRecord, leaderEpoch int32) []byte {
	start := len(dst)
	base, baseTS := recs[0].Offset, recs[0].Timestamp
	maxTS := baseTS
	for i := range recs {
		maxTS = max(maxTS, recs[i].Timestamp)
	}
	dst = appendBatchHeader(dst, base, recs[len(recs)-1].Offset-base, baseTS, maxTS, len(recs), leaderEpoch)
	for i := range recs {
		dst = appendRecord(dst, &recs[i], base, baseTS)
	}
	return sealBatch(dst, start)
}

// appendEmptyBatch appends a record batch v2 with no records covering
// offsets base..last (at most 2^31-1 of them): what Kafka answers for a
// batch compaction emptied, and what moves a consumer past offsets a
// restore recorded as a gap when no record follows them yet (clients
// continue at last+1). Its timestamps are -1 (none).
func appendEmptyBatch(dst []byte, base, last int64, leaderEpoch int32) []byte {
	start := len(dst)
	dst = appendBatchHeader(dst, base, min(last-base, math.MaxInt32), -1, -1, 0, leaderEpoch)
	return sealBatch(dst, start)
}

// appendBatchHeader appends the header of an uncompressed record batch v2
// (CreateTime, no producer) with its length and CRC left for sealBatch.
func appendBatchHeader(dst []byte, base, lastDelta, firstTS, maxTS int64, count int, leaderEpoch int32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	dst = binary.BigEndian.AppendUint32(dst, 0) // length, set by sealBatch
	dst = binary.BigEndian.AppendUint32(dst, uint32(leaderEpoch))
	dst = append(dst, 2)                        // magic
	dst = binary.BigEndian.AppendUint32(dst, 0) // crc, set by sealBatch
	dst = binary.BigEndian.AppendUint16(dst, 0) // attributes: CreateTime, no codec
	dst = binary.BigEndian.AppendUint32(dst, uint32(lastDelta))
	dst = binary.BigEndian.AppendUint64(dst, uint64(firstTS))
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTS))
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(0)) // producer id -1
	dst = binary.BigEndian.AppendUint16(dst, 0xffff)     // producer epoch -1
	dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // base sequence -1
	return binary.BigEndian.AppendUint32(dst, uint32(count))
}

// sealBatch sets the length and CRC of the batch that starts at
// dst[start:].
func sealBatch(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-batchLenOffset))
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+crcStart:], castagnoli))
	return dst
}

// appendRecord appends one record in Kafka's varint framing.
func appendRecord(dst []byte, r *fsm.FetchedRecord, base, baseTS int64) []byte {
	tsDelta, offDelta := r.Timestamp-baseTS, r.Offset-base
	n := 1 + varintLen(tsDelta) + varintLen(offDelta) + bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, 0) // attributes
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

// appendBytes writes a varint-length byte string; nil is null (-1).
func appendBytes(dst, p []byte) []byte {
	if p == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(p)))
	return append(dst, p...)
}

func bytesLen(p []byte) int {
	if p == nil {
		return 1
	}
	return varintLen(int64(len(p))) + len(p)
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// appendFetched appends recs as record batches: one per run of consecutive
// offsets, so that offsets skipped by a restore gap start a new batch whose
// base offset tells the client where the records are.
func appendFetched(dst []byte, recs []fsm.FetchedRecord, leaderEpoch int32) []byte {
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].Offset == recs[n-1].Offset+1 {
			n++
		}
		dst = appendBatch(dst, recs[:n], leaderEpoch)
		recs = recs[n:]
	}
	return dst
}
