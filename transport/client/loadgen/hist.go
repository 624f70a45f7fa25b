package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in microseconds with HdrHistogram's bucket
// layout at three significant digits: values below 2,048 µs are counted
// exactly, larger ones in buckets whose width is at most 1/1,024 of their
// lower bound (0.1 %), so p99.9 of a million samples is as accurate as
// sorting them, at a fixed cost per sample and a few hundred KiB at most.
//
// A Histogram is not safe for concurrent use: each worker records into its
// own and the run merges them.
type Histogram struct {
	counts []int64 // by bucket index (bucketOf), grown on demand
	n      int64
	max    int64 // µs, exact
}

const (
	subBits  = 11
	subCount = 1 << subBits // values below subCount are their own bucket
	subHalf  = subCount / 2
)

// bucketOf is the bucket index of v (µs, ≥ 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits
	return subCount + (shift-1)*subHalf + int(v>>shift) - subHalf
}

// bucketHigh is the highest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := (i-subCount)/subHalf + 1
	top := int64((i-subCount)%subHalf + subHalf)
	return (top+1)<<shift - 1
}

// Record counts one latency (negative ones as 0).
func (h *Histogram) Record(d time.Duration) {
	v := max(d.Microseconds(), 0)
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.grow(i + 1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, v)
}

// grow makes room for n buckets, doubling the capacity when it must.
func (h *Histogram) grow(n int) {
	if n > cap(h.counts) {
		grown := make([]int64, len(h.counts), max(n, 2*cap(h.counts)))
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts = h.counts[:n]
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	if len(o.counts) > len(h.counts) {
		h.grow(len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Histogram) Count() int64 { return h.n }

// QuantileMs is the q-quantile (0 < q ≤ 1) in milliseconds: the highest
// value of the bucket holding the ⌈q·n⌉-th smallest sample (never above
// the maximum), as HdrHistogram reports it; 0 without samples.
func (h *Histogram) QuantileMs(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.n)-1e-9)), 1) // 0.999·1000 is 999, not 1000
	var seen int64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return float64(min(bucketHigh(i), h.max)) / 1000
		}
	}
	return float64(h.max) / 1000
}

// MaxMs is the largest sample in milliseconds.
func (h *Histogram) MaxMs() float64 { return float64(h.max) / 1000 }
