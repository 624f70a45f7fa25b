package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBucketsCoverEveryValueWithinATenthOfAPercent(t *testing.T) {
	for _, v := range []int64{0, 1, 2047, 2048, 2049, 4095, 4096, 123456, 1 << 30, 3_600_000_000} {
		i := bucketOf(v)
		if hi := bucketHigh(i); hi < v {
			t.Fatalf("value %d: bucket %d ends at %d", v, i, hi)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("value %d: the bucket before %d already ends at %d", v, i, bucketHigh(i-1))
		}
		low := bucketHigh(i-1) + 1
		if i == 0 {
			low = 0
		}
		if width := bucketHigh(i) - low + 1; v >= subCount && float64(width) > float64(low)/1024 {
			t.Fatalf("value %d: bucket [%d, %d] is wider than 0.1%%", v, low, bucketHigh(i))
		}
		if v < subCount && bucketHigh(i) != v {
			t.Fatalf("value %d below %d µs is not exact", v, subCount)
		}
	}
}

// exactQuantile is the ⌈q·n⌉-th smallest of sorted, in ms.
func exactQuantile(sorted []int64, q float64) float64 {
	rank := max(int(math.Ceil(q*float64(len(sorted))-1e-9)), 1)
	return float64(sorted[rank-1]) / 1000
}

func TestHistogramQuantilesMatchSortingAtP999(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	samples := make([]int64, 200_000)
	for i := range samples {
		// a long-tailed distribution: mostly 1–20 ms, a tail up to seconds
		v := int64(1000 + r.ExpFloat64()*4000)
		if r.IntN(500) == 0 {
			v += r.Int64N(3_000_000)
		}
		samples[i] = v
		h.Record(time.Duration(v) * time.Microsecond)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		want, got := exactQuantile(samples, q), h.QuantileMs(q)
		if got < want || got > want*(1+1.0/1024) {
			t.Errorf("q %.4f: histogram %.3f ms, sorted %.3f ms", q, got, want)
		}
	}
	if h.MaxMs() != float64(samples[len(samples)-1])/1000 || h.Count() != int64(len(samples)) {
		t.Fatalf("max %.3f count %d", h.MaxMs(), h.Count())
	}
}

func TestHistogramSmallSetsAreExact(t *testing.T) {
	var h Histogram
	if h.QuantileMs(0.99) != 0 || h.MaxMs() != 0 {
		t.Fatal("an empty histogram reports latencies")
	}
	for ms := 1; ms <= 10; ms++ {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	h.Record(-time.Millisecond) // a clock step back counts as 0
	// 11 samples: 0, 1, …, 10 ms; p50 is the 6th (5 ms), p99 and p99.9 the 11th
	for q, want := range map[float64]float64{0.5: 5, 0.99: 10, 0.999: 10, 0.01: 0} {
		if got := h.QuantileMs(q); math.Abs(got-want) > want/1024 {
			t.Errorf("q %.3f = %.3f ms, want %.0f", q, got, want)
		}
	}
	if h.MaxMs() != 10 {
		t.Fatalf("max %.3f", h.MaxMs())
	}
}

func TestHistogramMergeEqualsRecordingIntoOne(t *testing.T) {
	var a, b, all Histogram
	for i := 0; i < 5000; i++ {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		if a.QuantileMs(q) != all.QuantileMs(q) {
			t.Fatalf("q %.3f: merged %.3f, one %.3f", q, a.QuantileMs(q), all.QuantileMs(q))
		}
	}
	if a.Count() != all.Count() || a.MaxMs() != all.MaxMs() {
		t.Fatalf("merged count %d max %.3f; one %d %.3f", a.Count(), a.MaxMs(), all.Count(), all.MaxMs())
	}
}
