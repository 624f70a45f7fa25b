package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestInitProducerChecksTheOwner: a producer records who created it; only
// the same owner may bump its epoch (fencing its session). Others, and
// callers without an owner, get ErrProducerNotOwned and change nothing.
func TestInitProducerChecksTheOwner(t *testing.T) {
	h := newHarness(t)
	pid := h.mustOK(&InitProducer{Timestamp: 10, Owner: "tenant-a"}).ProducerID
	for _, other := range []string{"tenant-b", ""} {
		r := h.apply(&InitProducer{ProducerID: pid, Timestamp: 11, Owner: other})
		if !errors.Is(r.Err(), ErrProducerNotOwned) {
			t.Fatalf("owner %q bumping tenant-a's producer: %+v", other, r)
		}
	}
	if id, _ := h.f.Producer(pid); id.Epoch != 0 {
		t.Fatalf("a refused bump changed the epoch to %d", id.Epoch)
	}
	if r := h.mustOK(&InitProducer{ProducerID: pid, Timestamp: 12, Owner: "tenant-a"}); r.ProducerEpoch != 1 {
		t.Fatalf("owner bump = %+v", r)
	}
	// A producer created without an owner (no API keys) stays bumpable
	// only without one.
	anon := h.mustOK(&InitProducer{Timestamp: 13}).ProducerID
	if r := h.apply(&InitProducer{ProducerID: anon, Timestamp: 14, Owner: "tenant-a"}); !errors.Is(r.Err(), ErrProducerNotOwned) {
		t.Fatalf("a key bumping an unowned producer: %+v", r)
	}
	h.mustOK(&InitProducer{ProducerID: anon, Timestamp: 15})
}

// TestInitProducerEncoding: each command is written in the lowest version
// that holds it — 1 while the cluster clock has not started, 2 without an
// owner, 3 with one (and its expiry flag); version 3 must not carry an empty
// owner.
func TestInitProducerEncoding(t *testing.T) {
	cases := []struct {
		cmd     InitProducer
		version byte
	}{
		{InitProducer{ProducerID: 3, Timestamp: 4, ExpireByTimestamp: true}, 1},
		{InitProducer{ProducerID: 3, Timestamp: 4}, 2},
		{InitProducer{ProducerID: 3, Timestamp: 4, Owner: "k"}, 3},
		{InitProducer{ProducerID: 3, Timestamp: 4, Owner: "k", ExpireByTimestamp: true}, 3},
	}
	for _, c := range cases {
		b := Encode(&c.cmd)
		if b[1] != c.version {
			t.Fatalf("%+v encoded as version %d, want %d", c.cmd, b[1], c.version)
		}
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, &c.cmd) {
			t.Fatalf("%+v decoded as %+v, %v", c.cmd, got, err)
		}
	}
	empty := append(Encode(&InitProducer{ProducerID: 3, Timestamp: 4}), 0, 0) // empty owner + flags
	empty[1] = 3
	if _, err := Decode(empty); !errors.Is(err, ErrDecode) {
		t.Fatalf("version 3 with an empty owner decoded: %v", err)
	}
}

// TestSnapshotCarriesProducerOwners: a snapshot and an image round trip
// keep owners, so a restored agent refuses the same bumps.
func TestSnapshotCarriesProducerOwners(t *testing.T) {
	h := newHarness(t)
	owned := h.mustOK(&InitProducer{Timestamp: 10, Owner: "tenant-a"}).ProducerID
	anon := h.mustOK(&InitProducer{Timestamp: 11}).ProducerID
	for _, h2 := range []*harness{snapshotRoundTrip(t, h), imageRoundTrip(t, h)} {
		if r := h2.apply(&InitProducer{ProducerID: owned, Timestamp: 12, Owner: "tenant-b"}); !errors.Is(r.Err(), ErrProducerNotOwned) {
			t.Fatalf("restored FSM let another key bump the producer: %+v", r)
		}
		h2.mustOK(&InitProducer{ProducerID: owned, Timestamp: 13, Owner: "tenant-a"})
		h2.mustOK(&InitProducer{ProducerID: anon, Timestamp: 14})
	}
}

// imageRoundTrip restores h's Image (what pgsync checkpoints) into a new
// FSM, as a DR restore does.
func imageRoundTrip(t *testing.T, h *harness) *harness {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteImageSnapshot(&buf, h.f.Image()); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	return h2
}

// TestRestoreReadsVersion2Snapshots: a state without producer owners is
// still written as "SHSNAP02" (what agents of the previous version read),
// and such a stream restores; its producers have no owner. With an owner,
// the stream is "SHSNAP03".
func TestSnapshotVersionFollowsOwners(t *testing.T) {
	h := newHarness(t)
	pid := h.mustOK(&InitProducer{Timestamp: 10}).ProducerID
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	if magic := buf.String()[:len(snapshotMagicV2)]; magic != snapshotMagicV2 {
		t.Fatalf("a state without owners was written as %q", magic)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if r := h2.mustOK(&InitProducer{ProducerID: pid, Timestamp: 11}); r.ProducerEpoch != 1 {
		t.Fatalf("v2 producer bump = %+v", r)
	}
	h.mustOK(&InitProducer{Timestamp: 12, Owner: "tenant-a"})
	buf.Reset()
	if err := writeSnapshot(&buf, h.f.state, nil); err != nil {
		t.Fatal(err)
	}
	if magic := buf.String()[:len(snapshotMagicV3)]; magic != snapshotMagicV3 {
		t.Fatalf("a state with an owner was written as %q", magic)
	}
}

// TestIdempotentAppendChecksTheOwner: a batch that names its caller's key
// is refused when the producer belongs to another key, before the sequence
// check (so it neither moves the owner's sequences nor learns the offsets
// of the owner's batches). Batches without a key (no API keys) and
// producers without an owner (created before owners existed) are not
// checked.
func TestIdempotentAppendChecksTheOwner(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	owned := h.mustOK(&InitProducer{Timestamp: 10, Owner: "tenant-a"}).ProducerID
	as := func(owner string, c *AppendBatch) *AppendBatch { c.ProducerOwner = owner; return c }

	first := h.mustOK(as("tenant-a", idemBatch(id, 0, owned, 0, 0, "a")))
	for _, c := range []*AppendBatch{
		as("tenant-b", idemBatch(id, 0, owned, 0, 0, "a")), // a "retry" of the owner's batch
		as("tenant-b", idemBatch(id, 0, owned, 0, 1, "b")), // the next sequence
	} {
		if r := h.apply(c); !errors.Is(r.Err(), ErrProducerNotOwned) {
			t.Fatalf("another key's batch under tenant-a's producer: %+v", r)
		}
	}
	if r := h.mustOK(as("tenant-a", idemBatch(id, 0, owned, 0, 1, "b"))); r.BaseOffset != first.BaseOffset+1 {
		t.Fatalf("the owner's next batch = %+v (the refused ones must not have moved its sequence)", r)
	}
	h.mustOK(idemBatch(id, 0, owned, 0, 2, "c")) // no key: unchecked
	legacy := h.mustOK(&InitProducer{Timestamp: 11}).ProducerID
	h.mustOK(as("tenant-b", idemBatch(id, 0, legacy, 0, 0, "d")))
}
