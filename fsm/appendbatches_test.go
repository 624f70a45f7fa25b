package fsm

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// Every AppendBatch payload version travels inside an AppendBatches entry
// and decodes back to the same batch.
func TestAppendBatchesCodecCarriesEveryBatchVersion(t *testing.T) {
	z := AppendRecords(nil, recs("z"))
	batches := []*AppendBatch{
		appendCmd(7, 2, 3, "x", "y"), // v1
		{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: z, ProducerID: 5, ProducerEpoch: 2, BaseSequence: 40},                            // v2
		{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: z, ProducerID: 5, ProducerEpoch: 2, BaseSequence: 40, ProducerOwner: "tenant-a"}, // v3
		{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: z, MaxUnflushed: 1000},                                                           // v4
		{TopicID: 7, Partition: 1, LeaderEpoch: 2, Timestamp: 3, Count: 1, Records: z, ProducerID: 5, BaseSequence: 1, ProducerOwner: "tenant-a", MaxUnflushed: 9},   // v4
	}
	want := []uint8{1, 2, 3, 4, 4}
	for i, b := range batches {
		if b.version() != want[i] {
			t.Fatalf("batch %d is version %d, want %d", i, b.version(), want[i])
		}
	}
	cmd := &AppendBatches{Batches: batches}
	enc := Encode(cmd)
	if enc[0] != 14 || enc[1] != 1 || enc[2] != byte(len(batches)) || enc[3] != 1 {
		t.Fatalf("encoding starts % x; want type 14, payload version 1, count, first batch version 1", enc[:4])
	}
	assertCodecRoundTrip(t, []Command{cmd, &AppendBatches{Batches: batches[:1]}})
}

func TestAppendBatchesDecodeRejectsMalformed(t *testing.T) {
	good := Encode(&AppendBatches{Batches: []*AppendBatch{appendCmd(1, 0, 1, "a"), appendCmd(1, 1, 1, "b")}})
	bad := map[string][]byte{
		"no batches":        Encode(&AppendBatches{}),
		"payload version 2": append([]byte{14, 2}, good[2:]...),
		"batch version 9":   append([]byte{14, 1, 2, 9}, good[4:]...),
		"truncated":         good[:len(good)-3],
		"trailing bytes":    append(append([]byte(nil), good...), 0),
		"huge count":        {14, 1, 0xff, 0xff, 0x03, 1, 1},
	}
	for name, b := range bad {
		if _, err := Decode(b); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: Decode = %v, want ErrDecode", name, err)
		}
	}
}

// One entry, several partitions and requests: each batch gets its own
// result and offsets; a stale-epoch or unknown-partition batch fails alone.
func TestApplyAppendBatchesGivesEachBatchItsOwnResult(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 3, Leaders: []string{"n1", "n1", "n1"}}).TopicID
	h.mustOK(&AssignLeader{TopicID: id, Partition: 1, Leader: "n2", ExpectedEpoch: 1}) // partition 1 at epoch 2
	h.mustOK(appendCmd(id, 0, 1, "a0"))
	res := h.mustOK(&AppendBatches{Batches: []*AppendBatch{
		appendCmd(id, 0, 1, "b", "c"), // ok: offsets 1-2
		appendCmd(id, 1, 1, "x"),      // stale epoch
		appendCmd(id, 2, 1, "d"),      // ok: offset 0
		appendCmd(id, 0, 1, "e"),      // same partition again: offset 3
		appendCmd(id, 9, 1, "f"),      // no such partition
	}})
	if len(res.Batches) != 5 {
		t.Fatalf("%d batch results, want 5", len(res.Batches))
	}
	b := res.Batches
	if b[0].Err() != nil || b[0].BaseOffset != 1 || b[0].Count != 2 {
		t.Errorf("batch 0: %+v", b[0])
	}
	if !errors.Is(b[1].Err(), ErrStaleEpoch) {
		t.Errorf("batch 1: %v, want stale epoch", b[1].Err())
	}
	if b[2].Err() != nil || b[2].BaseOffset != 0 || b[3].Err() != nil || b[3].BaseOffset != 3 {
		t.Errorf("batches 2, 3: %+v %+v", b[2], b[3])
	}
	if !errors.Is(b[4].Err(), ErrPartitionInvalid) {
		t.Errorf("batch 4: %v, want invalid partition", b[4].Err())
	}
	for i := range b {
		if b[i].Index != h.idx {
			t.Errorf("batch %d index %d, want the entry's %d", i, b[i].Index, h.idx)
		}
	}
	for part, next := range map[int32]int64{0: 4, 1: 0, 2: 1} {
		if p, _ := h.f.Partition(id, part); p.NextOffset != next {
			t.Errorf("partition %d next offset %d, want %d", part, p.NextOffset, next)
		}
	}
	// The sink got the three applied batches at the entry's index, in order.
	got := h.sink.batches[1:]
	if len(got) != 3 || got[0].BaseOffset != 1 || got[1].Partition != 2 || got[2].BaseOffset != 3 || got[2].Index != h.idx {
		t.Fatalf("stored %d batches: %+v", len(got), got)
	}
}

// Idempotent batches inside one entry are checked one after the other, as
// separate entries would be: a retry in the same entry is a duplicate with
// the original offsets, an out-of-order one fails alone.
func TestApplyAppendBatchesKeepsIdempotentSemantics(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	res := h.mustOK(&AppendBatches{Batches: []*AppendBatch{
		idemBatch(id, 0, pid, 0, 0, "a", "b"),
		idemBatch(id, 0, pid, 0, 0, "a", "b"), // the retry
		idemBatch(id, 0, pid, 0, 5, "x"),      // gap in the sequence
		idemBatch(id, 1, pid, 0, 0, "c"),
		idemBatch(id, 0, pid, 0, 2, "d"),
	}})
	b := res.Batches
	if b[0].Err() != nil || b[0].Duplicate || b[0].BaseOffset != 0 {
		t.Errorf("first: %+v", b[0])
	}
	if !b[1].Duplicate || b[1].BaseOffset != 0 || b[1].Count != 2 {
		t.Errorf("retry: %+v", b[1])
	}
	if !errors.Is(b[2].Err(), ErrOutOfOrderSequence) {
		t.Errorf("gap: %v", b[2].Err())
	}
	if b[3].Err() != nil || b[3].BaseOffset != 0 || b[4].Err() != nil || b[4].BaseOffset != 2 {
		t.Errorf("neighbours: %+v %+v", b[3], b[4])
	}
	if p, _ := h.f.Partition(id, 0); p.NextOffset != 3 {
		t.Errorf("partition 0 next offset %d, want 3", p.NextOffset)
	}
	// A later retry of the in-entry batch is still recognised.
	if dup := h.mustOK(idemBatch(id, 0, pid, 0, 2, "d")); !dup.Duplicate || dup.BaseOffset != 2 {
		t.Errorf("later retry: %+v", dup)
	}
}

// A multi-batch entry the sink cannot store changes nothing (offsets,
// sequences) and is retried until it is stored exactly once.
func TestApplyAppendBatchesStallsAsOneEntry(t *testing.T) {
	f, sink := newFullSinkFSM(t)
	sink.setFull(false)
	f.ApplyBatch([]*raft.Log{
		logOf(1, &CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}),
		logOf(2, &InitProducer{Timestamp: 10}),
	})
	pid := uint64(2)
	sink.setFull(true)
	entry := &AppendBatches{Batches: []*AppendBatch{
		idemBatch(1, 0, pid, 0, 0, "a", "b"),
		appendCmd(1, 1, 1, "c"),
	}}
	done := make(chan []interface{}, 1)
	go func() { done <- f.ApplyBatch([]*raft.Log{logOf(3, entry)}) }()
	testkit.WaitFor(t, 10*time.Second, "a stall at index 3", func() bool {
		st, ok := f.Stalled()
		return ok && st.Index == 3 && st.Attempts >= 3 && errors.Is(st.Err, syscall.ENOSPC)
	})
	for part := int32(0); part < 2; part++ {
		if p, _ := f.Partition(1, part); p.NextOffset != 0 {
			t.Fatalf("while stalled: partition %d next offset %d", part, p.NextOffset)
		}
	}
	sink.setFull(false)
	f.RetryNow()
	var out []interface{}
	select {
	case out = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("apply did not resume")
	}
	res := out[0].(*Result)
	if len(res.Batches) != 2 || res.Batches[0].Err() != nil || res.Batches[0].Duplicate || res.Batches[0].BaseOffset != 0 || res.Batches[1].BaseOffset != 0 {
		t.Fatalf("after the stall: %+v", res)
	}
	if p, _ := f.Partition(1, 0); p.NextOffset != 2 {
		t.Fatalf("partition 0 next offset %d, want 2 (applied once)", p.NextOffset)
	}
	if got := sink.stored(); len(got) != 2 || got[0] != 3 || got[1] != 3 {
		t.Fatalf("stored %v, want both batches of entry 3", got)
	}
}

// A snapshot holding several batches of one entry restores all of them
// (handed to the sink together, as Apply did).
func TestSnapshotRestoresEveryBatchOfAnEntry(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	h.mustOK(&AppendBatches{Batches: []*AppendBatch{appendCmd(id, 0, 1, "a"), appendCmd(id, 1, 1, "b", "c"), appendCmd(id, 0, 1, "d")}})
	h.mustOK(appendCmd(id, 1, 1, "e"))
	h2 := snapshotRoundTrip(t, h)
	if len(h2.sink.batches) != 4 {
		t.Fatalf("restored %d batches, want 4", len(h2.sink.batches))
	}
	var vals []string
	for _, b := range h2.sink.batches {
		rs, err := DecodeRecords(b.Records, int(b.Count))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			vals = append(vals, string(r.Value))
		}
	}
	if strings.Join(vals, "") != "abcde" {
		t.Fatalf("restored records %q", vals)
	}
}

func TestEncodeBatchesRoundTrip(t *testing.T) {
	one := []*AppendedBatch{{Index: 5, TopicID: 1, Partition: 2, BaseOffset: 3, Count: 1, Timestamp: 9, Records: []byte("r")}}
	two := append(one, &AppendedBatch{Index: 5, TopicID: 1, Partition: 0, BaseOffset: 0, Count: 2, Records: []byte("rr")})
	for _, bs := range [][]*AppendedBatch{one, two} {
		enc := EncodeBatches(nil, bs)
		got, err := DecodeBatches(enc)
		if err != nil || len(got) != len(bs) {
			t.Fatalf("decode %d batches: %d, %v", len(bs), len(got), err)
		}
		for i := range bs {
			if got[i].Partition != bs[i].Partition || string(got[i].Records) != string(bs[i].Records) || got[i].Index != 5 {
				t.Fatalf("batch %d: %+v", i, got[i])
			}
		}
	}
	if string(EncodeBatches(nil, one)) != string(EncodeBatch(nil, one[0])) {
		t.Fatal("a single batch is not written in the one-batch encoding")
	}
	for _, bad := range [][]byte{{0}, {0, 2, 2}, {0, 1, 1, 5, 1, 2, 3, 1, 9, 1, 'r'}} {
		if _, err := DecodeBatches(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("DecodeBatches(% x) = %v, want ErrDecode", bad, err)
		}
	}
}

// Version 2 gives each batch a span that can be verified and decoded on
// its own; a flipped bit in a span is caught; version 1 (written before
// spans) still decodes, without spans.
func TestEncodeBatchSpans(t *testing.T) {
	bs := []*AppendedBatch{
		{Index: 7, TopicID: 1, Partition: 2, BaseOffset: 3, Count: 1, Timestamp: 9, Records: []byte("r")},
		{Index: 7, TopicID: 1, Partition: 0, BaseOffset: 0, Count: 2, Records: []byte("rr")},
		{Index: 7, TopicID: 4, Partition: 1, BaseOffset: 5, Count: 3, Records: []byte("rrr")},
	}
	prefix := []byte("xyz")
	enc, spans := EncodeBatchSpans(prefix, bs, nil)
	enc = enc[len(prefix):]
	_, decSpans, err := DecodeBatchSpans(enc)
	if err != nil || len(spans) != 3 || len(decSpans) != 3 {
		t.Fatalf("spans %v, decoded %v, %v", spans, decSpans, err)
	}
	for i, sp := range spans {
		if sp != decSpans[i] {
			t.Fatalf("span %d: encoded %v, decoded %v", i, sp, decSpans[i])
		}
		got, err := DecodeBatchSpan(enc[sp.Off : sp.Off+sp.Len])
		if err != nil || got.TopicID != bs[i].TopicID || got.BaseOffset != bs[i].BaseOffset || string(got.Records) != string(bs[i].Records) {
			t.Fatalf("span %d: %+v, %v", i, got, err)
		}
		bad := append([]byte(nil), enc[sp.Off:sp.Off+sp.Len]...)
		bad[len(bad)-1] ^= 1
		if _, err := DecodeBatchSpan(bad); !errors.Is(err, ErrDecode) {
			t.Fatalf("corrupt span %d: %v, want ErrDecode", i, err)
		}
		if _, err := DecodeBatchSpan(enc[sp.Off : sp.Off+sp.Len-1]); !errors.Is(err, ErrDecode) {
			t.Fatalf("short span %d: %v, want ErrDecode", i, err)
		}
	}
	bad := append([]byte(nil), enc...)
	bad[spans[1].Off+spanHeader] ^= 1
	if _, err := DecodeBatches(bad); !errors.Is(err, ErrDecode) {
		t.Fatalf("DecodeBatches of a corrupt span: %v, want ErrDecode", err)
	}

	v1 := []byte{multiBatchTag, multiBatchVersionV1, byte(len(bs))}
	for _, b := range bs {
		v1 = EncodeBatch(v1, b)
	}
	got, spans, err := DecodeBatchSpans(v1)
	if err != nil || len(got) != 3 || spans != nil || string(got[2].Records) != "rrr" {
		t.Fatalf("version 1: %d batches, spans %v, %v", len(got), spans, err)
	}
}
