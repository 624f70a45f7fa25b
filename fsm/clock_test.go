package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestClockCommandsRoundTrip(t *testing.T) {
	cmds := []Command{
		&ClockTick{Time: 1_700_000_000_000},
		&CommitSegment{Node: "a", ObjectKey: "segments/x.seg", Timestamp: 5, CommitBy: 77, Entries: []CommitEntry{{TopicID: 7, Partition: 1, LeaderEpoch: 2, Ref: SegmentRef{BaseOffset: 3, LastOffset: 4, RecordCount: 2}}}},
		&InitProducer{ProducerID: 3, Timestamp: 9},
	}
	assertCodecRoundTrip(t, cmds)
	if v := Encode(&CommitSegment{ObjectKey: "k"})[1]; v != 1 {
		t.Fatalf("a commit without a commit-by time must stay payload version 1, got %d", v)
	}
	// A version-1 InitProducer (an old log entry) decodes with the old
	// expiry rule and encodes back to the same bytes.
	v1 := []byte{byte(CmdInitProducer), 1, 3, 18}
	c, err := Decode(v1)
	if err != nil || !c.(*InitProducer).ExpireByTimestamp || !bytes.Equal(Encode(c), v1) {
		t.Fatalf("v1 InitProducer: %#v %v", c, err)
	}
	// A v2 commit with a zero commit-by time is malformed.
	bad := Encode(&CommitSegment{ObjectKey: "k", CommitBy: 1})
	bad[len(bad)-2] = 0 // the CommitBy varint (1 -> 0); entries count follows
	if _, err := Decode(bad); !errors.Is(err, ErrDecode) {
		t.Fatalf("v2 commit with CommitBy 0: %v", err)
	}
}

func TestClockTickKeepsTheMaximum(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ tick, want int64 }{{1000, 1000}, {400, 1000}, {5000, 5000}, {4999, 5000}} {
		h.mustOK(&ClockTick{Time: tc.tick})
		if got := h.f.Clock(); got != tc.want {
			t.Fatalf("after tick %d the clock is %d, want %d", tc.tick, got, tc.want)
		}
	}
}

// TestCommitRefusedAfterItsCommitByTime: a commit that applies once the
// cluster clock passed the object's commit-by time changes nothing, so
// orphan GC, which deletes only objects whose commit-by time the clock has
// passed, never deletes an object a commit in the log can still reference.
func TestCommitRefusedAfterItsCommitByTime(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c"))
	h.mustOK(&ClockTick{Time: 10_000})

	late := commitCmd(id, 0, 1, 0, 0)
	late.CommitBy = 9_999
	r := h.apply(late)
	if !errors.Is(r.Err(), ErrUploadExpired) || r.Accepted[0] {
		t.Fatalf("late commit: %+v", r)
	}
	if p, _ := h.f.Partition(id, 0); p.FlushedOffset != 0 || p.Segments != 0 || h.f.ObjectReferenced("obj") {
		t.Fatalf("a refused commit changed the partition: %+v", p)
	}
	onTime := commitCmd(id, 0, 1, 0, 0)
	onTime.CommitBy = 10_000 // the clock has reached, not passed, it
	if r := h.mustOK(onTime); !r.Accepted[0] {
		t.Fatalf("on-time commit: %+v", r)
	}
	// Version 1 commits (old log entries) carry no bound.
	if r := h.mustOK(commitCmd(id, 0, 1, 1, 1)); !r.Accepted[0] {
		t.Fatalf("v1 commit: %+v", r)
	}
}

// TestProducerExpiryFollowsTheClusterClock: an agent whose clock is far
// ahead cannot expire producers by stamping its InitProducer with its own
// time; only the cluster clock counts, and a proposer clock behind it never
// makes a producer look idle early.
func TestProducerExpiryFollowsTheClusterClock(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(&ClockTick{Time: 1000})
	pid := h.mustOK(&InitProducer{Timestamp: 5}).ProducerID // proposer clock far behind
	h.mustOK(idemBatch(id, 0, pid, 0, 0, "a"))
	// A proposer whose clock jumped ahead by more than the expiry.
	h.mustOK(&InitProducer{Timestamp: 1000 + 2*ProducerExpiryMs})
	if _, ok := h.f.Producer(pid); !ok {
		t.Fatal("a proposer's clock jump expired a producer")
	}
	h.mustOK(&ClockTick{Time: 1000 + ProducerExpiryMs})
	h.mustOK(&InitProducer{})
	if _, ok := h.f.Producer(pid); !ok {
		t.Fatal("producer expired at exactly the expiry")
	}
	h.mustOK(&ClockTick{Time: 1001 + ProducerExpiryMs})
	h.mustOK(&InitProducer{})
	if _, ok := h.f.Producer(pid); ok {
		t.Fatal("producer idle past the expiry by the cluster clock not expired")
	}
}

func TestSnapshotCarriesTheClock(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}})
	h.mustOK(&ClockTick{Time: 123456})
	h2 := snapshotRoundTrip(t, h)
	if h2.f.Clock() != 123456 {
		t.Fatalf("restored clock = %d", h2.f.Clock())
	}
	h2.mustOK(&ClockTick{Time: 5})
	if h2.f.Clock() != 123456 {
		t.Fatal("the restored clock went backwards")
	}
}

// TestRestoreReadsVersion2Snapshots: a snapshot written before the cluster
// clock existed restores with the clock at 0 and everything else intact.
func TestRestoreReadsVersion2Snapshots(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}})
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: 1, Partition: 0, Offset: 0}}})
	var buf bytes.Buffer
	buf.WriteString(snapshotMagicV2)
	_ = writeItem(&buf, encodeState(h.f.state, 2))
	_ = writeItem(&buf, []byte{itemEnd})
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if _, ok := h2.f.Producer(pid); !ok || h2.f.Clock() != 0 {
		t.Fatalf("v2 snapshot: producer %v clock %d", ok, h2.f.Clock())
	}
	if _, ok := h2.f.GroupOffsets("g"); !ok {
		t.Fatal("v2 snapshot lost the group")
	}
}

// TestCommitTimeIsClusterTime: a commit proposed by an agent whose clock is
// hours behind records, as the segment's commit time, the cluster clock
// (retention ages a segment from it); one whose clock is ahead keeps its
// own, later, time.
func TestCommitTimeIsClusterTime(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b"))
	h.mustOK(&ClockTick{Time: 10 * 3600_000})
	behind := commitCmd(id, 0, 1, 0, 0)
	behind.Timestamp = 5 * 3600_000
	h.mustOK(behind)
	ahead := commitCmd(id, 0, 1, 1, 1)
	ahead.Timestamp = 11 * 3600_000
	h.mustOK(ahead)
	segs := h.f.Segments(id, 0)
	if len(segs) != 2 || segs[0].CommittedAt != 10*3600_000 || segs[1].CommittedAt != 11*3600_000 {
		t.Fatalf("commit times: %+v", segs)
	}
}

// TestImageCarriesTheClock: a checkpoint image holds the cluster clock and
// a state restored from it starts there.
func TestImageCarriesTheClock(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}})
	h.mustOK(&ClockTick{Time: 123456})
	img := h.f.Image()
	if img.Clock != 123456 {
		t.Fatalf("image clock = %d", img.Clock)
	}
	var buf bytes.Buffer
	if err := WriteImageSnapshot(&buf, img); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h2.f.Clock() != 123456 {
		t.Fatalf("restored clock = %d", h2.f.Clock())
	}
	img.Clock = -1
	if err := ValidateImage(img); err == nil {
		t.Fatal("an image with a negative clock validated")
	}
}

// TestNewestKnownTime: the latest command time the state holds (what caps
// the first tick of a clock at 0): segment commits, group commits and
// producers count, client-chosen record timestamps do not.
func TestNewestKnownTime(t *testing.T) {
	h := newHarness(t)
	if got := h.f.NewestKnownTime(); got != 0 {
		t.Fatalf("empty state: %d", got)
	}
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a"))
	c := commitCmd(id, 0, 1, 0, 0)
	c.Timestamp = 3000
	c.Entries[0].Ref.MaxTimestamp = 1 << 50 // a record stamped far ahead
	h.mustOK(c)
	if got := h.f.NewestKnownTime(); got != 3000 {
		t.Fatalf("after a commit at 3000: %d", got)
	}
	h.mustOK(&InitProducer{Timestamp: 4000})
	if got := h.f.NewestKnownTime(); got != 4000 {
		t.Fatalf("after a producer at 4000: %d", got)
	}
	h.mustOK(&CommitOffsets{Group: "g", Timestamp: 5000, Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 1}}})
	if got := h.f.NewestKnownTime(); got != 5000 {
		t.Fatalf("after a group commit at 5000: %d", got)
	}
}
