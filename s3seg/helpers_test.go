package s3seg_test

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/streamhouse/streamhouse/s3seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// fixTrailerCRC recomputes the footer CRC in obj's trailer, if the trailer's
// footer length is plausible, so tests and fuzzers can reach the footer
// parser with modified footers.
func fixTrailerCRC(obj []byte) bool {
	if len(obj) < s3seg.TrailerSize {
		return false
	}
	tr := obj[len(obj)-s3seg.TrailerSize:]
	n := int(binary.LittleEndian.Uint32(tr[0:4]))
	if n > len(obj)-s3seg.TrailerSize {
		return false
	}
	fb := obj[len(obj)-s3seg.TrailerSize-n : len(obj)-s3seg.TrailerSize]
	binary.LittleEndian.PutUint32(tr[4:8], crc32c(fb))
	return true
}
