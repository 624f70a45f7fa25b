package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// TestKafkaIdempotentProducerSurvivesLocalEpochBump: a franz-go
// idempotent producer whose batch fails after it was written (delivery
// timeout while the broker is unreachable) bumps its epoch locally
// (KIP-360, no InitProducerId) and restarts every partition at sequence
// 0. The agent accepts the new epoch per partition, so the producer keeps
// producing (before, every batch got UNKNOWN_PRODUCER_ID: docs/jepsen.md
// finding 9), and every acknowledged record is stored exactly once (a
// failed one at most once).
func TestKafkaIdempotentProducerSurvivesLocalEpochBump(t *testing.T) {
	_, base, kaddr := kafkaAgent(t)
	seeds := []string{kaddr}
	const parts = 2
	createTopic(t, base, "kbump", parts)
	logs := &testkit.SyncBuffer{}
	link := &flakyLink{}
	p := kgoClient(t, seeds, kgo.Dialer(link.dial), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowIdempotentProduceCancellation(), kgo.RecordDeliveryTimeout(2*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
		kgo.WithLogger(kgo.BasicLogger(logs, kgo.LogLevelInfo, nil)))
	acked, failed := map[string]bool{}, map[string]bool{}
	next := 0
	round := func(timeout time.Duration) error {
		var recs []*kgo.Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &kgo.Record{Topic: "kbump", Partition: int32(next % parts), Value: []byte(strconv.Itoa(next))})
			next++
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var firstErr error
		for _, r := range p.ProduceSync(ctx, recs...) {
			if r.Err != nil {
				failed[string(r.Record.Value)] = true
				firstErr = errors.Join(firstErr, r.Err)
			} else {
				acked[string(r.Record.Value)] = true
			}
		}
		return firstErr
	}
	for i := 0; i < 5; i++ {
		if err := round(20 * time.Second); err != nil {
			t.Fatalf("before the fault: %v", err)
		}
	}
	// The broker becomes unreachable after requests went out: batches are
	// written, their answers lost, and they time out.
	link.down.Store(true)
	testkit.WaitFor(t, 30*time.Second, "a produce failing while the link is down", func() bool {
		return round(5*time.Second) != nil
	})
	link.down.Store(false)
	// The client reconnects (records may still time out meanwhile: each
	// failure bumps the epoch again), then every round is acknowledged.
	testkit.WaitFor(t, 30*time.Second, "a produce acknowledged after the fault", func() bool {
		return round(5*time.Second) == nil
	})
	for i := 0; i < 10; i++ {
		if err := round(20 * time.Second); err != nil {
			t.Fatalf("round %d after the fault: %v\nkgo log:\n%s", i, err, lastBytes(logs.String(), 3000))
		}
	}
	if !strings.Contains(logs.String(), "locally bumping idempotent producer epoch") {
		t.Fatalf("the producer never bumped its epoch locally (%d cuts); kgo log:\n%s", link.cuts.Load(), lastBytes(logs.String(), 3000))
	}
	stored := storedRecords(t, seeds, "kbump")
	seen := map[string]int{}
	for _, r := range pollN(t, seeds, "kbump", parts, int(stored)) {
		seen[string(r.Value)]++
	}
	for v := range acked {
		if seen[v] != 1 {
			t.Fatalf("acknowledged record %s stored %d times", v, seen[v])
		}
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("record %s (failed: %v) stored %d times", v, failed[v], n)
		}
	}
	t.Logf("%d acknowledged, %d failed, %d stored, %d cuts", len(acked), len(failed), stored, link.cuts.Load())
}

// storedRecords is the number of records in topic (the sum of its end
// offsets; nothing is trimmed here).
func storedRecords(t *testing.T, seeds []string, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(kgoClient(t, seeds)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		n += o.Offset
	})
	return n
}

// flakyLink dials connections to the broker; while down, a connection
// closes itself right after each write (the request reached the broker,
// its answer is lost) and new dials fail.
type flakyLink struct {
	down atomic.Bool
	cuts atomic.Int64
}

func (l *flakyLink) dial(ctx context.Context, network, host string) (net.Conn, error) {
	if l.down.Load() {
		return nil, errors.New("link down")
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &flakyConn{Conn: nc, l: l}, nil
}

type flakyConn struct {
	net.Conn
	l *flakyLink
}

func (c *flakyConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil && c.l.down.Load() {
		c.l.cuts.Add(1)
		_ = c.Conn.Close()
	}
	return n, err
}
