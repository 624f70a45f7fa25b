package partition

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

type fixedLeader bool

func (l fixedLeader) IsLeader() bool { return bool(l) }

func TestRetentionPoint(t *testing.T) {
	segs := []fsm.SegmentRef{
		{BaseOffset: 0, LastOffset: 9, MaxTimestamp: 100, ByteLength: 10},
		{BaseOffset: 10, LastOffset: 19, MaxTimestamp: 200, ByteLength: 10},
		{BaseOffset: 20, LastOffset: 29, MaxTimestamp: 300, ByteLength: 10},
	}
	cases := []struct {
		name string
		cfg  fsm.TopicConfig
		now  int64
		want int64
	}{
		{"no retention", fsm.TopicConfig{}, 1000, -1},
		{"nothing old enough", fsm.TopicConfig{RetentionMs: 1000}, 1000, -1},
		{"first expired", fsm.TopicConfig{RetentionMs: 850}, 1000, 10},
		{"two expired", fsm.TopicConfig{RetentionMs: 750}, 1000, 20},
		{"all expired: low watermark = flushed", fsm.TopicConfig{RetentionMs: 10}, 1000, 30},
		{"size keeps at least retention bytes", fsm.TopicConfig{RetentionBytes: 15}, 0, 10},
		{"size exact", fsm.TopicConfig{RetentionBytes: 10}, 0, 20},
		{"size large enough", fsm.TopicConfig{RetentionBytes: 30}, 0, -1},
		{"max of both rules", fsm.TopicConfig{RetentionMs: 850, RetentionBytes: 10}, 1000, 20},
	}
	for _, c := range cases {
		if got := RetentionPoint(segs, 30, c.cfg, c.now); got != c.want {
			t.Errorf("%s: got %d want %d", c.name, got, c.want)
		}
	}
	if got := RetentionPoint(nil, 0, fsm.TopicConfig{RetentionMs: 1}, 1000); got != -1 {
		t.Errorf("no segments: %d", got)
	}
}

func TestJanitorAppliesRetentionThenDeletesObjects(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	if _, err := e.admin.CreateTopic(ctx, "r", 1, fsm.TopicConfig{RetentionMs: 1000}); err != nil {
		t.Fatal(err)
	}
	e.topic("keep", 1)
	// Three segments of "r" with record timestamps 1000, 2000, 3000.
	for i, ts := range []int64{1000, 2000, 3000} {
		if _, err := e.prod.Produce(ctx, "r", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Timestamp: ts, Value: []byte{byte(i)}}}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.produce("keep", 0, "k") // shares the first object with "r"
		}
		if _, err := e.flush.FlushOnce(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	now := time.UnixMilli(3500)
	j := NewJanitor(JanitorConfig{Clock: func() time.Time { return now }, OrphanGrace: time.Hour}, e.fsm, e.segs, e.prop, fixedLeader(true), nil, nil)
	if err := j.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	tp, _ := e.fsm.Topic("r")
	p, _ := e.fsm.Partition(tp.ID, 0)
	if p.LowWatermark != 2 || p.Segments != 1 {
		t.Fatalf("after retention: %+v", p)
	}
	// obj-1 is still referenced by "keep"; obj-2 was released and deleted.
	if _, ok := e.segs.objects["obj-1"]; !ok {
		t.Fatal("shared object deleted while still referenced")
	}
	if _, ok := e.segs.objects["obj-2"]; ok {
		t.Fatal("released object not deleted")
	}
	if len(e.fsm.PendingDeletes()) != 0 {
		t.Fatalf("pending deletes not recorded as done: %v", e.fsm.PendingDeletes())
	}
	var oor *fsm.OffsetOutOfRangeError
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "r", Offset: 0}); !errors.As(err, &oor) || oor.LowWatermark != 2 {
		t.Fatalf("read below low watermark: %v", err)
	}
	res, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "r", Offset: 2})
	if err != nil || len(res.Records) != 1 || res.LowWatermark != 2 {
		t.Fatalf("read at low watermark: %+v %v", res, err)
	}
	// Not the leader: nothing happens.
	now = time.UnixMilli(100000)
	idle := NewJanitor(JanitorConfig{Clock: func() time.Time { return now }}, e.fsm, e.segs, e.prop, fixedLeader(false), nil, nil)
	if err := idle.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 2 {
		t.Fatal("a non-leader applied retention")
	}
}

func TestJanitorDeletesOrphansOnlyAfterGrace(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	e.produce("t", 0, "a")
	if _, err := e.flush.FlushOnce(ctx, true); err != nil { // obj-1, committed
		t.Fatal(err)
	}
	base := time.Now()
	e.segs.now = func() time.Time { return base }
	// An upload whose commit never happened.
	if _, _, err := e.segs.WriteSegment(ctx, []SegmentPart{{TopicID: 1, Partition: 0, Records: []fsm.FetchedRecord{{Offset: 0}}}}); err != nil {
		t.Fatal(err)
	}
	now := base.Add(30 * time.Minute)
	j := NewJanitor(JanitorConfig{Clock: func() time.Time { return now }, OrphanGrace: time.Hour}, e.fsm, e.segs, e.prop, fixedLeader(true), nil, nil)
	if err := j.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.segs.objects["obj-2"]; !ok {
		t.Fatal("orphan deleted inside the grace period")
	}
	now = base.Add(2 * time.Hour)
	if err := j.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.segs.objects["obj-2"]; ok {
		t.Fatal("orphan kept after the grace period")
	}
	if _, ok := e.segs.objects["obj-1"]; !ok {
		t.Fatal("committed object deleted as an orphan")
	}
}
