package kafka

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/fsm"
)

// tailGapFetcher answers every offset below gapEnd the way
// partition.Fetcher answers offsets a DR restore recorded as a gap with no
// records after it yet: no records, NextOffset past the gap. It records
// the highest offset asked for.
type tailGapFetcher struct {
	inner  Fetcher
	gapEnd int64
	asked  atomic.Int64
}

func (f *tailGapFetcher) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	for {
		cur := f.asked.Load()
		if req.Offset <= cur || f.asked.CompareAndSwap(cur, req.Offset) {
			break
		}
	}
	if req.Offset < f.gapEnd {
		return fsm.FetchResult{HighWatermark: f.gapEnd, NextOffset: f.gapEnd}, nil
	}
	return f.inner.Fetch(ctx, req)
}

// A consumer positioned in a gap that runs to the end of the log (offsets
// lost in a disaster, nothing produced since) moves past it, as Kafka
// consumers move past a batch emptied by compaction: the answer carries an
// empty record batch whose last offset is the gap's end.
func TestFetchMovesAConsumerPastATailGap(t *testing.T) {
	gap := &tailGapFetcher{gapEnd: 10}
	e := newEnv(t, func(c *Config) { gap.inner = c.Fetcher; c.Fetcher = gap })
	e.agent.addTopic("gap", 1)
	cl := e.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"gap": {0: kgo.NewOffset().At(0)}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for gap.asked.Load() < gap.gapEnd {
		if time.Now().After(deadline) {
			t.Fatalf("the consumer still fetches offset %d, inside the gap that ends at %d", gap.asked.Load(), gap.gapEnd)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if n := fs.NumRecords(); n != 0 {
			t.Fatalf("%d records from a gap", n)
		}
	}
}
