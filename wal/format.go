package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk format, version 1. See DESIGN.md for the full description; the
// golden file testdata/golden-v1.wal pins it.
//
//	segment = header frame*
//	header  = magic "SHWL" | version uint16 (=1) | reserved uint16 (=0) |
//	          base index uint64 | CRC32C(bytes 0..15) uint32            (20 bytes)
//	frame   = data length uint32 | CRC32C(index ‖ data) uint32 |
//	          index uint64 | data                                        (16 bytes + data)
//
// All integers are little-endian.
const (
	segmentMagic    = "SHWL"
	formatVersion   = 1
	headerSize      = 20
	frameHeaderSize = 16

	segmentSuffix = ".wal"
	tempSuffix    = ".tmp"
	tornSuffix    = ".torn"
	segNameDigits = 20

	// MaxEntrySize is the largest Entry.Data Append accepts.
	MaxEntrySize = 256 << 20

	// tailScanBudget bounds the bytes checksummed while deciding whether a
	// bad frame at the end of the last segment is followed by a valid frame.
	// A tail that would need more work is reported as corrupt rather than
	// guessed at (a real torn tail is zeros or the rest of one write).
	tailScanBudget = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentName returns the file name of the segment whose first index is base.
func segmentName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, base, segmentSuffix)
}

// parseSegmentName is the inverse of segmentName; names that do not round-trip
// exactly (temp files, torn side files, foreign files) are rejected.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segNameDigits+len(segmentSuffix) || !strings.HasSuffix(name, segmentSuffix) {
		return 0, false
	}
	base, err := strconv.ParseUint(name[:segNameDigits], 10, 64)
	if err != nil || base == 0 || segmentName(base) != name {
		return 0, false
	}
	return base, true
}

func encodeHeader(base uint64) []byte {
	b := make([]byte, headerSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], base)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	return b
}

func frameSize(dataLen int) int64 { return frameHeaderSize + int64(dataLen) }

// appendFrame appends the encoded frame for (index, data) to dst.
func appendFrame(dst []byte, index uint64, data []byte) []byte {
	var h [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[8:], index)
	crc := crc32.Update(0, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(h[4:], crc)
	dst = append(dst, h[:]...)
	return append(dst, data...)
}

// decodeFrame verifies the frame at the start of b. It returns the index and
// the data (a sub-slice of b), or a reason why the frame is not valid.
func decodeFrame(b []byte) (index uint64, data []byte, reason string) {
	if len(b) < frameHeaderSize {
		return 0, nil, fmt.Sprintf("truncated frame header (%d bytes)", len(b))
	}
	n := binary.LittleEndian.Uint32(b[0:])
	if uint64(n) > uint64(len(b)-frameHeaderSize) {
		return 0, nil, fmt.Sprintf("frame length %d exceeds the %d bytes that remain", n, len(b)-frameHeaderSize)
	}
	want := binary.LittleEndian.Uint32(b[4:])
	end := frameHeaderSize + int(n)
	if got := crc32.Checksum(b[8:end], castagnoli); got != want {
		return 0, nil, fmt.Sprintf("frame checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return binary.LittleEndian.Uint64(b[8:]), b[frameHeaderSize:end:end], ""
}

// pos locates one entry inside a segment file.
type pos struct {
	index uint64
	off   int64  // offset of the frame header
	n     uint32 // data length
}

// segmentScan is the result of decoding one segment image.
type segmentScan struct {
	base    uint64
	entries []pos
	end     int64 // offset just past the last valid frame
	torn    bool  // bytes in [end, len) are a torn tail to cut away
	reason  string
}

// scanSegment decodes a complete segment image. file is used in errors only.
// Only the last segment of a log may end in a torn tail: a bad or short frame
// with no valid frame anywhere after it. Any other bad frame is corruption.
func scanSegment(file string, data []byte, last bool) (segmentScan, error) {
	var s segmentScan
	if len(data) < headerSize {
		return s, corruptf(file, 0, "segment header truncated (%d bytes)", len(data))
	}
	if string(data[:4]) != segmentMagic {
		return s, corruptf(file, 0, "bad magic %q", data[:4])
	}
	if got, want := crc32.Checksum(data[:16], castagnoli), binary.LittleEndian.Uint32(data[16:]); got != want {
		return s, corruptf(file, 0, "segment header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint16(data[4:]); v != formatVersion {
		return s, corruptf(file, 4, "unsupported format version %d", v)
	}
	if r := binary.LittleEndian.Uint16(data[6:]); r != 0 {
		return s, corruptf(file, 6, "reserved header field is %d", r)
	}
	s.base = binary.LittleEndian.Uint64(data[8:])
	if s.base == 0 {
		return s, corruptf(file, 8, "segment base index is 0")
	}
	prev := s.base - 1 // every index must be > prev
	off := int64(headerSize)
	size := int64(len(data))
	for off < size {
		index, d, reason := decodeFrame(data[off:])
		if reason != "" {
			if !last {
				return s, corruptf(file, off, "%s (not the last segment)", reason)
			}
			if validFrameAfter(data, off+1, prev) {
				return s, corruptf(file, off, "%s, and a valid frame follows", reason)
			}
			s.end, s.torn, s.reason = off, true, reason
			return s, nil
		}
		if len(s.entries) == 0 && index != s.base {
			return s, corruptf(file, off, "first index %d does not match segment base %d", index, s.base)
		}
		if index <= prev {
			return s, corruptf(file, off, "index %d not greater than previous index %d", index, prev)
		}
		s.entries = append(s.entries, pos{index: index, off: off, n: uint32(len(d))})
		prev = index
		off += frameSize(len(d))
	}
	s.end = off
	return s, nil
}

// validFrameAfter reports whether any byte position at or after from starts
// a frame that verifies and continues the index order. If the search would
// checksum more than tailScanBudget bytes it gives up and answers true, so
// that an unverifiable tail is reported as corruption, never dropped.
func validFrameAfter(data []byte, from int64, prev uint64) bool {
	budget := int64(tailScanBudget)
	size := int64(len(data))
	for p := from; p+frameHeaderSize <= size; p++ {
		n := int64(binary.LittleEndian.Uint32(data[p:]))
		if n > size-p-frameHeaderSize {
			continue
		}
		if binary.LittleEndian.Uint64(data[p+8:]) <= prev {
			continue
		}
		budget -= 8 + n
		if budget < 0 {
			return true
		}
		if crc32.Checksum(data[p+8:p+frameHeaderSize+n], castagnoli) == binary.LittleEndian.Uint32(data[p+4:]) {
			return true
		}
	}
	return false
}
