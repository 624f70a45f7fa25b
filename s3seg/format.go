package s3seg

import (
	"fmt"
	"hash/crc32"
	"strings"
)

// Format constants of segment object format v1. DESIGN.md specifies the layout
// byte by byte; changing any of these changes the format.
const (
	// FormatVersion is the footer format version written by Encoder.
	FormatVersion uint16 = 1

	// Magic ends every segment object. It identifies the 16-byte trailer
	// layout, which later format versions keep; the footer's version field
	// selects the footer and block layout.
	Magic = "SHSEG\x00v1"

	// TrailerSize is the size of the fixed trailer at the end of an object:
	// footer length (uint32), footer CRC32C (uint32), magic (8 bytes).
	TrailerSize = 16

	// BlockHeaderSize is the size of the fixed header at the start of every
	// uncompressed block payload.
	BlockHeaderSize = 32

	// MaxBlockSize bounds the uncompressed payload of one block. Encode
	// refuses larger batches and decoders treat larger sizes as corrupt, so
	// no decoder allocation is ever larger than this.
	MaxBlockSize = 256 << 20

	// MaxTopicLength bounds a topic name in the footer (uint16 length).
	MaxTopicLength = 1<<16 - 1

	// footerHeaderSize is version (uint16) + entry count (uint32).
	footerHeaderSize = 6
	// entryFixedSize is the size of an index entry without its topic bytes.
	entryFixedSize = 2 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 8 + 1 + 4 + 8
	// minRecordSize is the smallest encoded record: length prefix, attributes,
	// timestamp delta and header count, one byte each.
	minRecordSize = 4
	// maxFooterSize bounds the footer so its length fits the uint32 field.
	maxFooterSize = 1<<32 - 1
)

// Record attribute bits (byte 0 of every encoded record).
const (
	attrKeyPresent   = 1 << 0
	attrValuePresent = 1 << 1
	attrKnownMask    = attrKeyPresent | attrValuePresent
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the CRC32C (Castagnoli) of b.
func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Header is one record header. Headers keep their order; a header value of
// length zero decodes as nil (null and empty header values are not
// distinguished).
type Header struct {
	Key   string
	Value []byte
}

// Record is one record of a partition.
//
// Key == nil is a null key and is distinct from an empty key ([]byte{});
// likewise Value == nil is a null value (a tombstone) and is distinct from an
// empty value.
type Record struct {
	Offset    int64
	Timestamp int64 // unix milliseconds
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Compression identifies the codec of one block. The numeric values are part
// of the on-disk format: ONLY ADD TO THE END.
type Compression uint8

// Compression codecs.
const (
	CompressionNone Compression = 0
	CompressionZstd Compression = 1 // klauspost/compress zstd, one frame
	CompressionLZ4  Compression = 2 // LZ4 block format (no frame), pierrec/lz4/v4
)

// String returns "none", "zstd", "lz4" or "compression(N)".
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZstd:
		return "zstd"
	case CompressionLZ4:
		return "lz4"
	default:
		return fmt.Sprintf("compression(%d)", uint8(c))
	}
}

// Valid reports whether c is a known codec.
func (c Compression) Valid() bool { return c <= CompressionLZ4 }

// ParseCompression parses "none", "zstd" or "lz4" (case-insensitive).
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none":
		return CompressionNone, nil
	case "zstd":
		return CompressionZstd, nil
	case "lz4":
		return CompressionLZ4, nil
	default:
		return 0, fmt.Errorf("%w: %q (want none, zstd or lz4)", ErrUnknownCompression, s)
	}
}

// PartitionBatch is the input of one block: the records of one partition in
// one flush. Records must be non-empty with dense ascending offsets
// (Records[i].Offset == Records[0].Offset+i, Records[0].Offset >= 0).
type PartitionBatch struct {
	Topic       string
	TopicID     uint64
	Partition   int32
	Compression Compression
	Records     []Record
}

// IndexEntry describes one block of an object. It is what the footer stores
// per block and what DecodeBlock and Reader.ReadBlock need to read it.
type IndexEntry struct {
	Topic            string
	TopicID          uint64
	Partition        int32
	Offset           int64 // position of the block in the object
	Length           int64 // stored (compressed) length of the block
	BaseOffset       int64 // offset of the first record
	LastOffset       int64 // offset of the last record: BaseOffset+RecordCount-1
	RecordCount      int32
	MinTimestamp     int64
	MaxTimestamp     int64
	Compression      Compression
	CRC              uint32 // CRC32C of the Length stored bytes
	UncompressedSize int64  // size of the uncompressed block payload
}

// Contains reports whether offset lies in [BaseOffset, LastOffset].
func (e IndexEntry) Contains(offset int64) bool {
	return offset >= e.BaseOffset && offset <= e.LastOffset
}

// Footer is the decoded index of a segment object. Entries are in object
// order: Entries[0].Offset == 0 and each block starts where the previous ends.
type Footer struct {
	Version uint16
	Entries []IndexEntry
}

// Lookup returns the entry for (topicID, partition). An object holds at most
// one block per partition.
func (f Footer) Lookup(topicID uint64, partition int32) (IndexEntry, bool) {
	for _, e := range f.Entries {
		if e.TopicID == topicID && e.Partition == partition {
			return e, true
		}
	}
	return IndexEntry{}, false
}

// BlocksEnd returns the byte position where the footer starts, i.e. the end
// of the last block.
func (f Footer) BlocksEnd() int64 {
	if len(f.Entries) == 0 {
		return 0
	}
	last := f.Entries[len(f.Entries)-1]
	return last.Offset + last.Length
}
