package partition

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// janitor returns a janitor over meta on an agent that leads (its barrier
// applied) or not.
func (e *env) janitor(meta State, leader bool) *Janitor {
	d := e.deps()
	d.FSM = meta
	d.Node = &testNode{e: e, leader: leader, level: fsm.FeatureLevel}
	return newJanitor(e.cfg, d)
}

// tick applies a leader clock tick (unix ms) through the proposer.
func (e *env) tick(ms int64) {
	e.t.Helper()
	if _, err := e.prop.Propose(context.Background(), fsm.Encode(&fsm.ClockTick{Time: ms})); err != nil {
		e.t.Fatal(err)
	}
}

// runJanitor applies a clock tick to clockMs (none when 0) and runs one
// pass of j.
func (e *env) runJanitor(j *Janitor, clockMs int64) {
	e.t.Helper()
	if clockMs != 0 {
		e.tick(clockMs)
	}
	if err := j.RunOnce(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// flushAll flushes everything buffered and fails the test on error.
func (e *env) flushAll() {
	e.t.Helper()
	if _, err := e.flush.FlushOnce(context.Background(), true); err != nil {
		e.t.Fatal(err)
	}
}

// wantRecords fails the test unless topic's partition part holds n records.
func (e *env) wantRecords(topic string, part int32, n int) {
	e.t.Helper()
	if got := e.readAll(topic, part); len(got) != n {
		e.t.Fatalf("read %v, want %d records", got, n)
	}
}

func TestJanitorAppliesRetentionThenDeletesObjects(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	if _, err := e.admin.CreateTopic(ctx, "r", 1, fsm.TopicConfig{RetentionMs: 1000}); err != nil {
		t.Fatal(err)
	}
	e.topic("keep", 1)
	// Three segments of "r" with record timestamps 1000, 2000, 3000, each
	// committed at its records' time.
	var commitAt int64
	e.flush = newFlusher(e.cfg, Deps{FSM: e.fsm, Store: e.store, Node: e.node, Segments: e.segs,
		Clock: func() time.Time { return time.UnixMilli(commitAt) }})
	for i, ts := range []int64{1000, 2000, 3000} {
		commitAt = ts
		if _, err := e.prod.Produce(ctx, "r", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Timestamp: ts, Value: []byte{byte(i)}}}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.produce("keep", 0, "k") // shares the first object with "r"
		}
		e.flushAll()
	}
	e.tick(3500)
	j := e.janitor(e.fsm, true)
	e.runJanitor(j, 0)
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
	// Not a leader whose barrier applied the log: nothing happens.
	e.tick(100000)
	idle := e.janitor(e.fsm, false)
	if err := idle.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 2 {
		t.Fatal("a non-leader applied retention")
	}
}

// An agent whose wall clock is hours behind stamps the records it receives
// (and the commit it proposes) hours in the past. Retention must not trim
// them right after their commit: a segment expires by time only once its
// commit, in cluster time, is older than the retention too.
func TestRetentionKeepsRecordsStampedByASkewedAgent(t *testing.T) {
	const hour = int64(3600_000)
	now := 10 * 24 * hour
	e := newEnv(t, ProducerConfig{})
	e.clock = func() time.Time { return time.UnixMilli(now - 5*hour) }
	e.build()
	ctx := context.Background()
	tp, err := e.admin.CreateTopic(ctx, "r", 1, fsm.TopicConfig{RetentionMs: hour})
	if err != nil {
		t.Fatal(err)
	}
	e.tick(now)
	e.produce("r", 0, "a", "b")
	e.flushAll()
	j := e.janitor(e.fsm, true)
	e.runJanitor(j, now+1000)
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 0 || p.Segments != 1 {
		t.Fatalf("retention trimmed records committed one second ago (stamped 5h back by a skewed agent): %+v", p)
	}
	e.wantRecords("r", 0, 2)
	// Once the commit itself is older than the retention, they expire.
	e.runJanitor(j, now+hour+1)
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 2 {
		t.Fatalf("retention did not trim after the retention had passed since the commit: %+v", p)
	}
}

func TestJanitorDeletesOrphansOnlyAfterCommitBy(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	e.produce("t", 0, "a")
	e.flushAll() // obj-1, committed
	e.tick(1000)
	// An upload whose commit never happened, to be committed by 5000; and
	// an object from before keys carried a commit-by time.
	if _, _, err := e.segs.WriteSegment(ctx, []SegmentPart{{TopicID: 1, Partition: 0, Records: []fsm.FetchedRecord{{Offset: 0}}}}, 5000); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.segs.WriteSegment(ctx, []SegmentPart{{TopicID: 1, Partition: 0, Records: []fsm.FetchedRecord{{Offset: 0}}}}, 0); err != nil {
		t.Fatal(err)
	}
	// The store's modification times say "hours old": they do not count.
	e.segs.modified["obj-2"] = time.Now().Add(-48 * time.Hour)
	j := e.janitor(e.fsm, true)
	for _, clock := range []int64{1000, 5000} {
		e.runJanitor(j, clock)
		if _, ok := e.segs.objects["obj-2"]; !ok {
			t.Fatalf("orphan deleted at cluster clock %d, before its commit-by time had passed", clock)
		}
	}
	e.runJanitor(j, 5001)
	if _, ok := e.segs.objects["obj-2"]; ok {
		t.Fatal("orphan kept after its commit-by time")
	}
	if _, ok := e.segs.objects["obj-1"]; !ok {
		t.Fatal("committed object deleted as an orphan")
	}
	if _, ok := e.segs.objects["obj-3"]; !ok {
		t.Fatal("an object without a commit-by time was deleted")
	}
}

func TestOrphanDeletable(t *testing.T) {
	cases := []struct {
		name       string
		commitBy   int64
		clock      int64
		referenced bool
		want       bool
	}{
		{"past commit-by, unreferenced", 100, 101, false, true},
		{"at commit-by", 100, 100, false, false},
		{"before commit-by", 100, 50, false, false},
		{"referenced", 100, 1000, true, false},
		{"no commit-by in the key", 0, 1000, false, false},
	}
	for _, c := range cases {
		if got := OrphanDeletable(ObjectInfo{Key: "k", CommitBy: c.commitBy}, c.clock, c.referenced); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

// beforeTrimProposer runs hook just before the first TrimPartition is
// applied: the window between the janitor computing a trim point under a
// topic's config and the trim's apply.
type beforeTrimProposer struct {
	Proposer
	hook func()
}

func (p *beforeTrimProposer) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if c, err := fsm.Decode(cmd); err == nil && c.Type() == fsm.CmdTrimPartition && p.hook != nil {
		h := p.hook
		p.hook = nil
		h()
	}
	return p.Proposer.Propose(ctx, cmd)
}

// An operator raises retention.ms while a janitor round is under way: the
// alter is acknowledged before the trim computed under the old value
// applies, so that trim must not delete anything the new value keeps.
func TestJanitorTrimComputedBeforeRetentionRaisedDeletesNothing(t *testing.T) {
	const hour = int64(3600_000)
	now := 10 * 24 * hour
	e := newEnv(t, ProducerConfig{})
	e.clock = func() time.Time { return time.UnixMilli(now) }
	e.build()
	ctx := context.Background()
	tp, err := e.admin.CreateTopic(ctx, "r", 1, fsm.TopicConfig{RetentionMs: hour})
	if err != nil {
		t.Fatal(err)
	}
	e.tick(now)
	e.produce("r", 0, "a", "b")
	e.flushAll()
	j := e.janitor(e.fsm, true)
	j.proposer = &beforeTrimProposer{Proposer: j.proposer, hook: func() {
		if _, err := e.admin.AlterTopicConfig(ctx, "r", map[string]string{fsm.ConfigRetentionMs: "604800000"}); err != nil {
			t.Error(err)
		}
	}}
	e.runJanitor(j, now+2*hour)
	if got, _ := e.fsm.Topic("r"); got.Config.RetentionMs != 7*24*hour {
		t.Fatalf("alter not applied: %+v", got.Config)
	}
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 0 || p.Segments != 1 {
		t.Fatalf("a trim computed under retention.ms=1h applied after retention.ms was raised to 7d: %+v", p)
	}
	if len(e.segs.objects) != 1 {
		t.Fatalf("objects = %d, want the one segment object kept", len(e.segs.objects))
	}
	e.wantRecords("r", 0, 2)
	// The next round computes under 7d: nothing expires until 7d after the commit.
	e.runJanitor(j, now+3*hour)
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 0 {
		t.Fatalf("trimmed under the new retention too early: %+v", p)
	}
	e.runJanitor(j, now+7*24*hour+1)
	if p, _ := e.fsm.Partition(tp.ID, 0); p.LowWatermark != 2 {
		t.Fatalf("not trimmed once the new retention passed: %+v", p)
	}
}
