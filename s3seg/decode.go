package s3seg

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DecodeFooter decodes the footer of a whole segment object. It verifies the
// magic, the footer CRC and the structure of every index entry, including
// that the blocks tile the object exactly up to the footer.
func DecodeFooter(object []byte) (Footer, error) {
	return DecodeFooterTail(object, int64(len(object)))
}

// DecodeFooterTail decodes the footer from tail, the last len(tail) bytes of
// an object of objectSize bytes, so a reader can fetch just the end of an
// object with a ranged GET. If tail does not hold the whole footer it returns
// a *ShortTailError (errors.Is(err, ErrShortTail)) whose Need is the number
// of trailing bytes required; Need is at most objectSize.
func DecodeFooterTail(tail []byte, objectSize int64) (Footer, error) {
	if int64(len(tail)) > objectSize {
		return Footer{}, fmt.Errorf("s3seg: tail of %d bytes is longer than the object (%d bytes)", len(tail), objectSize)
	}
	if objectSize < TrailerSize+footerHeaderSize {
		return Footer{}, corruptf("object of %d bytes is too small to be a segment", objectSize)
	}
	if len(tail) < TrailerSize {
		return Footer{}, &ShortTailError{Have: int64(len(tail)), Need: TrailerSize}
	}
	trailer := tail[len(tail)-TrailerSize:]
	if string(trailer[8:]) != Magic {
		return Footer{}, corruptf("bad magic %q", trailer[8:])
	}
	footerLen := int64(binary.LittleEndian.Uint32(trailer[0:4]))
	footerCRC := binary.LittleEndian.Uint32(trailer[4:8])
	if footerLen < footerHeaderSize || footerLen > objectSize-TrailerSize {
		return Footer{}, corruptf("footer length %d impossible in an object of %d bytes", footerLen, objectSize)
	}
	need := footerLen + TrailerSize
	if int64(len(tail)) < need {
		return Footer{}, &ShortTailError{Have: int64(len(tail)), Need: need}
	}
	fb := tail[int64(len(tail))-need : len(tail)-TrailerSize]
	if got := checksum(fb); got != footerCRC {
		return Footer{}, corruptf("footer CRC32C %08x, trailer says %08x", got, footerCRC)
	}
	return parseFooter(fb, objectSize-need)
}

// parseFooter decodes CRC-verified footer bytes; blocksEnd is the position of
// the footer in the object.
func parseFooter(b []byte, blocksEnd int64) (Footer, error) {
	r := reader{b: b}
	version := r.u16()
	if r.err == nil && version != FormatVersion {
		return Footer{}, fmt.Errorf("%w: footer version %d (this build reads %d)", ErrUnsupportedVersion, version, FormatVersion)
	}
	count := r.u32()
	if r.err != nil {
		return Footer{}, r.err
	}
	if count == 0 {
		return Footer{}, corruptf("footer has no index entries")
	}
	if uint64(count) > uint64(r.remaining()/(entryFixedSize+1)) {
		return Footer{}, corruptf("footer claims %d entries in %d bytes", count, r.remaining())
	}
	f := Footer{Version: version, Entries: make([]IndexEntry, 0, count)}
	seen := make(map[partitionID]struct{}, count)
	var next int64
	for i := range int(count) {
		var e IndexEntry
		e.Topic = string(r.bytes(int(r.u16())))
		e.TopicID = r.u64()
		e.Partition = int32(r.u32())
		e.Offset = int64(r.u64())
		e.Length = int64(r.u64())
		e.BaseOffset = int64(r.u64())
		e.LastOffset = int64(r.u64())
		e.RecordCount = int32(r.u32())
		e.MinTimestamp = int64(r.u64())
		e.MaxTimestamp = int64(r.u64())
		e.Compression = Compression(r.u8())
		e.CRC = r.u32()
		e.UncompressedSize = int64(r.u64())
		if r.err != nil {
			return Footer{}, fmt.Errorf("index entry %d: %w", i, r.err)
		}
		if e.Topic == "" {
			return Footer{}, corruptf("index entry %d: empty topic name", i)
		}
		if err := validateEntry(e); err != nil {
			return Footer{}, fmt.Errorf("index entry %d: %w", i, err)
		}
		if e.Offset != next {
			return Footer{}, corruptf("index entry %d: block at byte %d, previous block ends at %d", i, e.Offset, next)
		}
		if e.Length > blocksEnd-e.Offset {
			return Footer{}, corruptf("index entry %d: block [%d,+%d) overruns the footer at %d", i, e.Offset, e.Length, blocksEnd)
		}
		next = e.Offset + e.Length
		id := partitionID{e.TopicID, e.Partition}
		if _, dup := seen[id]; dup {
			return Footer{}, corruptf("index entry %d: second block for topic id %d partition %d", i, e.TopicID, e.Partition)
		}
		seen[id] = struct{}{}
		f.Entries = append(f.Entries, e)
	}
	if next != blocksEnd {
		return Footer{}, corruptf("blocks end at byte %d, footer starts at %d", next, blocksEnd)
	}
	if r.remaining() != 0 {
		return Footer{}, corruptf("%d trailing bytes in footer", r.remaining())
	}
	return f, nil
}

// validateEntry checks the internal consistency of an index entry (not its
// position in an object). Everything DecodeBlock later allocates is bounded
// by what it accepts. The topic name is not needed to read a block and is
// not checked here.
func validateEntry(e IndexEntry) error {
	switch {
	case e.Partition < 0:
		return corruptf("negative partition %d", e.Partition)
	case e.Offset < 0:
		return corruptf("negative block position %d", e.Offset)
	case e.Length < 1 || e.Length > MaxBlockSize+maxStoredOverrun:
		return corruptf("block length %d out of range", e.Length)
	case e.BaseOffset < 0:
		return corruptf("negative base offset %d", e.BaseOffset)
	case e.RecordCount < 1:
		return corruptf("record count %d", e.RecordCount)
	case e.BaseOffset > math.MaxInt64-int64(e.RecordCount-1):
		return corruptf("offsets overflow: base %d, %d records", e.BaseOffset, e.RecordCount)
	case e.LastOffset != e.BaseOffset+int64(e.RecordCount-1):
		return corruptf("last offset %d, but base %d and %d records", e.LastOffset, e.BaseOffset, e.RecordCount)
	case e.MinTimestamp > e.MaxTimestamp:
		return corruptf("min timestamp %d > max timestamp %d", e.MinTimestamp, e.MaxTimestamp)
	case !e.Compression.Valid():
		return corruptf("unknown compression %d", uint8(e.Compression))
	case e.UncompressedSize < BlockHeaderSize+minRecordSize*int64(e.RecordCount) || e.UncompressedSize > MaxBlockSize:
		return corruptf("uncompressed size %d impossible for %d records", e.UncompressedSize, e.RecordCount)
	case e.UncompressedSize > maxUncompressedFor(e.Compression, e.Length):
		return corruptf("uncompressed size %d impossible for %d stored %s bytes", e.UncompressedSize, e.Length, e.Compression)
	}
	return nil
}

// DecodeBlock decodes the stored bytes of one block (exactly the Length bytes
// at Offset in the object) described by e. It verifies the block CRC32C,
// decompresses with allocations bounded by MaxBlockSize and by what the
// stored bytes can expand to, and checks that the block header, record count,
// dense offsets and timestamp range agree with e. Any mismatch returns an
// error wrapping ErrCorrupt and no records.
//
// e.Topic is not used (callers that index blocks by topic id need not keep
// the name). The returned records do not alias block; they share one freshly
// allocated buffer per call.
func DecodeBlock(block []byte, e IndexEntry) ([]Record, error) {
	if err := verifyBlock(block, e); err != nil {
		return nil, err
	}
	return decodeVerified(block, e)
}

// verifyBlock validates e and checks that block matches its length and CRC.
func verifyBlock(block []byte, e IndexEntry) error {
	if err := validateEntry(e); err != nil {
		return err
	}
	if int64(len(block)) != e.Length {
		return corruptf("block is %d bytes, index entry says %d", len(block), e.Length)
	}
	if got := checksum(block); got != e.CRC {
		return corruptf("block CRC32C %08x, index entry says %08x", got, e.CRC)
	}
	return nil
}

// decodeVerified decodes a block that passed verifyBlock.
func decodeVerified(block []byte, e IndexEntry) ([]Record, error) {
	payload, err := decompress(block, e)
	if err != nil {
		return nil, err
	}
	return parsePayload(payload, e)
}

// parsePayload decodes an uncompressed block payload. Records alias payload.
func parsePayload(p []byte, e IndexEntry) ([]Record, error) {
	if len(p) < BlockHeaderSize {
		return nil, corruptf("block payload of %d bytes", len(p))
	}
	le := binary.LittleEndian
	topicID := le.Uint64(p[0:8])
	partition := int32(le.Uint32(p[8:12]))
	base := int64(le.Uint64(p[12:20]))
	count := le.Uint32(p[20:24])
	prevTS := int64(le.Uint64(p[24:32]))
	if topicID != e.TopicID || partition != e.Partition || base != e.BaseOffset || count != uint32(e.RecordCount) {
		return nil, corruptf("block header (topic id %d, partition %d, base offset %d, %d records) does not match index entry (%d, %d, %d, %d)",
			topicID, partition, base, count, e.TopicID, e.Partition, e.BaseOffset, e.RecordCount)
	}
	rest := p[BlockHeaderSize:]
	if uint64(count) > uint64(len(rest)/minRecordSize) {
		return nil, corruptf("%d records cannot fit in %d bytes", count, len(rest))
	}
	recs := make([]Record, count)
	minTS, maxTS := int64(math.MaxInt64), int64(math.MinInt64)
	for i := range recs {
		bodyLen, n := binary.Uvarint(rest)
		if n <= 0 || bodyLen > uint64(len(rest)-n) {
			return nil, corruptf("record %d: bad length", i)
		}
		body := rest[n : n+int(bodyLen)]
		rest = rest[n+int(bodyLen):]

		r := reader{b: body}
		attr := r.u8()
		if r.err == nil && attr&^attrKnownMask != 0 {
			return nil, corruptf("record %d: unknown attribute bits %#02x", i, attr)
		}
		prevTS += r.varint() // wrapping, inverse of the encoder's subtraction
		rec := &recs[i]
		rec.Offset = base + int64(i)
		rec.Timestamp = prevTS
		if attr&attrKeyPresent != 0 {
			rec.Key = r.lenBytes()
		}
		if attr&attrValuePresent != 0 {
			rec.Value = r.lenBytes()
		}
		nh := r.uvarint()
		if r.err == nil && nh > uint64(r.remaining()/2) {
			return nil, corruptf("record %d: %d headers cannot fit in %d bytes", i, nh, r.remaining())
		}
		if nh > 0 && r.err == nil {
			rec.Headers = make([]Header, nh)
			for j := range rec.Headers {
				rec.Headers[j].Key = string(r.lenBytes())
				if v := r.lenBytes(); len(v) > 0 {
					rec.Headers[j].Value = v
				}
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("record %d: %w", i, r.err)
		}
		if r.remaining() != 0 {
			return nil, corruptf("record %d: %d unread bytes", i, r.remaining())
		}
		minTS, maxTS = min(minTS, prevTS), max(maxTS, prevTS)
	}
	if len(rest) != 0 {
		return nil, corruptf("%d bytes after the last record", len(rest))
	}
	if minTS != e.MinTimestamp || maxTS != e.MaxTimestamp {
		return nil, corruptf("record timestamps span [%d,%d], index entry says [%d,%d]", minTS, maxTS, e.MinTimestamp, e.MaxTimestamp)
	}
	return recs, nil
}

// reader is a bounds-checked cursor. After the first error every read
// returns zero values and err stays set, so callers check once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = corruptf("truncated or malformed %s at byte %d", what, r.off)
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(what)
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8() byte {
	if b := r.take(1, "uint8"); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2, "uint16"); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4, "uint32"); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8, "uint64"); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *reader) bytes(n int) []byte { return r.take(n, "bytes") }

func (r *reader) uvarint() uint64 { return varintOf(r, "uvarint", binary.Uvarint) }

func (r *reader) varint() int64 { return varintOf(r, "varint", binary.Varint) }

// varintOf reads one variable-length integer with decode (binary.Uvarint
// or binary.Varint); what names it in the error.
func varintOf[T uint64 | int64](r *reader, what string, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b[r.off:])
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.off += n
	return v
}

// lenBytes reads a uvarint length and that many bytes. A zero length yields
// a non-nil empty slice (so a present-but-empty key stays non-nil).
func (r *reader) lenBytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail("length-prefixed bytes")
		return nil
	}
	return r.take(int(n), "bytes")
}
