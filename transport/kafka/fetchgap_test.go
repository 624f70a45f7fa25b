package kafka

import (
	"context"
	"os/exec"
	"strings"
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

// librdkafka (kcat) reads to the end of a partition whose records up to
// the end are a restore gap: it continues after the empty batch and
// reports the end of the partition, where it asked for the gap's first
// offset forever before.
func TestKcatReadsPastATailGap(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed (Debian package kcat; .ci/run installs it)")
	}
	gap := &tailGapFetcher{gapEnd: 10}
	e := newEnv(t, func(c *Config) { gap.inner = c.Fetcher; c.Fetcher = gap })
	e.agent.addTopic("gap", 1)
	var recs []*kgo.Record
	for range gap.gapEnd {
		recs = append(recs, &kgo.Record{Topic: "gap", Value: []byte("lost")})
	}
	pr := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pr.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", e.addr, "-t", "gap", "-p", "0", "-o", "0", "-e").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Reached end of topic gap [0] at offset 10") {
		t.Fatalf("kcat: %v (asked up to offset %d)\n%s", err, gap.asked.Load(), out)
	}
	if strings.Contains(string(out), "lost") {
		t.Fatalf("kcat printed records of the gap:\n%s", out)
	}
}
