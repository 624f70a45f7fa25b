package s3seg_test

import (
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

// benchParts is one flush: 64 partitions x 1000 records with 100-byte
// JSON-like values and short keys.
func benchParts(c s3seg.Compression) []s3seg.PartitionBatch {
	parts := make([]s3seg.PartitionBatch, 64)
	for p := range parts {
		parts[p] = batch(uint64(p)+1, fmt.Sprintf("topic-%d", p%8), uint64(p%8)+1, int32(p/8), c, int64(p)*1_000_000, 1000, 100)
	}
	return parts
}

func uncompressedSize(f s3seg.Footer) int64 {
	var n int64
	for _, e := range f.Entries {
		n += e.UncompressedSize
	}
	return n
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range allCompressions {
		b.Run(c.String(), func(b *testing.B) {
			parts := benchParts(c)
			enc := s3seg.NewEncoder()
			obj, f, err := enc.Encode(parts)
			if err != nil {
				b.Fatal(err)
			}
			raw := uncompressedSize(f)
			b.SetBytes(raw) // MB/s of uncompressed block payload
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := enc.Encode(parts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(raw)/float64(len(obj)), "ratio")
		})
	}
}

func BenchmarkEncodeZstdFastest(b *testing.B) {
	parts := benchParts(s3seg.CompressionZstd)
	enc := s3seg.NewEncoder(s3seg.WithZstdLevel(1))
	obj, f, err := enc.Encode(parts)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(uncompressedSize(f))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := enc.Encode(parts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(uncompressedSize(f))/float64(len(obj)), "ratio")
}

func BenchmarkDecodeBlock(b *testing.B) {
	for _, c := range allCompressions {
		b.Run(c.String(), func(b *testing.B) {
			obj, f, err := s3seg.NewEncoder().Encode(benchParts(c))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(uncompressedSize(f)) // all 64 blocks per iteration
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, e := range f.Entries {
					if _, err := s3seg.DecodeBlock(block(obj, e), e); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkDecodeFooter(b *testing.B) {
	obj, _, err := s3seg.NewEncoder().Encode(benchParts(s3seg.CompressionLZ4))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s3seg.DecodeFooter(obj); err != nil {
			b.Fatal(err)
		}
	}
}
