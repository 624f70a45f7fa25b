package s3seg

import (
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Ratio bounds used to reject a declared uncompressed size that the stored
// bytes cannot possibly expand to, before anything of that size is
// allocated. They are properties of the codecs, not tuning knobs:
//
//   - LZ4 block format: every output byte beyond a small per-sequence constant
//     costs at least 1/255 input byte (match-length extension bytes add 255
//     each), so output <= 255*input + a constant.
//   - zstd: a block decodes to at most 128 KiB and occupies at least 4 bytes
//     (3-byte block header + 1 RLE byte), so output <= 32768*input.
const (
	lz4MaxRatio      = 255
	lz4RatioSlack    = 64
	zstdMaxRatio     = 128 << 10 / 4
	maxStoredOverrun = MaxBlockSize/255 + 4096 // worst-case expansion of incompressible data
)

// zstdDecoder is shared by every DecodeBlock call: a zstd.Decoder is expensive
// to create and DecodeAll is safe for concurrent use (up to GOMAXPROCS calls
// run at once; further calls wait for a free internal decoder). It starts no
// goroutines because it is only used through DecodeAll.
var zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxBlockSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		// The options are constants; an error here is a programming error.
		panic(fmt.Sprintf("s3seg: creating zstd decoder: %v", err))
	}
	return d
})

// maxUncompressedFor returns the largest uncompressed size that stored bytes
// of the given length and codec can decode to.
func maxUncompressedFor(c Compression, stored int64) int64 {
	var m int64
	switch c {
	case CompressionNone:
		m = stored
	case CompressionZstd:
		m = stored * zstdMaxRatio
	case CompressionLZ4:
		m = stored*lz4MaxRatio + lz4RatioSlack
	}
	return min(m, MaxBlockSize)
}

// compressInto appends the compressed form of payload to dst.
func (e *Encoder) compressInto(dst, payload []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressionNone:
		return append(dst, payload...), nil
	case CompressionZstd:
		if e.zstd == nil {
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderLevel(e.zstdLevel),
				zstd.WithEncoderCRC(true),
			)
			if err != nil {
				return dst, fmt.Errorf("s3seg: creating zstd encoder: %w", err)
			}
			e.zstd = enc
		}
		return e.zstd.EncodeAll(payload, dst), nil
	case CompressionLZ4:
		bound := lz4.CompressBlockBound(len(payload))
		start := len(dst)
		dst = slices.Grow(dst, bound)
		n, err := e.lz4.CompressBlock(payload, dst[start:start+bound])
		if err != nil {
			return dst, fmt.Errorf("s3seg: lz4 compress: %w", err)
		}
		if n == 0 {
			// Cannot happen with a CompressBlockBound-sized destination.
			return dst, fmt.Errorf("s3seg: lz4 compress: incompressible result with a bound-sized buffer")
		}
		return dst[:start+n], nil
	default:
		return dst, fmt.Errorf("%w: %d", ErrUnknownCompression, uint8(c))
	}
}

// decompress returns the uncompressed payload of a stored block whose entry
// has already been validated. The result never aliases block. Any failure,
// including a panic inside a third-party codec, is reported as ErrCorrupt.
func decompress(block []byte, e IndexEntry) (out []byte, err error) {
	if e.UncompressedSize > maxUncompressedFor(e.Compression, int64(len(block))) {
		return nil, corruptf("uncompressed size %d impossible for %d stored %s bytes", e.UncompressedSize, len(block), e.Compression)
	}
	size := int(e.UncompressedSize)
	switch e.Compression {
	case CompressionNone:
		if len(block) != size {
			return nil, corruptf("uncompressed block is %d bytes, index entry says %d", len(block), size)
		}
		return slices.Clone(block), nil
	case CompressionZstd:
		defer recoverCodec("zstd", &err)
		// Reject a frame whose declared size disagrees with the index entry
		// before allocating anything.
		var h zstd.Header
		if herr := h.Decode(block); herr != nil {
			return nil, corruptf("zstd frame header: %v", herr)
		}
		if h.Skippable || h.DictionaryID != 0 || (h.HasFCS && h.FrameContentSize != uint64(size)) {
			return nil, corruptf("zstd frame header (skippable %v, dictionary %d, content size %d) does not match a %d-byte block",
				h.Skippable, h.DictionaryID, h.FrameContentSize, size)
		}
		dec, derr := zstdDecoder().DecodeAll(block, make([]byte, 0, size))
		if derr != nil {
			return nil, corruptf("zstd: %v", derr)
		}
		if len(dec) != size {
			return nil, corruptf("zstd block decoded to %d bytes, index entry says %d", len(dec), size)
		}
		return dec, nil
	case CompressionLZ4:
		defer recoverCodec("lz4", &err)
		dec := make([]byte, size)
		n, derr := lz4.UncompressBlock(block, dec)
		if derr != nil {
			return nil, corruptf("lz4: %v", derr)
		}
		if n != size {
			return nil, corruptf("lz4 block decoded to %d bytes, index entry says %d", n, size)
		}
		return dec, nil
	default:
		return nil, corruptf("unknown compression %d", uint8(e.Compression))
	}
}

// recoverCodec turns a panic inside a third-party decompressor (fed bytes
// that passed our CRC, so only a deliberately crafted object could trigger
// one) into ErrCorrupt instead of crashing the agent.
func recoverCodec(name string, err *error) {
	if r := recover(); r != nil {
		*err = corruptf("%s decoder panicked: %v", name, r)
	}
}
