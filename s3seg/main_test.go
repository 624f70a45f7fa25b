package s3seg_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

// rng is a tiny deterministic generator (xorshift) so test data and the
// golden file do not depend on math/rand's algorithm.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

func (r *rng) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.next())
	}
	return b
}

// text returns n bytes of compressible JSON-like text.
func (r *rng) text(n int) []byte {
	words := []string{`{"user":`, `"id":`, `"event":"click"`, `"page":"/home"`, `,`, `}`, `"ts":`, `"amount":`, `"EUR"`, ` `}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.next()%3 == 0 {
			b = fmt.Appendf(b, "%d", r.next()%100000)
		} else {
			b = append(b, words[r.next()%uint64(len(words))]...)
		}
	}
	return b[:n]
}

// batch returns a batch of n records with valueSize-byte text values.
func batch(seed uint64, topic string, topicID uint64, partition int32, c s3seg.Compression, base int64, n, valueSize int) s3seg.PartitionBatch {
	r := rng(seed*0x9E3779B97F4A7C15 + 1)
	b := s3seg.PartitionBatch{Topic: topic, TopicID: topicID, Partition: partition, Compression: c}
	ts := int64(1_700_000_000_000) + int64(seed)*1000
	for i := range n {
		ts += int64(r.next() % 5)
		rec := s3seg.Record{
			Offset:    base + int64(i),
			Timestamp: ts,
			Key:       fmt.Appendf(nil, "user-%d", r.next()%1000),
			Value:     r.text(valueSize),
		}
		if i%10 == 0 {
			rec.Headers = []s3seg.Header{{Key: "trace", Value: r.bytes(8)}}
		}
		b.Records = append(b.Records, rec)
	}
	return b
}

func mustEncode(t testing.TB, parts ...s3seg.PartitionBatch) ([]byte, s3seg.Footer) {
	t.Helper()
	obj, f, err := s3seg.NewEncoder().Encode(parts)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return obj, f
}

func block(obj []byte, e s3seg.IndexEntry) []byte { return obj[e.Offset : e.Offset+e.Length] }

var bg = context.Background()
