package partition

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestIdempotentLocalEpochBump: a client that bumps its epoch locally
// (KIP-360) is accepted per partition once every member applies
// fsm.FeatureEpochBump: the new epoch at sequence 0 on partition 0, a retry
// of an old-epoch batch on partition 1 answered with its original offsets.
// While a member is below that level the bump is refused as before.
func TestIdempotentLocalEpochBump(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 2)
	id, err := e.prod.InitProducer(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	produce := func(part int32, epoch uint32, seq int64, vals ...string) (fsm.IdempotentResult, error) {
		var rs []fsm.Record
		for _, v := range vals {
			rs = append(rs, fsm.Record{Value: []byte(v)})
		}
		return e.prod.ProduceIdempotent(ctx, fsm.IdempotentBatch{Topic: "t", Partition: part,
			Producer: fsm.ProducerIdentity{ID: id.ID, Epoch: epoch}, BaseSeq: seq, Records: rs})
	}
	for part := int32(0); part < 2; part++ {
		if _, err := produce(part, 0, 0, "a", "b"); err != nil {
			t.Fatal(err)
		}
	}
	e.node.level = fsm.FeatureEpochBump - 1 // a member of the previous version
	if _, err := produce(0, 1, 0, "c"); !errors.Is(err, fsm.ErrUnknownProducer) {
		t.Fatalf("bump while a member is older: %v, want ErrUnknownProducer", err)
	}
	e.node.level = fsm.FeatureEpochBump
	if r, err := produce(0, 1, 0, "c"); err != nil || r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("epoch 1 seq 0 on partition 0: %+v, %v", r, err)
	}
	if r, err := produce(1, 0, 0, "a", "b"); err != nil || !r.Duplicate || r.BaseOffset != 0 {
		t.Fatalf("epoch 0 retry on partition 1: %+v, %v (want the duplicate at 0)", r, err)
	}
	if _, err := produce(0, 0, 2, "d"); !errors.Is(err, fsm.ErrProducerFenced) {
		t.Fatalf("epoch 0 on the bumped partition: %v, want fenced", err)
	}
	if _, err := produce(1, 1, 3, "d"); !errors.Is(err, fsm.ErrOutOfOrderSequence) {
		t.Fatalf("epoch 1 seq 3 on partition 1: %v, want out of order", err)
	}
	if r, err := produce(1, 1, 0, "d"); err != nil || r.BaseOffset != 2 {
		t.Fatalf("epoch 1 seq 0 on partition 1: %+v, %v", r, err)
	}
}

// TestSeqGatePassesANewEpochAtOnce: the first batch of a new epoch
// (sequence 0) never waits behind the old epoch's batches, and the new
// epoch's own batches are ordered among themselves.
func TestSeqGatePassesANewEpochAtOnce(t *testing.T) {
	g := newSeqGate(time.Hour) // a wait would last until ctx ends
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := seqKey{producer: 7, epoch: 1, part: fsm.PartitionKey{TopicID: 1, Partition: 2}}
	bumped := old
	bumped.epoch = 2
	now := time.Unix(1000, 0)
	g.queued(old, 0, 5, now)
	g.queued(old, 5, 5, now)
	g.wait(ctx, bumped, 0)
	g.queued(bumped, 0, 3, now)
	g.wait(ctx, bumped, 3)
	g.wait(ctx, old, 10) // the old epoch's next batch is unaffected
	if ctx.Err() != nil {
		t.Fatal("a batch waited at the gate for a predecessor it does not have")
	}
}
