package partition

import (
	"context"
	"errors"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// produceAt produces one record per timestamp to partition 0 of topic.
func (e *env) produceAt(topic string, stamps ...int64) {
	e.t.Helper()
	recs := make([]fsm.ProduceRecord, len(stamps))
	for i, ts := range stamps {
		recs[i] = fsm.ProduceRecord{Partition: 0, Record: fsm.Record{Timestamp: ts, Value: []byte("v")}}
	}
	if _, err := e.prod.Produce(context.Background(), topic, recs); err != nil {
		e.t.Fatal(err)
	}
}

// OffsetForTimestamp over two flushed blocks (the second with timestamps
// out of order) and unflushed records: the first offset at or after the
// time, blocks skipped by their index without being read.
func TestOffsetForTimestamp(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("ts", 2)
	e.produceAt("ts", 1000, 1100, 1200) // offsets 0-2, block A
	e.flushAll()
	e.produceAt("ts", 2000, 1500, 2500) // offsets 3-5, block B
	e.flushAll()
	e.produceAt("ts", 3000, 2800, 3500) // offsets 6-8, unflushed
	tp, _ := e.fsm.Topic("ts")
	if p, _ := e.fsm.Partition(tp.ID, 0); p.FlushedOffset != 6 || p.NextOffset != 9 {
		t.Fatalf("partition: %+v", p)
	}
	for _, tc := range []struct {
		ts         int64
		want       int64
		blockReads int
	}{
		{0, 0, 0},    // A's min timestamp answers without a read
		{1000, 0, 0}, // idem
		{1100, 1, 1}, // inside A
		{1201, 3, 0}, // B's min (1500) is later: its first offset, unread
		{1600, 3, 1}, // inside B: offset 3 (2000) comes before 5 (2500)
		{2100, 5, 1},
		{2600, 6, 0}, // both blocks skipped by their max; the store answers
		{2900, 6, 0},
		{3100, 8, 0},
		{3500, 8, 0},
		{3501, 9, 0}, // nothing that recent: the high watermark
	} {
		before := e.segs.reads
		got, err := e.fetch.OffsetForTimestamp(ctx, "ts", 0, tc.ts)
		if err != nil || got.Offset != tc.want || got.LowWatermark != 0 || got.HighWatermark != 9 {
			t.Errorf("ts %d: %+v %v, want offset %d", tc.ts, got, err, tc.want)
		}
		if reads := e.segs.reads - before; reads != tc.blockReads {
			t.Errorf("ts %d: %d block reads, want %d", tc.ts, reads, tc.blockReads)
		}
	}
	if got, err := e.fetch.OffsetForTimestamp(ctx, "ts", 1, 0); err != nil || got.Offset != 0 || got.HighWatermark != 0 {
		t.Errorf("empty partition: %+v %v", got, err)
	}
	for _, bad := range []struct {
		topic string
		part  int32
		ts    int64
		want  error
	}{
		{"ts", 0, -5, fsm.ErrInvalidArgument},
		{"ts", 2, 0, fsm.ErrPartitionInvalid},
		{"missing", 0, 0, fsm.ErrTopicNotFound},
	} {
		if _, err := e.fetch.OffsetForTimestamp(ctx, bad.topic, bad.part, bad.ts); !errors.Is(err, bad.want) {
			t.Errorf("%s/%d at %d: err %v, want %v", bad.topic, bad.part, bad.ts, err, bad.want)
		}
	}
}
