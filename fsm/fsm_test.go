package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"sort"
	"testing"

	"github.com/hashicorp/raft"
)

// memSink is an in-memory Sink with the same idempotence rule as the WAL
// store: a batch at or below the highest index seen is ignored.
type memSink struct {
	last    uint64
	batches []*AppendedBatch
	pinned  int
}

func (m *memSink) Materialize(bs []*AppendedBatch) error {
	if len(bs) == 0 || bs[0].Index <= m.last {
		return nil
	}
	m.last = bs[0].Index
	for _, b := range bs {
		c := *b
		c.Records = append([]byte(nil), b.Records...)
		m.batches = append(m.batches, &c)
	}
	return nil
}

type memBatchSnap struct {
	m  *memSink
	bs []*AppendedBatch
}

func (s *memBatchSnap) Each(fn func(*AppendedBatch) error) error {
	for _, b := range s.bs {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}
func (s *memBatchSnap) Release() { s.m.pinned-- }

func (m *memSink) SnapshotBatches(from map[PartitionKey]int64) (BatchSnapshot, error) {
	var out []*AppendedBatch
	for _, b := range m.batches {
		f, ok := from[PartitionKey{b.TopicID, b.Partition}]
		if ok && b.BaseOffset+int64(b.Count) > f {
			out = append(out, b)
		}
	}
	m.pinned++
	return &memBatchSnap{m: m, bs: out}, nil
}

type harness struct {
	t    *testing.T
	f    *FSM
	sink *memSink
	idx  uint64
}

func newHarness(t *testing.T) *harness {
	s := &memSink{}
	return &harness{t: t, f: New(s), sink: s}
}

func (h *harness) apply(c Command) *Result {
	h.t.Helper()
	h.idx++
	out := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: Encode(c)})
	r, ok := out.(*Result)
	if !ok {
		h.t.Fatalf("apply returned %T", out)
	}
	return r
}

func (h *harness) mustOK(c Command) *Result {
	h.t.Helper()
	r := h.apply(c)
	if err := r.Err(); err != nil {
		h.t.Fatalf("apply %s: %v", c.Type(), err)
	}
	return r
}

func recs(vals ...string) []Record {
	out := make([]Record, len(vals))
	for i, v := range vals {
		out[i] = Record{Timestamp: int64(1000 + i), Key: []byte("k" + v), Value: []byte(v)}
	}
	return out
}

func appendCmd(topicID uint64, part int32, epoch uint64, vals ...string) *AppendBatch {
	return &AppendBatch{TopicID: topicID, Partition: part, LeaderEpoch: epoch, Timestamp: 42,
		Count: int32(len(vals)), Records: AppendRecords(nil, recs(vals...))}
}

func TestCommandCodecRoundTrip(t *testing.T) {
	cmds := []Command{
		&CreateTopic{Name: "orders", Partitions: 3, Config: TopicConfig{RetentionMs: 10, RetentionBytes: 20, Compression: "lz4"}, Leaders: []string{"a", "b", "c"}, Timestamp: 99, Limits: ClusterLimits{MaxTopics: 10, MaxPartitions: 100}},
		&DeleteTopic{Name: "orders"},
		appendCmd(7, 2, 3, "x", "y"),
		&CommitSegment{Node: "a", ObjectKey: "segments/x.seg", Timestamp: 5, Entries: []CommitEntry{{TopicID: 7, Partition: 1, LeaderEpoch: 2, Ref: SegmentRef{ByteOffset: 1, ByteLength: 2, BaseOffset: 3, LastOffset: 4, RecordCount: 2, MinTimestamp: 5, MaxTimestamp: 6, Compression: 1, CRC: 0xdeadbeef, UncompressedSize: 9}}}},
		&AssignLeader{TopicID: 7, Partition: 1, Leader: "b", ExpectedEpoch: 4},
		&TrimPartition{TopicID: 7, Partition: 1, Before: 100, Timestamp: 9},
		&TrimPartition{TopicID: 7, Partition: 1, Before: 100, Timestamp: 9, Unfenced: true},
		&ObjectsDeleted{Keys: []string{"a", "b"}},
		&CommitOffsets{Group: "g", Timestamp: 3, Offsets: []OffsetCommit{{TopicID: 7, Partition: 1, Offset: 10, Metadata: "m"}, {TopicID: 7, Partition: 0, Offset: 0}}},
		&DeleteGroup{Group: "g"},
		&InitProducer{ProducerID: 12, Timestamp: 77},
		&InitProducer{ProducerID: 12, Timestamp: 77, Owner: "tenant-a"},
		&AppendBatch{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: AppendRecords(nil, recs("z")), ProducerID: 5, ProducerEpoch: 2, BaseSequence: 40},
		&AppendBatch{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: AppendRecords(nil, recs("z")), ProducerID: 5, ProducerEpoch: 2, BaseSequence: 40, ProducerOwner: "tenant-a"},
		&AppendBatch{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: AppendRecords(nil, recs("z")), MaxUnflushed: 1000},
		&AppendBatch{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: AppendRecords(nil, recs("z")), ProducerID: 5, BaseSequence: 1, MaxUnflushed: 9},
		&AppendBatch{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: AppendRecords(nil, recs("z")), ProducerID: 5, BaseSequence: 1, ProducerOwner: "tenant-a", MaxUnflushed: 9},
	}
	assertCodecRoundTrip(t, cmds)
}

// assertCodecRoundTrip checks that every command decodes from its encoding
// back to an equal value.
func assertCodecRoundTrip(t *testing.T, cmds []Command) {
	t.Helper()
	for _, c := range cmds {
		got, err := Decode(Encode(c))
		if err != nil {
			t.Fatalf("%s: %v", c.Type(), err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: round trip mismatch\n got %#v\nwant %#v", c.Type(), got, c)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good := Encode(&CreateTopic{Name: "t", Partitions: 1})
	cases := map[string][]byte{
		"empty":          nil,
		"unknown type":   {200, 1},
		"future version": {byte(CmdCreateTopic), 9},
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: want ErrDecode, got %v", name, err)
		}
	}
}

func TestRecordsRoundTripNullVsEmptyKey(t *testing.T) {
	in := []Record{
		{Timestamp: 1, Key: nil, Value: []byte("a")},
		{Timestamp: -5, Key: []byte{}, Value: []byte{}},
		{Timestamp: 3, Key: []byte("k"), Value: []byte("v"), Headers: []Header{{"h1", []byte("x")}, {"h2", []byte{}}}},
	}
	out, err := DecodeRecords(AppendRecords(nil, in), len(in))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Key != nil || out[1].Key == nil || len(out[1].Key) != 0 {
		t.Fatalf("null/empty key not preserved: %#v %#v", out[0].Key, out[1].Key)
	}
	if !reflect.DeepEqual(out[2], in[2]) || out[1].Timestamp != -5 {
		t.Fatalf("mismatch: %#v", out)
	}
	if _, err := DecodeRecords(AppendRecords(nil, in), 4); !errors.Is(err, ErrDecode) {
		t.Fatalf("wrong count accepted: %v", err)
	}
}

func TestApplyCreateTopic(t *testing.T) {
	h := newHarness(t)
	r := h.mustOK(&CreateTopic{Name: "orders", Partitions: 2, Leaders: []string{"n1", "n2"}, Timestamp: 7})
	tp, ok := h.f.Topic("orders")
	if !ok || tp.ID != r.TopicID || tp.Partitions != 2 || tp.Config.Compression != "zstd" || tp.CreatedAt != 7 {
		t.Fatalf("topic = %+v ok=%v", tp, ok)
	}
	ps := h.f.Partitions(tp.ID)
	if len(ps) != 2 || ps[1].Leader != "n2" || ps[1].LeaderEpoch != 1 || ps[0].NextOffset != 0 {
		t.Fatalf("partitions = %+v", ps)
	}
	if err := h.apply(&CreateTopic{Name: "orders", Partitions: 1}).Err(); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, bad := range []*CreateTopic{
		{Name: "", Partitions: 1}, {Name: "a/b", Partitions: 1}, {Name: "..", Partitions: 1},
		{Name: "x", Partitions: 0}, {Name: "x", Partitions: MaxPartitions + 1},
		{Name: "x", Partitions: 2, Leaders: []string{"a"}},
		{Name: "x", Partitions: 1, Config: TopicConfig{Compression: "gzip9"}},
		{Name: "x", Partitions: 1, Config: TopicConfig{RetentionMs: -1}},
	} {
		if err := h.apply(bad).Err(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%+v: want invalid, got %v", bad, err)
		}
	}
}

func TestApplyDeleteTopic(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2}).TopicID
	h.mustOK(&DeleteTopic{Name: "t"})
	if _, ok := h.f.Topic("t"); ok {
		t.Fatal("topic still there")
	}
	if _, ok := h.f.Partition(id, 0); ok {
		t.Fatal("partition still there")
	}
	if err := h.apply(&DeleteTopic{Name: "t"}).Err(); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// A re-created topic gets a new ID, so old batches can never alias it.
	id2 := h.mustOK(&CreateTopic{Name: "t", Partitions: 1}).TopicID
	if id2 == id {
		t.Fatal("topic ID reused")
	}
}

func TestApplyAppendBatchAssignsDenseOffsets(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	r1 := h.mustOK(appendCmd(id, 0, 1, "a", "b", "c"))
	r2 := h.mustOK(appendCmd(id, 0, 1, "d"))
	r3 := h.mustOK(appendCmd(id, 1, 1, "e"))
	if r1.BaseOffset != 0 || r1.Count != 3 || r2.BaseOffset != 3 || r3.BaseOffset != 0 {
		t.Fatalf("offsets: %+v %+v %+v", r1, r2, r3)
	}
	if p, _ := h.f.Partition(id, 0); p.NextOffset != 4 {
		t.Fatalf("next offset = %d", p.NextOffset)
	}
	if len(h.sink.batches) != 3 || h.sink.batches[1].BaseOffset != 3 || h.sink.batches[1].Index != h.idx-1 {
		t.Fatalf("sink got %+v", h.sink.batches)
	}
	cases := []struct {
		c    *AppendBatch
		want error
	}{
		{appendCmd(id, 0, 2, "x"), ErrStaleEpoch},
		{appendCmd(id, 5, 1, "x"), ErrPartitionInvalid},
		{appendCmd(999, 0, 1, "x"), ErrTopicNotFound},
		{&AppendBatch{TopicID: id, Partition: 0, LeaderEpoch: 1}, ErrInvalidCommand},
	}
	for _, c := range cases {
		if err := h.apply(c.c).Err(); !errors.Is(err, c.want) {
			t.Errorf("want %v, got %v", c.want, err)
		}
	}
	if p, _ := h.f.Partition(id, 0); p.NextOffset != 4 {
		t.Fatalf("rejected batches moved the offset: %d", p.NextOffset)
	}
}

func commitCmd(id uint64, part int32, epoch uint64, base, last int64) *CommitSegment {
	return &CommitSegment{Node: "n1", ObjectKey: "obj", Timestamp: 11, Entries: []CommitEntry{{
		TopicID: id, Partition: part, LeaderEpoch: epoch,
		Ref: SegmentRef{BaseOffset: base, LastOffset: last, RecordCount: int32(last - base + 1), ByteLength: 10},
	}}}
}

func TestApplyCommitSegment(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c", "d"))
	r := h.mustOK(commitCmd(id, 0, 1, 0, 1))
	if !r.Accepted[0] {
		t.Fatal("not accepted")
	}
	p, _ := h.f.Partition(id, 0)
	if p.FlushedOffset != 2 || p.Segments != 1 || p.SegmentBytes != 10 {
		t.Fatalf("partition = %+v", p)
	}
	if ref, ok := h.f.SegmentFor(id, 0, 1); !ok || ref.ObjectKey != "obj" || ref.CommittedAt != 11 {
		t.Fatalf("SegmentFor = %+v %v", ref, ok)
	}
	if _, ok := h.f.SegmentFor(id, 0, 2); ok {
		t.Fatal("segment found for unflushed offset")
	}
	for name, c := range map[string]*CommitSegment{
		"gap":         commitCmd(id, 0, 1, 3, 3),
		"overlap":     commitCmd(id, 0, 1, 1, 2),
		"past end":    commitCmd(id, 0, 1, 2, 4),
		"stale epoch": commitCmd(id, 0, 0, 2, 3),
	} {
		r := h.apply(c)
		if !errors.Is(r.Err(), ErrNotContiguous) || r.Accepted[0] {
			t.Errorf("%s: accepted or wrong error: %v", name, r.Err())
		}
	}
	h.mustOK(commitCmd(id, 0, 1, 2, 3))
	if p, _ := h.f.Partition(id, 0); p.FlushedOffset != 4 || p.Segments != 2 || p.SegmentBytes != 20 {
		t.Fatalf("partition = %+v", p)
	}
}

func TestApplyAssignLeader(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	r := h.mustOK(&AssignLeader{TopicID: id, Partition: 0, Leader: "n2", ExpectedEpoch: 1})
	if r.Epoch != 2 {
		t.Fatalf("epoch = %d", r.Epoch)
	}
	if p, _ := h.f.Partition(id, 0); p.Leader != "n2" || p.LeaderEpoch != 2 {
		t.Fatalf("partition = %+v", p)
	}
	if err := h.apply(&AssignLeader{TopicID: id, Partition: 0, Leader: "n3", ExpectedEpoch: 1}).Err(); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("stale CAS: %v", err)
	}
	// The old leader's batches are now fenced.
	if err := h.apply(appendCmd(id, 0, 1, "x")).Err(); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("old epoch append: %v", err)
	}
}

func TestApplyIsDeterministic(t *testing.T) {
	build := func() []byte {
		h := newHarness(t)
		id := h.mustOK(&CreateTopic{Name: "b", Partitions: 3, Leaders: []string{"x", "y", "z"}}).TopicID
		h.mustOK(&CreateTopic{Name: "a", Partitions: 1})
		for i := 0; i < 20; i++ {
			h.apply(appendCmd(id, int32(i%3), 1, "v"))
		}
		h.apply(&ClockTick{Time: 5000})
		late := commitCmd(id, 1, 1, 0, 3)
		late.CommitBy = 4000
		h.apply(late)
		h.apply(&ClockTick{Time: 3000})
		h.apply(commitCmd(id, 1, 1, 0, 3))
		return encodeState(h.f.state, snapshotVersion)
	}
	if a, b := build(), build(); !bytes.Equal(a, b) {
		t.Fatal("two replays produced different state")
	}
}

type bufSink struct {
	bytes.Buffer
	cancelled bool
}

func (b *bufSink) ID() string    { return "test" }
func (b *bufSink) Cancel() error { b.cancelled = true; return nil }
func (b *bufSink) Close() error  { return nil }

func snapshotRoundTrip(t *testing.T, h *harness) *harness {
	t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bufSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if h.sink.pinned != 0 {
		t.Fatal("snapshot did not release its pin")
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(encodeState(h.f.state, snapshotVersion), encodeState(h2.f.state, snapshotVersion)) {
		t.Fatal("restored state differs")
	}
	h2.idx = h.idx
	return h2
}

// TestSnapshotRoundTripPerCommand snapshots after each command type and
// checks the restored FSM equals the original and keeps working.
func TestSnapshotRoundTripPerCommand(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}, Config: TopicConfig{RetentionMs: 5}}).TopicID
	snapshotRoundTrip(t, h)
	h.mustOK(&CreateTopic{Name: "gone", Partitions: 1})
	h.mustOK(&DeleteTopic{Name: "gone"})
	snapshotRoundTrip(t, h)
	h.mustOK(appendCmd(id, 0, 1, "a", "b"))
	h.mustOK(appendCmd(id, 1, 1, "c"))
	h.mustOK(appendCmd(id, 0, 1, "d"))
	snapshotRoundTrip(t, h)
	h.mustOK(commitCmd(id, 0, 1, 0, 1))
	snapshotRoundTrip(t, h)
	h.mustOK(&AssignLeader{TopicID: id, Partition: 1, Leader: "n2", ExpectedEpoch: 1})
	snapshotRoundTrip(t, h)
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 2, Unfenced: true})
	h.mustOK(&ObjectsDeleted{Keys: []string{"never-queued"}})
	h2 := snapshotRoundTrip(t, h)
	if got := h2.f.PendingDeletes(); len(got) != 1 || got[0] != "obj" {
		t.Fatalf("pending deletes after restore = %v", got)
	}

	// The snapshot carried exactly the unflushed batches: partition 0's
	// batch at offset 2 and partition 1's batch; not the flushed one.
	var got []int64
	for _, b := range h2.sink.batches {
		got = append(got, int64(b.Partition)*100+b.BaseOffset)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if !reflect.DeepEqual(got, []int64{2, 100}) {
		t.Fatalf("restored batches = %v", got)
	}
	rs, err := DecodeRecords(h2.sink.batches[len(h2.sink.batches)-1].Records, 1)
	if err != nil || len(rs) != 1 {
		t.Fatal(err)
	}
	// The restored FSM continues offsets.
	if r := h2.mustOK(appendCmd(id, 0, 1, "e")); r.BaseOffset != 3 {
		t.Fatalf("after restore base offset = %d", r.BaseOffset)
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a"))
	snap, _ := h.f.Snapshot()
	var buf bufSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for n := 0; n < len(full); n++ {
		h2 := newHarness(t)
		if err := h2.f.Restore(io.NopCloser(bytes.NewReader(full[:n]))); err == nil {
			t.Fatalf("truncated snapshot of %d/%d bytes restored", n, len(full))
		}
		if _, ok := h2.f.Topic("t"); ok {
			t.Fatalf("failed restore of %d bytes swapped state in", n)
		}
	}
}

func TestChangedNotifies(t *testing.T) {
	h := newHarness(t)
	ch := h.f.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any change")
	default:
	}
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1})
	select {
	case <-ch:
	default:
		t.Fatal("not notified")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(Encode(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"a"}}))
	f.Add(Encode(appendCmd(1, 0, 1, "x")))
	f.Add(Encode(commitCmd(1, 0, 1, 0, 0)))
	f.Add(Encode(&AppendBatches{Batches: []*AppendBatch{appendCmd(1, 0, 1, "x"), {TopicID: 1, Count: 1, Records: []byte("r"), ProducerID: 3, ProducerOwner: "o", MaxUnflushed: 9}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := Decode(Encode(c)); err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
	})
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(AppendRecords(nil, recs("a", "b")), 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		rs, err := DecodeRecords(b, n)
		if err != nil {
			return
		}
		again, err := DecodeRecords(AppendRecords(nil, rs), n)
		if err != nil || !reflect.DeepEqual(again, rs) {
			t.Fatalf("records do not survive re-encoding: %v", err)
		}
	})
}

func commitObj(id uint64, part int32, key string, base, last int64) *CommitSegment {
	c := commitCmd(id, part, 1, base, last)
	c.ObjectKey = key
	return c
}

func TestApplyTrimPartitionAndObjectLifecycle(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c", "d", "e"))
	h.mustOK(appendCmd(id, 1, 1, "x"))
	// One object holds partition 0 [0,1] and partition 1 [0,0]; a second
	// object holds partition 0 [2,3].
	shared := &CommitSegment{Node: "n1", ObjectKey: "o1", Entries: []CommitEntry{
		{TopicID: id, Partition: 0, LeaderEpoch: 1, Ref: SegmentRef{BaseOffset: 0, LastOffset: 1, RecordCount: 2}},
		{TopicID: id, Partition: 1, LeaderEpoch: 1, Ref: SegmentRef{BaseOffset: 0, LastOffset: 0, RecordCount: 1}},
	}}
	h.mustOK(shared)
	h.mustOK(commitObj(id, 0, "o2", 2, 3))
	if !h.f.ObjectReferenced("o1") || !h.f.ObjectReferenced("o2") || h.f.ObjectReferenced("o3") {
		t.Fatal("references wrong after commits")
	}
	for _, bad := range []*TrimPartition{
		{TopicID: id, Partition: 0, Before: 1}, // not a boundary
		{TopicID: id, Partition: 0, Before: 5}, // past flushed offset (4)
		{TopicID: id, Partition: 0, Before: 1, Unfenced: true},
		{TopicID: id, Partition: 0, Before: 5, Unfenced: true},
	} {
		if err := h.apply(bad).Err(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if err := h.apply(&TrimPartition{TopicID: 99, Partition: 0, Before: 2, Unfenced: true}).Err(); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("unknown topic: %v", err)
	}
	// Trim partition 0 to 2: o1 is still referenced by partition 1.
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 2, Unfenced: true})
	p, _ := h.f.Partition(id, 0)
	if p.LowWatermark != 2 || p.Segments != 1 {
		t.Fatalf("after trim: %+v", p)
	}
	if len(h.f.PendingDeletes()) != 0 || !h.f.ObjectReferenced("o1") {
		t.Fatal("shared object queued while still referenced")
	}
	// Trimming again to the same point is a no-op.
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 2, Unfenced: true})
	// Trim to the flushed offset: every segment goes, o2 is queued.
	h.mustOK(&TrimPartition{TopicID: id, Partition: 0, Before: 4, Unfenced: true})
	if got := h.f.PendingDeletes(); len(got) != 1 || got[0] != "o2" {
		t.Fatalf("pending = %v", got)
	}
	// Deleting the topic releases o1 too.
	h.mustOK(&DeleteTopic{Name: "t"})
	if got := h.f.PendingDeletes(); len(got) != 2 {
		t.Fatalf("pending after delete = %v", got)
	}
	h.mustOK(&ObjectsDeleted{Keys: []string{"o1", "o2"}})
	if got := h.f.PendingDeletes(); len(got) != 0 || h.f.ObjectReferenced("o1") {
		t.Fatalf("pending after ObjectsDeleted = %v", got)
	}
}
