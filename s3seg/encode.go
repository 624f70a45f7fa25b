package s3seg

import (
	"encoding/binary"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// keepScratch bounds the scratch buffers an Encoder keeps between calls, so
// one unusually large object does not pin its memory for the process
// lifetime.
const keepScratch = 64 << 20

// Encoder builds segment objects. It keeps its compressors (a zstd encoder is
// expensive to create) and scratch buffers between calls.
//
// An Encoder is not safe for concurrent use: use one per goroutine (or a
// sync.Pool of them). It starts no goroutines and needs no Close.
type Encoder struct {
	zstdLevel zstd.EncoderLevel
	zstd      *zstd.Encoder // created on first zstd block
	lz4       lz4.Compressor
	payload   []byte // scratch: uncompressed payload of the current block
	obj       []byte // scratch: the object being built
}

// EncoderOption configures an Encoder.
type EncoderOption func(*Encoder)

// WithZstdLevel sets the zstd compression level on the zstd command-line
// scale. The Go implementation maps it onto its four speeds: below 3
// fastest, 3-5 default, 6-9 better, 10 and above best. The default is 3. The
// level changes only the compressed bytes, never the format.
func WithZstdLevel(level int) EncoderOption {
	return func(e *Encoder) { e.zstdLevel = zstd.EncoderLevelFromZstd(level) }
}

// NewEncoder returns an Encoder.
func NewEncoder(opts ...EncoderOption) *Encoder {
	e := &Encoder{zstdLevel: zstd.SpeedDefault}
	for _, o := range opts {
		o(e)
	}
	return e
}

type partitionID struct {
	topicID   uint64
	partition int32
}

// Encode builds one segment object holding one block per batch, in the order
// given, and returns the object and its footer (identical to what
// DecodeFooter returns for the object). The returned slice is newly allocated
// and owned by the caller.
//
// Encode rejects, with an error wrapping ErrInvalidBatch: no batches; a batch
// without records; an empty topic name or one longer than MaxTopicLength or
// not valid UTF-8; a negative partition; two batches for the same (TopicID,
// Partition); an unknown compression; offsets that are not dense and
// ascending from a non-negative base; more than MaxInt32 records; or an
// uncompressed block larger than MaxBlockSize.
func (e *Encoder) Encode(parts []PartitionBatch) ([]byte, Footer, error) {
	if len(parts) == 0 {
		return nil, Footer{}, invalidf("no partition batches")
	}
	seen := make(map[partitionID]struct{}, len(parts))
	entries := make([]IndexEntry, 0, len(parts))
	obj := e.obj[:0]
	for i := range parts {
		p := &parts[i]
		if err := validateBatch(p); err != nil {
			return nil, Footer{}, err
		}
		id := partitionID{p.TopicID, p.Partition}
		if _, dup := seen[id]; dup {
			return nil, Footer{}, invalidf("two batches for topic id %d partition %d", p.TopicID, p.Partition)
		}
		seen[id] = struct{}{}

		payload, minTS, maxTS, err := appendPayload(e.payload[:0], p)
		if err != nil {
			return nil, Footer{}, err
		}
		e.payload = payload
		start := len(obj)
		obj, err = e.compressInto(obj, payload, p.Compression)
		if err != nil {
			return nil, Footer{}, err
		}
		stored := obj[start:]
		entries = append(entries, IndexEntry{
			Topic:            p.Topic,
			TopicID:          p.TopicID,
			Partition:        p.Partition,
			Offset:           int64(start),
			Length:           int64(len(stored)),
			BaseOffset:       p.Records[0].Offset,
			LastOffset:       p.Records[len(p.Records)-1].Offset,
			RecordCount:      int32(len(p.Records)),
			MinTimestamp:     minTS,
			MaxTimestamp:     maxTS,
			Compression:      p.Compression,
			CRC:              checksum(stored),
			UncompressedSize: int64(len(payload)),
		})
	}
	footer := Footer{Version: FormatVersion, Entries: entries}
	obj, err := appendFooter(obj, footer)
	if err != nil {
		return nil, Footer{}, err
	}
	out := slices.Clone(obj)
	if cap(obj) <= keepScratch {
		e.obj = obj[:0]
	} else {
		e.obj = nil
	}
	if cap(e.payload) > keepScratch {
		e.payload = nil
	}
	return out, footer, nil
}

func validateBatch(p *PartitionBatch) error {
	switch {
	case p.Topic == "":
		return invalidf("empty topic name")
	case len(p.Topic) > MaxTopicLength:
		return invalidf("topic name of %d bytes exceeds %d", len(p.Topic), MaxTopicLength)
	case !utf8.ValidString(p.Topic):
		return invalidf("topic name %q is not valid UTF-8", p.Topic)
	case p.Partition < 0:
		return invalidf("topic %q: negative partition %d", p.Topic, p.Partition)
	case !p.Compression.Valid():
		return invalidf("topic %q partition %d: %v", p.Topic, p.Partition, p.Compression)
	case len(p.Records) == 0:
		return invalidf("topic %q partition %d: no records", p.Topic, p.Partition)
	case len(p.Records) > math.MaxInt32:
		return invalidf("topic %q partition %d: %d records exceed %d", p.Topic, p.Partition, len(p.Records), math.MaxInt32)
	}
	base := p.Records[0].Offset
	if base < 0 {
		return invalidf("topic %q partition %d: negative base offset %d", p.Topic, p.Partition, base)
	}
	if base > math.MaxInt64-int64(len(p.Records)-1) {
		return invalidf("topic %q partition %d: offsets overflow int64", p.Topic, p.Partition)
	}
	for i := range p.Records {
		if want := base + int64(i); p.Records[i].Offset != want {
			return invalidf("topic %q partition %d: record %d has offset %d, want %d (offsets must be dense and ascending)",
				p.Topic, p.Partition, i, p.Records[i].Offset, want)
		}
	}
	return nil
}

// appendPayload appends the uncompressed block payload (block header and
// records, see DESIGN.md) of p to dst and returns it with the minimum and
// maximum record timestamps.
func appendPayload(dst []byte, p *PartitionBatch) (_ []byte, minTS, maxTS int64, _ error) {
	recs := p.Records
	baseTS := recs[0].Timestamp
	dst = binary.LittleEndian.AppendUint64(dst, p.TopicID)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(recs[0].Offset))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(recs)))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(baseTS))

	minTS, maxTS = baseTS, baseTS
	prevTS := baseTS
	start := len(dst)
	for i := range recs {
		r := &recs[i]
		minTS, maxTS = min(minTS, r.Timestamp), max(maxTS, r.Timestamp)
		// Wrapping subtraction; the decoder's wrapping addition inverts it
		// for any pair of int64 timestamps.
		delta := r.Timestamp - prevTS
		prevTS = r.Timestamp

		var attr byte
		body := 1 + varintLen(delta) + uvarintLen(uint64(len(r.Headers)))
		if r.Key != nil {
			attr |= attrKeyPresent
			body += uvarintLen(uint64(len(r.Key))) + len(r.Key)
		}
		if r.Value != nil {
			attr |= attrValuePresent
			body += uvarintLen(uint64(len(r.Value))) + len(r.Value)
		}
		for _, h := range r.Headers {
			body += uvarintLen(uint64(len(h.Key))) + len(h.Key) + uvarintLen(uint64(len(h.Value))) + len(h.Value)
		}
		if len(dst)-start+body+binary.MaxVarintLen64 > MaxBlockSize-BlockHeaderSize {
			return dst, 0, 0, invalidf("topic %q partition %d: block exceeds %d bytes at record %d", p.Topic, p.Partition, MaxBlockSize, i)
		}
		dst = slices.Grow(dst, uvarintLen(uint64(body))+body)
		dst = binary.AppendUvarint(dst, uint64(body))
		dst = append(dst, attr)
		dst = binary.AppendVarint(dst, delta)
		if r.Key != nil {
			dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
			dst = append(dst, r.Key...)
		}
		if r.Value != nil {
			dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
			dst = append(dst, r.Value...)
		}
		dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
			dst = append(dst, h.Key...)
			dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
			dst = append(dst, h.Value...)
		}
	}
	return dst, minTS, maxTS, nil
}

// appendFooter appends the footer and the trailer to dst.
func appendFooter(dst []byte, f Footer) ([]byte, error) {
	start := len(dst)
	le := binary.LittleEndian
	dst = le.AppendUint16(dst, f.Version)
	dst = le.AppendUint32(dst, uint32(len(f.Entries)))
	for _, e := range f.Entries {
		if len(e.Topic) > MaxTopicLength {
			return dst, invalidf("topic name of %d bytes exceeds %d", len(e.Topic), MaxTopicLength)
		}
		dst = le.AppendUint16(dst, uint16(len(e.Topic)))
		dst = append(dst, e.Topic...)
		dst = le.AppendUint64(dst, e.TopicID)
		dst = le.AppendUint32(dst, uint32(e.Partition))
		dst = le.AppendUint64(dst, uint64(e.Offset))
		dst = le.AppendUint64(dst, uint64(e.Length))
		dst = le.AppendUint64(dst, uint64(e.BaseOffset))
		dst = le.AppendUint64(dst, uint64(e.LastOffset))
		dst = le.AppendUint32(dst, uint32(e.RecordCount))
		dst = le.AppendUint64(dst, uint64(e.MinTimestamp))
		dst = le.AppendUint64(dst, uint64(e.MaxTimestamp))
		dst = append(dst, byte(e.Compression))
		dst = le.AppendUint32(dst, e.CRC)
		dst = le.AppendUint64(dst, uint64(e.UncompressedSize))
	}
	n := len(dst) - start
	if n > maxFooterSize {
		return dst, invalidf("footer of %d bytes exceeds %d", n, maxFooterSize)
	}
	crc := checksum(dst[start:])
	dst = le.AppendUint32(dst, uint32(n))
	dst = le.AppendUint32(dst, crc)
	dst = append(dst, Magic...)
	return dst, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
