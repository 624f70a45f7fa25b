package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestCommitOffsetsValidatesAllOrNothing(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c"))

	h.mustOK(&CommitOffsets{Group: "g", Timestamp: 5, Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 2, Metadata: "m"}}})
	// Past the high watermark (3) in one entry: nothing of the command applies.
	r := h.apply(&CommitOffsets{Group: "g", Timestamp: 6, Offsets: []OffsetCommit{
		{TopicID: id, Partition: 0, Offset: 3}, {TopicID: id, Partition: 1, Offset: 1}}})
	if !errors.Is(r.Err(), ErrInvalidCommand) {
		t.Fatalf("commit past high watermark: %v", r.Err())
	}
	offs, ok := h.f.GroupOffsets("g")
	if !ok || len(offs) != 1 || offs[PartitionKey{id, 0}] != (GroupOffset{Offset: 2, Metadata: "m", CommittedAt: 5}) {
		t.Fatalf("offsets after rejected commit = %+v", offs)
	}
	for name, c := range map[string]*CommitOffsets{
		"negative":      {Group: "g", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: -1}}},
		"bad partition": {Group: "g", Offsets: []OffsetCommit{{TopicID: id, Partition: 5, Offset: 0}}},
		"bad topic":     {Group: "g", Offsets: []OffsetCommit{{TopicID: 999, Partition: 0, Offset: 0}}},
		"empty group":   {Group: "", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 0}}},
		"slash":         {Group: "a/b", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 0}}},
		"invalid utf-8": {Group: "g\xff", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 0}}},
		"no offsets":    {Group: "g"},
	} {
		if r := h.apply(c); r.Err() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Committing exactly the high watermark is allowed (consumed everything).
	h.mustOK(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 3}}})
	if got := h.f.GroupNames(); !reflect.DeepEqual(got, []string{"g"}) {
		t.Fatalf("groups = %v", got)
	}
	h.mustOK(&DeleteGroup{Group: "g"})
	if r := h.apply(&DeleteGroup{Group: "g"}); !errors.Is(r.Err(), ErrGroupNotFound) {
		t.Fatalf("second delete: %v", r.Err())
	}
}

func TestDeleteTopicDropsGroupOffsetsAndSequences(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	keep := h.mustOK(&CreateTopic{Name: "keep", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 1}).ProducerID
	b := appendCmd(id, 0, 1, "a")
	b.ProducerID = pid
	h.mustOK(b)
	h.mustOK(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 1}, {TopicID: keep, Partition: 0, Offset: 0}}})
	h.mustOK(&CommitOffsets{Group: "only-t", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 0}}})
	h.mustOK(&DeleteTopic{Name: "t"})
	offs, _ := h.f.GroupOffsets("g")
	if len(offs) != 1 {
		t.Fatalf("group g offsets after topic deletion = %+v", offs)
	}
	if _, ok := h.f.GroupOffsets("only-t"); ok {
		t.Fatal("a group left without offsets should disappear")
	}
	if len(h.f.state.Producers[pid].Recent) != 0 {
		t.Fatal("producer sequences of the deleted topic survive")
	}
}

func idemBatch(id uint64, part int32, pid uint64, epoch uint32, seq int64, vals ...string) *AppendBatch {
	b := appendCmd(id, part, 1, vals...)
	b.ProducerID, b.ProducerEpoch, b.BaseSequence = pid, epoch, seq
	return b
}

func TestIdempotentAppendDeduplicatesRetries(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	init := h.mustOK(&InitProducer{Timestamp: 10})
	pid := init.ProducerID
	if pid == 0 || init.ProducerEpoch != 0 {
		t.Fatalf("init = %+v", init)
	}
	r1 := h.mustOK(idemBatch(id, 0, pid, 0, 0, "a", "b"))
	r2 := h.mustOK(idemBatch(id, 0, pid, 0, 2, "c"))
	if r1.BaseOffset != 0 || r2.BaseOffset != 2 || r1.Duplicate || r2.Duplicate {
		t.Fatalf("first appends: %+v %+v", r1, r2)
	}
	// The retry of the first batch returns its original offsets, appends nothing.
	dup := h.mustOK(idemBatch(id, 0, pid, 0, 0, "a", "b"))
	if !dup.Duplicate || dup.BaseOffset != 0 || dup.Count != 2 {
		t.Fatalf("retry = %+v", dup)
	}
	if p, _ := h.f.Partition(id, 0); p.NextOffset != 3 {
		t.Fatalf("retry appended: next offset %d", p.NextOffset)
	}
	if n := len(h.sink.batches); n != 2 {
		t.Fatalf("sink holds %d batches, want 2", n)
	}
	// A gap in sequences is refused; other partitions have their own sequence.
	if r := h.apply(idemBatch(id, 0, pid, 0, 7, "x")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap: %v", r.Err())
	}
	h.mustOK(idemBatch(id, 1, pid, 0, 0, "p1"))
	// A duplicate is recognised even after the partition changed leader.
	h.mustOK(&AssignLeader{TopicID: id, Partition: 0, Leader: "n2", ExpectedEpoch: 1})
	if r := h.mustOK(idemBatch(id, 0, pid, 0, 2, "c")); !r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("retry after leader change = %+v", r)
	}
	// Only the last MaxProducerBatches batches are remembered.
	for i := int64(0); i < MaxProducerBatches+1; i++ {
		b := idemBatch(id, 0, pid, 0, 3+i, "v")
		b.LeaderEpoch = 2
		h.mustOK(b)
	}
	if r := h.apply(idemBatch(id, 0, pid, 0, 0, "a", "b")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("a retry older than the window must be refused, got %+v", r)
	}
}

func TestInitProducerFencesOldEpochAndExpires(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(idemBatch(id, 0, pid, 0, 0, "a"))
	bumped := h.mustOK(&InitProducer{ProducerID: pid, Timestamp: 20})
	if bumped.ProducerID != pid || bumped.ProducerEpoch != 1 {
		t.Fatalf("bump = %+v", bumped)
	}
	if r := h.apply(idemBatch(id, 0, pid, 0, 1, "zombie")); !errors.Is(r.Err(), ErrProducerFenced) {
		t.Fatalf("old epoch: %v", r.Err())
	}
	// The new epoch starts its sequences at 0.
	if r := h.mustOK(idemBatch(id, 0, pid, 1, 0, "b")); r.BaseOffset != 1 {
		t.Fatalf("new epoch append = %+v", r)
	}
	if r := h.apply(idemBatch(id, 0, 999999, 0, 0, "x")); !errors.Is(r.Err(), ErrUnknownProducer) {
		t.Fatalf("unknown producer: %v", r.Err())
	}
	if r := h.apply(&InitProducer{ProducerID: 999999, Timestamp: 30}); !errors.Is(r.Err(), ErrUnknownProducer) {
		t.Fatalf("bump unknown: %v", r.Err())
	}
	// Idle past the expiry by the cluster clock, the producer is dropped
	// when another one inits.
	h.mustOK(&ClockTick{Time: 42 + ProducerExpiryMs + 1}) // 42: the last append's timestamp
	h.mustOK(&InitProducer{Timestamp: 43})
	if _, ok := h.f.Producer(pid); ok {
		t.Fatal("idle producer not expired")
	}
}

func TestSnapshotCarriesGroupsAndProducers(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(idemBatch(id, 0, pid, 0, 0, "a", "b"))
	h.mustOK(idemBatch(id, 1, pid, 0, 0, "c"))
	h.mustOK(&CommitOffsets{Group: "g1", Timestamp: 4, Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 1, Metadata: "x"}}})
	h.mustOK(&CommitOffsets{Group: "g2", Offsets: []OffsetCommit{{TopicID: id, Partition: 1, Offset: 1}}})
	h2 := snapshotRoundTrip(t, h)
	if !reflect.DeepEqual(h.f.Image(), h2.f.Image()) {
		t.Fatalf("images differ after restore\n%+v\n%+v", h.f.Image(), h2.f.Image())
	}
	// The restored FSM still deduplicates.
	if r := h2.mustOK(idemBatch(id, 0, pid, 0, 0, "a", "b")); !r.Duplicate {
		t.Fatal("restored FSM lost producer state")
	}
}

func TestRestoreReadsVersion1Snapshots(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}})
	// A version-1 stream: old magic, state without the group/producer sections.
	st := encodeState(h.f.state, 2)
	v1 := st[:len(st)-2] // two empty counts (groups, producers) at the end
	if !bytes.Equal(st[len(st)-2:], []byte{0, 0}) {
		t.Fatalf("state encoding does not end with empty group/producer sections: %x", st[len(st)-2:])
	}
	if !bytes.Equal(v1, encodeState(h.f.state, 1)) {
		t.Fatal("version 1 encoding is not version 2 without its sections")
	}
	var buf bytes.Buffer
	buf.WriteString(snapshotMagicV1)
	_ = writeItem(&buf, v1)
	_ = writeItem(&buf, []byte{itemEnd})
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if _, ok := h2.f.Topic("t"); !ok {
		t.Fatal("v1 snapshot lost the topic")
	}
}

func TestImageSnapshotRestoresWithGaps(t *testing.T) {
	img := &Image{
		LastApplied: 1000,
		Topics:      []Topic{{ID: 10, Name: "t", Partitions: 1, Config: TopicConfig{Compression: "zstd"}}},
		Partitions: []Partition{{TopicID: 10, Index: 0, NextOffset: 20, FlushedOffset: 20, LowWatermark: 0,
			Segments: []SegmentRef{
				{ObjectKey: "segments/a.seg", BaseOffset: 0, LastOffset: 9, RecordCount: 10},
				{ObjectKey: "", BaseOffset: 10, LastOffset: 19}, // gap
			}}},
		Groups:    []GroupOffsetEntry{{Group: "g", TopicID: 10, Partition: 0, Offset: 15}},
		Producers: []ProducerEntry{{ID: 500, Epoch: 2, LastSeen: 9, Sequences: []ProducerSequence{{TopicID: 10, Partition: 0, BaseSeq: 0, Count: 10, BaseOffset: 0}}}},
	}
	var buf bytes.Buffer
	if err := WriteImageSnapshot(&buf, img); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.f.Image(), img) {
		t.Fatalf("image after restore differs:\n got %+v\nwant %+v", h.f.Image(), img)
	}
	if h.f.ObjectReferenced("") {
		t.Fatal("a gap counts as an object reference")
	}
	// New appends continue after the restored offsets; new topics get IDs
	// (Raft indexes) above the restored ones.
	h.idx = img.LastApplied
	if r := h.mustOK(appendCmd(10, 0, 0, "x")); r.BaseOffset != 20 {
		t.Fatalf("append after restore at %d", r.BaseOffset)
	}
	if r := h.mustOK(&CreateTopic{Name: "new", Partitions: 1}); r.TopicID <= 10 {
		t.Fatalf("new topic id %d", r.TopicID)
	}

	bad := map[string]func(*Image){
		"offsets out of order": func(i *Image) { i.Partitions[0].FlushedOffset = 30 },
		"segment hole":         func(i *Image) { i.Partitions[0].Segments[1].BaseOffset = 11 },
		"topic id above index": func(i *Image) { i.LastApplied = 5 },
		"missing partition":    func(i *Image) { i.Topics[0].Partitions = 2 },
		"duplicate topic":      func(i *Image) { i.Topics = append(i.Topics, i.Topics[0]) },
	}
	for name, mutate := range bad {
		c := cloneImage(img)
		mutate(c)
		if err := ValidateImage(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func cloneImage(img *Image) *Image {
	c := *img
	c.Topics = append([]Topic(nil), img.Topics...)
	c.Partitions = nil
	for _, p := range img.Partitions {
		c.Partitions = append(c.Partitions, *p.clone())
	}
	return &c
}
