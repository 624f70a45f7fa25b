package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

const hourMs = int64(3600_000)

// trimFixture is a topic "r" with one partition holding two committed
// segments, [0,1] and [2,3], each 10 bytes, committed (and with record
// timestamps) at t0 and t0+1h; the cluster clock is at t0+3h.
func trimFixture(t *testing.T, cfg TopicConfig) (*harness, uint64, int64) {
	t.Helper()
	h := newHarness(t)
	const t0 = 100 * hourMs
	h.mustOK(&ClockTick{Time: t0})
	id := h.mustOK(&CreateTopic{Name: "r", Partitions: 1, Leaders: []string{"n1"}, Config: cfg}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c", "d"))
	for i, key := range []string{"o1", "o2"} {
		at := t0 + int64(i)*hourMs
		h.mustOK(&CommitSegment{Node: "n1", ObjectKey: key, Timestamp: at, Entries: []CommitEntry{{TopicID: id, Partition: 0, LeaderEpoch: 1,
			Ref: SegmentRef{BaseOffset: int64(2 * i), LastOffset: int64(2*i + 1), RecordCount: 2, ByteLength: 10, MinTimestamp: at, MaxTimestamp: at}}}})
	}
	now := t0 + 3*hourMs
	h.mustOK(&ClockTick{Time: now})
	return h, id, now
}

func (h *harness) wantRefused(c *TrimPartition) {
	h.t.Helper()
	if err := h.apply(c).Err(); !errors.Is(err, ErrRetentionChanged) {
		h.t.Fatalf("trim %+v after the retention was raised: %v, want ErrRetentionChanged", c, err)
	}
}

func (h *harness) wantUntrimmed(id uint64) {
	h.t.Helper()
	p, _ := h.f.Partition(id, 0)
	if p.LowWatermark != 0 || p.Segments != 2 || len(h.f.PendingDeletes()) != 0 {
		h.t.Fatalf("segments the topic's current retention keeps were trimmed: %+v, pending deletes %v", p, h.f.PendingDeletes())
	}
}

// The janitor computes a trim point under the topic's config, then an
// operator raises retention.ms and the alter is applied before the trim:
// the trim must not delete what the new config keeps.
func TestTrimFencedByRetentionMsRaisedBeforeApply(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionMs: hourMs})
	// Under retention.ms=1h at now, both segments expired: Before = 4.
	trim := &TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now}
	h.mustOK(&AlterTopicConfig{Topic: "r", Set: []ConfigEntry{{Key: ConfigRetentionMs, Value: "604800000"}}})
	h.wantRefused(trim)
	h.wantUntrimmed(id)
}

// A fenced trim still applies when the config it was computed under is
// the current one, or when the alter only lowered retention.
func TestTrimAppliesUnderCurrentOrLoweredRetention(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionMs: 2*hourMs + 1})
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 2, Timestamp: now})
	h.mustOK(&AlterTopicConfig{Topic: "r", Set: []ConfigEntry{{Key: ConfigRetentionMs, Value: "1"}}})
	// Computed under 1 ms (both segments expired) at now.
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now})
	if p, _ := h.f.Partition(id, 0); p.LowWatermark != 4 || p.Segments != 0 {
		t.Fatalf("after trims: %+v", p)
	}
}

// A trim point the topic's retention does not expire at the command's
// time is refused, and the command's time counts only up to the cluster
// clock: a proposer cannot expire segments at a time the log has not
// reached.
func TestTrimFenceUsesCommandTimeCappedByClock(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionMs: 2*hourMs + 1})
	// At now only the first segment (committed 3h ago) is past 2h.
	h.wantRefused(&TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now})
	h.wantRefused(&TrimPartition{TopicID: id, Partition: 0, Before: 2, Timestamp: now - hourMs})
	h.wantRefused(&TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now + 10*hourMs})
	h.wantUntrimmed(id)
	h.mustOK(&ClockTick{Time: now + hourMs})
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now + 10*hourMs})
}

// Version 1 entries (written before the fence) decode as Unfenced and
// apply exactly as they did: replaying an old log must reproduce the
// state the replicas that applied it then have.
func TestTrimVersion1AppliesUnfencedAsBefore(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionMs: hourMs})
	// The version-1 layout: type, version 1, topic, partition, before, timestamp.
	e := enc{}
	e.u8(uint8(CmdTrimPartition))
	e.u8(1)
	e.uv(id)
	e.iv(0)
	e.iv(4)
	e.iv(now)
	if got := Encode(&TrimPartition{TopicID: id, Before: 4, Timestamp: now, Unfenced: true}); !bytes.Equal(got, e.b) {
		t.Fatalf("unfenced encoding %x, want the version-1 layout %x", got, e.b)
	}
	if got := Encode(&TrimPartition{TopicID: id, Before: 4, Timestamp: now}); got[1] != 2 || !bytes.Equal(got[2:], e.b[2:]) {
		t.Fatalf("fenced encoding %x: want version 2 with the same fields", got)
	}
	c, err := Decode(e.b)
	if err != nil || !c.(*TrimPartition).Unfenced {
		t.Fatalf("version 1 decoded to %+v, %v", c, err)
	}
	h.mustOK(&AlterTopicConfig{Topic: "r", Set: []ConfigEntry{{Key: ConfigRetentionMs, Value: "604800000"}}})
	h.idx++
	if err := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: e.b}).(*Result).Err(); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.f.Partition(id, 0); p.LowWatermark != 4 {
		t.Fatalf("version-1 trim not applied as before: %+v", p)
	}
}

// The same for retention.bytes: under 10 bytes the first segment goes;
// raised to 100 bytes, nothing may go.
func TestTrimFencedByRetentionBytesRaisedBeforeApply(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionBytes: 10})
	trim := &TrimPartition{TopicID: id, Partition: 0, Before: 2, Timestamp: now}
	h.mustOK(&AlterTopicConfig{Topic: "r", Set: []ConfigEntry{{Key: ConfigRetentionBytes, Value: "100"}}})
	h.wantRefused(trim)
	h.wantUntrimmed(id)
}

// Removing retention altogether (-1) between computing and applying a
// trim keeps everything.
func TestTrimFencedByRetentionRemovedBeforeApply(t *testing.T) {
	h, id, now := trimFixture(t, TopicConfig{RetentionMs: hourMs, RetentionBytes: 10})
	trim := &TrimPartition{TopicID: id, Partition: 0, Before: 4, Timestamp: now}
	h.mustOK(&AlterTopicConfig{Topic: "r", Set: []ConfigEntry{{Key: ConfigRetentionMs, Value: "-1"}, {Key: ConfigRetentionBytes, Value: "-1"}}})
	h.wantRefused(trim)
	h.wantUntrimmed(id)
}

func TestRetentionPoint(t *testing.T) {
	segs := []SegmentRef{
		{BaseOffset: 0, LastOffset: 9, MaxTimestamp: 100, ByteLength: 10},
		{BaseOffset: 10, LastOffset: 19, MaxTimestamp: 200, ByteLength: 10},
		{BaseOffset: 20, LastOffset: 29, MaxTimestamp: 300, ByteLength: 10},
	}
	cases := []struct {
		name string
		cfg  TopicConfig
		now  int64
		want int64
	}{
		{"no retention", TopicConfig{}, 1000, -1},
		{"nothing old enough", TopicConfig{RetentionMs: 1000}, 1000, -1},
		{"first expired", TopicConfig{RetentionMs: 850}, 1000, 10},
		{"two expired", TopicConfig{RetentionMs: 750}, 1000, 20},
		{"all expired: low watermark = flushed", TopicConfig{RetentionMs: 10}, 1000, 30},
		{"size keeps at least retention bytes", TopicConfig{RetentionBytes: 15}, 0, 10},
		{"size exact", TopicConfig{RetentionBytes: 10}, 0, 20},
		{"size large enough", TopicConfig{RetentionBytes: 30}, 0, -1},
		{"max of both rules", TopicConfig{RetentionMs: 850, RetentionBytes: 10}, 1000, 20},
	}
	for _, c := range cases {
		if got := RetentionPoint(segs, 30, c.cfg, c.now); got != c.want {
			t.Errorf("%s: got %d want %d", c.name, got, c.want)
		}
	}
	// Old records committed recently: kept until the commit is old too. (The
	// segments above have no commit time, 0: the records' age decides.)
	recent := append([]SegmentRef{}, segs...)
	recent[0].CommittedAt = 900
	if got := RetentionPoint(recent, 30, TopicConfig{RetentionMs: 500}, 1000); got != -1 {
		t.Errorf("old records committed at 900: trimmed to %d at 1000 with retention 500", got)
	}
	if got := RetentionPoint(recent, 30, TopicConfig{RetentionMs: 500}, 1401); got != 30 {
		t.Errorf("old records committed at 900: got %d at 1401 want 30", got)
	}
	if got := RetentionPoint(nil, 0, TopicConfig{RetentionMs: 1}, 1000); got != -1 {
		t.Errorf("no segments: %d", got)
	}
}
