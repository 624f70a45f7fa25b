package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Regression (issue: RESTORE_OFFSET_GAP vs an unflushed backlog bounded only
// in bytes): a partition refuses a batch that would leave more unflushed
// records than the batch's bound, retriably; a flush makes room again.
func TestApplyAppendBatchRefusesBeyondTheUnflushedBound(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"a"}}).TopicID
	batch := func(n int) *AppendBatch {
		c := appendCmd(id, 0, 1, make([]string, n)...)
		c.MaxUnflushed = 1000
		return c
	}
	accepted := int64(0)
	for i := 0; i < 3; i++ {
		r := h.apply(batch(600))
		switch err := r.Err(); {
		case err == nil:
			accepted += 600
		case !errors.Is(err, ErrUnflushedLimit) || !errors.Is(err, ErrUnavailable):
			t.Fatalf("refusal is %v; want ErrUnflushedLimit wrapping ErrUnavailable (retry later)", err)
		}
	}
	if accepted != 600 {
		t.Fatalf("%d records unflushed in one partition, above the bound 1000", accepted)
	}
	if r := h.mustOK(batch(400)); r.BaseOffset != 600 {
		t.Fatalf("batch filling the bound exactly got base %d", r.BaseOffset)
	}
	if got := h.f.state.MaxUnflushedRecords; got != 1000 {
		t.Fatalf("recorded bound %d", got)
	}
	h.mustOK(commitCmd(id, 0, 1, 0, 599))
	if r := h.apply(batch(600)); r.Err() != nil || r.BaseOffset != 1000 {
		t.Fatalf("after a flush: %v at %d", r.Err(), r.BaseOffset)
	}
	// Unbounded batches (older proposers) are still accepted.
	if r := h.apply(appendCmd(id, 0, 1, make([]string, 2000)...)); r.Err() != nil {
		t.Fatal(r.Err())
	}
}

func TestInitProducerIDsCarryTheGeneration(t *testing.T) {
	h := newHarness(t)
	if r := h.mustOK(&InitProducer{Timestamp: 1}); r.ProducerID != 1 {
		t.Fatalf("generation 0 id = %d, want the raft index", r.ProducerID)
	}
	h.f.state.ProducerGeneration = 3
	r := h.mustOK(&InitProducer{Timestamp: 1})
	if r.ProducerID != 3<<ProducerIndexBits|2 {
		t.Fatalf("generation 3 id = %#x", r.ProducerID)
	}
	if r := h.mustOK(&InitProducer{ProducerID: r.ProducerID, Timestamp: 2}); r.ProducerEpoch != 1 {
		t.Fatalf("re-init of a generation-3 producer: epoch %d", r.ProducerEpoch)
	}
	h.idx = 1<<ProducerIndexBits - 1
	if r := h.apply(&InitProducer{Timestamp: 3}); !errors.Is(r.Err(), ErrInvalidCommand) {
		t.Fatalf("index beyond the id space: %v", r.Err())
	}
}

func TestLineageSnapshotAndImageRoundTrip(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"a"}}).TopicID
	c := appendCmd(id, 0, 1, "x")
	c.MaxUnflushed = 77
	h.mustOK(c)
	h.f.state.ProducerGeneration = 5
	h.f.state.Unreadable["segments/u.seg"] = 42
	if !h.f.ObjectReferenced("segments/u.seg") {
		t.Fatal("an unreadable object is not protected from GC")
	}
	h2 := snapshotRoundTrip(t, h)
	if st := h2.f.state; st.ProducerGeneration != 5 || st.MaxUnflushedRecords != 77 || st.Unreadable["segments/u.seg"] != 42 {
		t.Fatalf("lineage after snapshot: gen %d bound %d unreadable %v", st.ProducerGeneration, st.MaxUnflushedRecords, st.Unreadable)
	}
	img := h.f.Image()
	want := []UnreadableObject{{Key: "segments/u.seg", RestoredFrom: 42}}
	if img.ProducerGeneration != 5 || img.MaxUnflushedRecords != 77 || !reflect.DeepEqual(img.Unreadable, want) {
		t.Fatalf("image lineage %+v", img)
	}
	var buf bytes.Buffer
	img.Partitions[0].NextOffset = img.Partitions[0].FlushedOffset // images carry no batches
	if err := WriteImageSnapshot(&buf, img); err != nil {
		t.Fatal(err)
	}
	f := New(nil)
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got := f.Image(); got.ProducerGeneration != 5 || !reflect.DeepEqual(got.Unreadable, want) || !f.ObjectReferenced("segments/u.seg") {
		t.Fatalf("image snapshot lineage %+v", got)
	}
}

func TestSnapshotWithoutLineageIsUnchanged(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1})
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString(snapshotMagicV2)
	_ = writeItem(&want, encodeState(h.f.state, 2))
	_ = writeItem(&want, []byte{itemEnd})
	if !bytes.Equal(buf.Bytes(), want.Bytes()) {
		t.Fatal("a state without lineage no longer writes the version-2 stream")
	}
}
