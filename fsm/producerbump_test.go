package fsm

import (
	"errors"
	"reflect"
	"testing"
)

// bumpBatch is an idempotent batch allowed to bump its producer's epoch
// (payload version 5), as the partition leader proposes it.
func bumpBatch(id uint64, part int32, pid uint64, epoch uint32, seq int64, vals ...string) *AppendBatch {
	b := idemBatch(id, part, pid, epoch, seq, vals...)
	b.EpochBump = true
	return b
}

// TestEpochBumpBySequenceZero: a batch of a higher epoch at sequence 0
// (what a Kafka producer sends after a failed batch, KIP-360) is appended
// and moves the producer to that epoch on every partition; a retry of it is
// a duplicate; batches of the old epoch — including a retry of one written
// before the bump — are fenced and never written; a higher epoch at another
// sequence, or without the version-5 flag, is refused.
func TestEpochBumpBySequenceZero(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 2, Leaders: []string{"n1", "n1"}}).TopicID
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	h.mustOK(idemBatch(id, 0, pid, 0, 0, "a"))
	h.mustOK(idemBatch(id, 1, pid, 0, 0, "x", "y"))

	if r := h.apply(idemBatch(id, 0, pid, 1, 0, "b")); !errors.Is(r.Err(), ErrUnknownProducer) {
		t.Fatalf("a higher epoch without EpochBump (payload < 5) = %+v, want unknown producer", r)
	}
	if r := h.apply(bumpBatch(id, 0, pid, 1, 5, "b")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("a higher epoch at sequence 5 = %+v, want out of order", r)
	}
	bumped := h.mustOK(bumpBatch(id, 0, pid, 1, 0, "b"))
	if bumped.BaseOffset != 1 || bumped.Duplicate {
		t.Fatalf("bump batch = %+v", bumped)
	}
	if p, _ := h.f.Producer(pid); p.Epoch != 1 {
		t.Fatalf("producer epoch after the bump = %d", p.Epoch)
	}
	if r := h.mustOK(bumpBatch(id, 0, pid, 1, 0, "b")); !r.Duplicate || r.BaseOffset != 1 {
		t.Fatalf("retry of the bump batch = %+v", r)
	}
	for _, old := range []*AppendBatch{
		idemBatch(id, 0, pid, 0, 0, "a"), // retry of a batch written before the bump
		idemBatch(id, 0, pid, 0, 1, "c"), // the old epoch's next batch
		idemBatch(id, 1, pid, 0, 2, "z"), // another partition
		bumpBatch(id, 1, pid, 0, 0, "z"), // the flag does not help an older epoch
	} {
		if r := h.apply(old); !errors.Is(r.Err(), ErrProducerFenced) {
			t.Fatalf("old-epoch batch after the bump = %+v, want fenced", r)
		}
	}
	// Every partition restarts at sequence 0 in the new epoch.
	if r := h.apply(idemBatch(id, 1, pid, 1, 2, "z")); !errors.Is(r.Err(), ErrOutOfOrderSequence) {
		t.Fatalf("partition 1 kept its old sequence: %+v", r)
	}
	h.mustOK(idemBatch(id, 1, pid, 1, 0, "z"))
	h.mustOK(idemBatch(id, 0, pid, 1, 1, "c"))
	if p0, _ := h.f.Partition(id, 0); p0.NextOffset != 3 {
		t.Fatalf("partition 0 next offset %d, want 3 (a, b, c)", p0.NextOffset)
	}
	if p1, _ := h.f.Partition(id, 1); p1.NextOffset != 3 {
		t.Fatalf("partition 1 next offset %d, want 3 (x, y, z)", p1.NextOffset)
	}
	// InitProducer goes on from the bumped epoch.
	if r := h.mustOK(&InitProducer{ProducerID: pid, Timestamp: 11}); r.ProducerEpoch != 2 {
		t.Fatalf("InitProducer after the bump = %+v", r)
	}
}

// TestEpochBumpChecksTheOwner: only the producer's owner may bump it; a
// refused bump changes nothing.
func TestEpochBumpChecksTheOwner(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	owned := h.mustOK(&InitProducer{Timestamp: 10, Owner: "tenant-a"}).ProducerID
	legacy := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	as := func(owner string, c *AppendBatch) *AppendBatch { c.ProducerOwner = owner; return c }
	h.mustOK(as("tenant-a", idemBatch(id, 0, owned, 0, 0, "a")))
	for _, c := range []*AppendBatch{
		as("tenant-b", bumpBatch(id, 0, owned, 1, 0, "b")),
		as("", bumpBatch(id, 0, owned, 1, 0, "b")),          // unchecked callers may not bump an owned producer
		as("tenant-b", bumpBatch(id, 0, legacy, 1, 0, "b")), // nor another key an unowned one
	} {
		if r := h.apply(c); !errors.Is(r.Err(), ErrProducerNotOwned) {
			t.Fatalf("bump by a caller that is not the owner = %+v", r)
		}
	}
	if p, _ := h.f.Producer(owned); p.Epoch != 0 {
		t.Fatalf("a refused bump moved the epoch to %d", p.Epoch)
	}
	h.mustOK(as("tenant-a", idemBatch(id, 0, owned, 0, 1, "c")))
	h.mustOK(as("tenant-a", bumpBatch(id, 0, owned, 1, 0, "d")))
}

// TestEpochBumpIsDeterministic: replaying the same log into a new FSM, and
// restoring a snapshot taken after the bump, give the same state; a bump
// refused because the partition's leader epoch moved does not bump.
func TestEpochBumpIsDeterministic(t *testing.T) {
	stale := bumpBatch(1, 0, 0, 1, 0, "b")
	stale.LeaderEpoch = 7
	run := func(h *harness) (uint64, []*Result) {
		id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
		pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
		stale.TopicID, stale.ProducerID = id, pid
		var out []*Result
		for _, c := range []Command{
			idemBatch(id, 0, pid, 0, 0, "a"),
			stale,
			bumpBatch(id, 0, pid, 1, 0, "b"),
			&AppendBatches{Batches: []*AppendBatch{
				bumpBatch(id, 0, pid, 3, 0, "c"), idemBatch(id, 0, pid, 1, 1, "late"), idemBatch(id, 0, pid, 3, 1, "d"),
			}},
		} {
			out = append(out, h.apply(c))
		}
		return pid, out
	}
	h := newHarness(t)
	pid, first := run(h)
	if !errors.Is(first[1].Err(), ErrStaleEpoch) {
		t.Fatalf("stale-leader bump = %+v", first[1])
	}
	if first[2].Err() != nil || first[3].Err() != nil {
		t.Fatalf("bumps refused: %+v %+v", first[2], first[3])
	}
	if p, _ := h.f.Producer(pid); p.Epoch != 3 {
		t.Fatalf("epoch %d, want 3", p.Epoch)
	}
	replay := newHarness(t)
	if _, again := run(replay); !reflect.DeepEqual(first, again) {
		t.Fatalf("replay results differ:\n%+v\n%+v", first, again)
	}
	if !reflect.DeepEqual(encodeState(h.f.state, snapshotVersion), encodeState(replay.f.state, snapshotVersion)) {
		t.Fatal("replayed state differs")
	}
	r := snapshotRoundTrip(t, h)
	if p, _ := r.f.Producer(pid); p.Epoch != 3 {
		t.Fatalf("restored epoch %d, want 3", p.Epoch)
	}
	if res := r.apply(idemBatch(1, 0, pid, 1, 2, "e")); !errors.Is(res.Err(), ErrProducerFenced) {
		t.Fatalf("restored FSM took an old epoch: %+v", res)
	}
	if res := r.apply(idemBatch(1, 0, pid, 3, 1, "d")); !res.Duplicate {
		t.Fatalf("restored FSM lost the new epoch's sequences: %+v", res)
	}
}

// TestAppendBatchVersion5Encoding: only a bump batch is written in version
// 5, it round-trips, and a version 5 payload without the flag is refused.
func TestAppendBatchVersion5Encoding(t *testing.T) {
	plain := idemBatch(1, 0, 9, 0, 0, "a")
	if plain.version() != 2 {
		t.Fatalf("plain idempotent batch version %d", plain.version())
	}
	b := bumpBatch(1, 0, 9, 2, 0, "a")
	if b.version() != 5 {
		t.Fatalf("bump batch version %d", b.version())
	}
	got, err := Decode(Encode(b))
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	data := Encode(b)
	data[len(data)-1] = 0
	if _, err := Decode(data); !errors.Is(err, ErrDecode) {
		t.Fatalf("v5 without the flag decoded: %v", err)
	}
}
