package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// bumpBatch is an idempotent batch that allows a local epoch bump
// (payload v5), as every proposer writes once the cluster applies
// FeatureLevel 4.
func bumpBatch(id uint64, part int32, pid uint64, epoch uint32, seq int64, vals ...string) *AppendBatch {
	b := idemBatch(id, part, pid, epoch, seq, vals...)
	b.AllowEpochBump = true
	b.MaxUnflushed = 1000
	return b
}

// epochFixture: a topic of two partitions and a producer that wrote one
// batch of two records at epoch 0 on each (offsets 0..1 on both).
func epochFixture(t *testing.T) (h *harness, topic, pid uint64) {
	h = newHarness(t)
	topic = h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	pid = h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(bumpBatch(topic, 0, pid, 0, 0, "a0", "a1"))
	h.mustOK(bumpBatch(topic, 1, pid, 0, 0, "b0", "b1"))
	return h, topic, pid
}

// TestLocalEpochBumpIsPerPartition reproduces a KIP-360 client (franz-go)
// bumping its epoch locally: the new epoch at sequence 0 is accepted on
// partition 0, while a retry of the old epoch's batch on partition 1 (sent
// before the bump, written already) is still a duplicate with its original
// offsets; the bump then reaches partition 1 too. Nothing is written twice.
func TestLocalEpochBumpIsPerPartition(t *testing.T) {
	h, topic, pid := epochFixture(t)
	if r := h.mustOK(bumpBatch(topic, 0, pid, 1, 0, "a2")); r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("epoch 1 seq 0 on partition 0 = %+v, want appended at 2", r)
	}
	r := h.mustOK(bumpBatch(topic, 1, pid, 0, 0, "b0", "b1"))
	if !r.Duplicate || r.BaseOffset != 0 || r.Count != 2 {
		t.Fatalf("retry of the epoch-0 batch on partition 1 = %+v, want the duplicate at 0", r)
	}
	// The old epoch may still continue on partition 1 (Kafka: its state
	// there is still epoch 0).
	if r := h.mustOK(bumpBatch(topic, 1, pid, 0, 2, "b2")); r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("epoch 0 seq 2 on partition 1 = %+v", r)
	}
	if r := h.mustOK(bumpBatch(topic, 1, pid, 1, 0, "b3")); r.Duplicate || r.BaseOffset != 3 {
		t.Fatalf("epoch 1 seq 0 on partition 1 = %+v, want appended at 3", r)
	}
	// A retry under the new epoch is a duplicate of the new epoch's batch.
	if r := h.mustOK(bumpBatch(topic, 0, pid, 1, 0, "a2")); !r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("retry of epoch 1 seq 0 on partition 0 = %+v", r)
	}
	for part, want := range []int64{3, 4} {
		if p, _ := h.f.Partition(topic, int32(part)); p.NextOffset != want {
			t.Fatalf("partition %d next offset %d, want %d", part, p.NextOffset, want)
		}
	}
	if id, _ := h.f.Producer(pid); id.Epoch != 0 {
		t.Fatalf("a local bump moved the producer-wide epoch to %d", id.Epoch)
	}
}

// TestLocalEpochBumpRefusals: after a bump on a partition, its old epoch is
// fenced; a new epoch must start at sequence 0; a batch equal to an old
// epoch's batch under the new epoch is not a duplicate of it.
func TestLocalEpochBumpRefusals(t *testing.T) {
	h, topic, pid := epochFixture(t)
	if r := h.apply(bumpBatch(topic, 0, pid, 1, 2, "x")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("epoch 1 at sequence 2 = %+v, want out of order", r)
	}
	if r := h.apply(bumpBatch(topic, 0, pid, 3, 5, "x")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("epoch 3 at sequence 5 = %+v, want out of order", r)
	}
	// Same sequence and count as the epoch-0 batch: a new batch, not its
	// duplicate.
	if r := h.mustOK(bumpBatch(topic, 0, pid, 1, 0, "c0", "c1")); r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("epoch 1 seq 0 (same shape as epoch 0's batch) = %+v", r)
	}
	for _, seq := range []int64{0, 2} {
		if r := h.apply(bumpBatch(topic, 0, pid, 0, seq, "a0", "a1")); !errors.Is(r.Err(), ErrProducerFenced) {
			t.Fatalf("epoch 0 seq %d after the bump = %+v, want fenced", seq, r)
		}
	}
	if r := h.apply(bumpBatch(topic, 0, pid, 1, 5, "x")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("epoch 1 with a gap = %+v", r)
	}
	// A bump may skip epochs (sequence 0 still required).
	if r := h.mustOK(bumpBatch(topic, 0, pid, 4, 0, "d")); r.BaseOffset != 4 {
		t.Fatalf("epoch 4 seq 0 = %+v", r)
	}
	if p, _ := h.f.Partition(topic, 0); p.NextOffset != 5 {
		t.Fatalf("next offset %d, want 5", p.NextOffset)
	}
}

// TestRefusedBumpChangesNothing: a bump refused by a later check (a stale
// partition-leader epoch) leaves the partition at its old epoch.
func TestRefusedBumpChangesNothing(t *testing.T) {
	h, topic, pid := epochFixture(t)
	stale := bumpBatch(topic, 0, pid, 1, 0, "x")
	stale.LeaderEpoch = 7
	if r := h.apply(stale); !errors.Is(r.Err(), ErrStaleEpoch) {
		t.Fatalf("stale leader epoch = %+v", r)
	}
	if r := h.mustOK(bumpBatch(topic, 0, pid, 0, 0, "a0", "a1")); !r.Duplicate {
		t.Fatalf("epoch 0 retry after a refused bump = %+v, want still a duplicate", r)
	}
}

// TestEpochBumpNeedsTheFlag: a batch written without AllowEpochBump (by an
// agent of the previous version) keeps that version's answer.
func TestEpochBumpNeedsTheFlag(t *testing.T) {
	h, topic, pid := epochFixture(t)
	old := idemBatch(topic, 0, pid, 1, 0, "x")
	old.MaxUnflushed = 1000
	if r := h.apply(old); !errors.Is(r.Err(), ErrUnknownProducer) {
		t.Fatalf("an unflagged epoch bump = %+v, want unknown producer", r)
	}
	h.mustOK(bumpBatch(topic, 0, pid, 1, 0, "x"))
	// Unflagged, at the partition's new epoch: the ordinary check.
	old = idemBatch(topic, 0, pid, 1, 1, "y")
	if r := h.mustOK(old); r.BaseOffset != 3 {
		t.Fatalf("unflagged at the partition epoch = %+v", r)
	}
	if r := h.apply(idemBatch(topic, 0, pid, 0, 2, "z")); !errors.Is(r.Err(), ErrProducerFenced) {
		t.Fatalf("unflagged old epoch = %+v, want fenced", r)
	}
}

// TestInitProducerAfterLocalBumpsFencesAll: an explicit bump moves the
// producer past every partition's epoch and clears them.
func TestInitProducerAfterLocalBumpsFencesAll(t *testing.T) {
	h, topic, pid := epochFixture(t)
	h.mustOK(bumpBatch(topic, 0, pid, 3, 0, "x"))
	r := h.mustOK(&InitProducer{ProducerID: pid, Timestamp: 11})
	if r.ProducerEpoch != 4 {
		t.Fatalf("InitProducer after a local bump to 3 gave epoch %d, want 4", r.ProducerEpoch)
	}
	for part, e := range []uint32{3, 0} {
		if r := h.apply(bumpBatch(topic, int32(part), pid, e, 1, "y")); !errors.Is(r.Err(), ErrProducerFenced) {
			t.Fatalf("partition %d epoch %d after InitProducer = %+v, want fenced", part, e, r)
		}
	}
	for part := int32(0); part < 2; part++ {
		if r := h.mustOK(bumpBatch(topic, part, pid, 4, 0, "z")); r.Duplicate {
			t.Fatalf("epoch 4 seq 0 on %d = %+v", part, r)
		}
	}
}

// TestPartitionEpochsSurviveSnapshotAndImage: a snapshot and an image round
// trip keep partition epochs (so the same batches are fenced, duplicated
// and accepted), and the sticky EpochBumps marker.
func TestPartitionEpochsSurviveSnapshotAndImage(t *testing.T) {
	h, topic, pid := epochFixture(t)
	h.mustOK(bumpBatch(topic, 0, pid, 2, 0, "x"))
	if !h.f.EpochBumps() {
		t.Fatal("EpochBumps not set by a flagged batch")
	}
	for name, h2 := range map[string]*harness{"snapshot": snapshotRoundTrip(t, h), "image": imageRoundTrip(t, h)} {
		if !h2.f.EpochBumps() {
			t.Fatalf("%s: EpochBumps lost", name)
		}
		if r := h2.apply(bumpBatch(topic, 0, pid, 1, 0, "y")); !errors.Is(r.Err(), ErrProducerFenced) {
			t.Fatalf("%s: epoch 1 on the bumped partition = %+v, want fenced", name, r)
		}
		if r := h2.mustOK(bumpBatch(topic, 1, pid, 0, 0, "b0", "b1")); !r.Duplicate || r.BaseOffset != 0 {
			t.Fatalf("%s: epoch 0 retry on partition 1 = %+v", name, r)
		}
		if r := h2.mustOK(&InitProducer{ProducerID: pid, Timestamp: 12}); r.ProducerEpoch != 3 {
			t.Fatalf("%s: InitProducer gave epoch %d, want 3", name, r.ProducerEpoch)
		}
	}
	img := h.f.Image()
	want := []ProducerEpoch{{TopicID: topic, Partition: 0, Epoch: 2}}
	if len(img.Producers) != 1 || !reflect.DeepEqual(img.Producers[0].PartitionEpochs, want) || img.Producers[0].MaxEpoch() != 2 {
		t.Fatalf("image producers %+v", img.Producers)
	}
}

// TestSnapshotWithoutEpochBumpsIsUnchanged: no flagged batch, no new item
// (agents of the previous version still install the snapshot).
func TestSnapshotWithoutEpochBumpsIsUnchanged(t *testing.T) {
	h := newHarness(t)
	topic := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(idemBatch(topic, 0, pid, 0, 0, "a"))
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	if tags := snapshotTags(t, buf.Bytes()); tags[itemProducerEpochs] {
		t.Fatalf("snapshot without epoch bumps carries a producer-epochs item (tags %v)", tags)
	}
	h.mustOK(bumpBatch(topic, 0, pid, 0, 1, "b"))
	var flagged bytes.Buffer
	if err := writeSnapshot(&flagged, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	if tags := snapshotTags(t, flagged.Bytes()); !tags[itemProducerEpochs] {
		t.Fatalf("snapshot after a flagged batch has no producer-epochs item (tags %v)", tags)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h2.f.EpochBumps() {
		t.Fatal("EpochBumps set after restoring a snapshot without bumps")
	}
}

// TestPlanRestoreFencesAbovePartitionEpochs: the restored producer epoch is
// above every partition epoch, with none of them left.
// TestPlanRestoreDropsProducers: the checkpoint knows a producer's epochs
// only up to its own index; a client that bumped its epoch locally after it
// (as franz-go does after a failed batch) could retry a batch recovered
// from S3 at an epoch equal to or above any fence, and the restored state,
// without its sequences, would append it again. So no producer is carried:
// the retry is refused as an unknown producer, with nothing written, and
// the client starts a new producer id (never an old one: the restore moves
// ProducerGeneration on).
func TestPlanRestoreDropsProducers(t *testing.T) {
	img := checkpointImage()
	img.Producers = []ProducerEntry{{ID: 400, Epoch: 1, PartitionEpochs: []ProducerEpoch{{TopicID: 1, Partition: 0, Epoch: 9}}}}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: map[string]bool{"segments/a.seg": true, "segments/b.seg": true}, SeedNode: "n", Generation: 1})
	if len(plan.Producers) != 0 || rep.ProducersDropped != 1 {
		t.Errorf("restored producers %+v (%d dropped), want none and 1 dropped", plan.Producers, rep.ProducersDropped)
	}
	// The restored state refuses the old session's retry at any epoch.
	st, err := stateFromImage(plan)
	if err != nil {
		t.Fatal(err)
	}
	f := &FSM{state: st}
	for _, epoch := range []uint32{1, 10, 11} {
		c := &AppendBatch{TopicID: 1, Partition: 0, Count: 1, ProducerID: 400, ProducerEpoch: epoch, AllowEpochBump: true}
		if r := f.checkSequence(PartitionKey{TopicID: 1, Partition: 0}, c); !errors.Is(r.Err(), ErrUnknownProducer) {
			t.Fatalf("retry at epoch %d after the restore: %v, want unknown producer", epoch, r.Err())
		}
	}
}

// TestAppendBatchV5Codec: the flag is written in payload version 5 only;
// a v5 without it, or with unknown bits, does not decode.
func TestAppendBatchV5Codec(t *testing.T) {
	b := bumpBatch(3, 1, 9, 2, 0, "a")
	enc := Encode(b)
	if enc[1] != 5 {
		t.Fatalf("flagged batch encoded as version %d", enc[1])
	}
	got, err := Decode(enc)
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	b.AllowEpochBump = false
	if v := Encode(b)[1]; v != 4 {
		t.Fatalf("unflagged batch encoded as version %d", v)
	}
	for _, flags := range []byte{0, 3} {
		bad := append([]byte(nil), enc...)
		bad[len(bad)-1] = flags
		if _, err := Decode(bad); !errors.Is(err, ErrDecode) {
			t.Fatalf("v5 with flags %d decoded: %v", flags, err)
		}
	}
	// Inside AppendBatches too.
	assertCodecRoundTrip(t, []Command{&AppendBatches{Batches: []*AppendBatch{bumpBatch(3, 1, 9, 2, 0, "a"), appendCmd(3, 0, 1, "b")}}})
}

// TestAppendBatchesUndoRestoresPartitionEpochs: a bump inside an entry the
// Sink could not store is undone with the rest of the entry, then applied
// once on the retry.
func TestAppendBatchesUndoRestoresPartitionEpochs(t *testing.T) {
	f, sink := newFullSinkFSM(t)
	sink.setFull(false)
	f.ApplyBatch([]*raft.Log{
		logOf(1, &CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}),
		logOf(2, &InitProducer{Timestamp: 10}),
		logOf(3, bumpBatch(1, 0, 2, 0, 0, "a")),
	})
	sink.setFull(true)
	entry := &AppendBatches{Batches: []*AppendBatch{bumpBatch(1, 0, 2, 1, 0, "b"), bumpBatch(1, 1, 2, 1, 0, "c")}}
	done := make(chan []interface{}, 1)
	go func() { done <- f.ApplyBatch([]*raft.Log{logOf(4, entry)}) }()
	testkit.WaitFor(t, 10*time.Second, "a stall at index 4", func() bool {
		st, ok := f.Stalled()
		return ok && st.Index == 4 && st.Attempts >= 2 && errors.Is(st.Err, syscall.ENOSPC)
	})
	f.mu.RLock()
	p := f.state.Producers[2]
	epochs, recent := len(p.Epochs), len(p.Recent[PartitionKey{1, 0}])
	f.mu.RUnlock()
	if epochs != 0 || recent != 1 {
		t.Fatalf("while stalled: %d partition epochs, %d recent batches on 0 (want 0, 1: undone)", epochs, recent)
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
	if res.Batches[0].Err() != nil || res.Batches[0].BaseOffset != 1 || res.Batches[1].Err() != nil || res.Batches[1].BaseOffset != 0 {
		t.Fatalf("after the stall: %+v", res)
	}
	if r := f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: Encode(bumpBatch(1, 0, 2, 0, 0, "a"))}).(*Result); !errors.Is(r.Err(), ErrProducerFenced) {
		t.Fatalf("epoch 0 after the bump = %+v", r)
	}
}

// TestDeleteTopicDropsPartitionEpochs: a deleted topic's partition epochs
// go with its sequences.
func TestDeleteTopicDropsPartitionEpochs(t *testing.T) {
	h, topic, pid := epochFixture(t)
	h.mustOK(bumpBatch(topic, 0, pid, 1, 0, "x"))
	h.mustOK(&DeleteTopic{Name: "t"})
	if p := h.f.state.Producers[pid]; len(p.Epochs) != 0 || len(p.Recent) != 0 {
		t.Fatalf("after deleting the topic: epochs %v, recent %v", p.Epochs, p.Recent)
	}
}

// snapshotTags lists the item tags after the state item.
func snapshotTags(t *testing.T, b []byte) map[byte]bool {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b[len(snapshotMagic):]))
	if _, err := readItem(r); err != nil { // the state item
		t.Fatal(err)
	}
	tags := map[byte]bool{}
	for {
		item, err := readItem(r)
		if err != nil {
			t.Fatal(err)
		}
		tags[item[0]] = true
		if item[0] == itemEnd {
			return tags
		}
	}
}

// TestRestoreRejectsBadProducerEpochs: the section refuses an unknown
// producer and an epoch not above the producer's.
func TestRestoreRejectsBadProducerEpochs(t *testing.T) {
	h, topic, pid := epochFixture(t)
	for _, es := range []struct {
		id    uint64
		epoch uint32
	}{{pid + 100, 5}, {pid, 0}} {
		e := enc{}
		e.u8(producerEpochsSectionVersion)
		e.uv(1)
		e.uv(es.id)
		e.uv(1)
		e.uv(topic)
		e.iv(0)
		e.uv(uint64(es.epoch))
		st := h.f.state.clone()
		if err := decodeProducerEpochs(e.b, st); !errors.Is(err, ErrDecode) {
			t.Fatalf("producer %d epoch %d: %v", es.id, es.epoch, err)
		}
	}
}

// TestEpochBumpSnapshotIsDeterministic: replaying the same log twice gives
// byte-identical snapshots, partition epochs included (map order never
// shows).
func TestEpochBumpSnapshotIsDeterministic(t *testing.T) {
	build := func() []byte {
		h := newHarness(t)
		topic := h.mustOK(&CreateTopic{Name: "t", Partitions: 8, Leaders: []string{"n", "n", "n", "n", "n", "n", "n", "n"}}).TopicID
		for i := 0; i < 3; i++ {
			pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
			for part := int32(0); part < 8; part++ {
				h.apply(bumpBatch(topic, part, pid, uint32(part)+uint32(i), 0, "v"))
			}
		}
		var buf bytes.Buffer
		if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if a, b := build(), build(); !bytes.Equal(a, b) {
		t.Fatal("two replays produced different snapshots")
	}
}

// TestEpochsNeverWrap: a bump may not reach an epoch whose successor would
// wrap to 0 (a gRPC client chooses its epoch; one request could otherwise
// make the next InitProducer or restore hand out epoch 0, and an old
// session's batches would be appended instead of fenced).
func TestEpochsNeverWrap(t *testing.T) {
	h, topic, pid := epochFixture(t)
	if r := h.apply(bumpBatch(topic, 0, pid, ^uint32(0), 0, "x")); !errors.Is(r.Err(), ErrInvalidCommand) {
		t.Fatalf("bump to MaxUint32: %v, want invalid command", r.Err())
	}
	h.mustOK(bumpBatch(topic, 0, pid, MaxProducerEpoch, 0, "x"))
	if r := h.apply(&InitProducer{ProducerID: pid, Timestamp: 20}); !errors.Is(r.Err(), ErrInvalidCommand) {
		t.Fatalf("InitProducer past the last epoch: %+v, want invalid command", r)
	}
	// Still fenced: an epoch-0 batch on partition 1 is a duplicate or a
	// sequence error, never a new append under a wrapped epoch.
	if r := h.apply(bumpBatch(topic, 1, pid, 0, 2, "b2")); r.Err() != nil {
		t.Fatalf("epoch 0 continues on partition 1: %v", r.Err())
	}
}

// TestSequenceGapIsItsOwnKind: a batch above the next sequence (its
// predecessors may still arrive) is ErrSequenceGap, which is also an
// ErrOutOfOrderSequence; one behind it that is not a recent batch is only
// the latter. Neither writes anything.
func TestSequenceGapIsItsOwnKind(t *testing.T) {
	h, topic, pid := epochFixture(t)
	if r := h.apply(bumpBatch(topic, 0, pid, 0, 5, "x")); !errors.Is(r.Err(), ErrSequenceGap) || !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", r.Err())
	}
	if r := h.apply(bumpBatch(topic, 0, pid, 1, 3, "x")); !errors.Is(r.Err(), ErrSequenceGap) {
		t.Fatalf("new epoch above 0: %v", r.Err())
	}
	if r := h.apply(bumpBatch(topic, 0, pid, 0, 1, "x")); !errors.Is(r.Err(), ErrOutOfOrderSequence) || errors.Is(r.Err(), ErrSequenceGap) {
		t.Fatalf("behind: %v", r.Err())
	}
	if p, _ := h.f.Partition(topic, 0); p.NextOffset != 2 {
		t.Fatalf("next offset %d, want 2 (nothing written)", p.NextOffset)
	}
}
