package kafka

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceEpochBump: what kgo sends after a failed batch (KIP-360): the
// same producer id with epoch+1 and base sequence 0, without
// InitProducerId. It is accepted and readable; the old epoch is fenced
// afterwards (INVALID_PRODUCER_EPOCH), a retry of the bump batch is a
// duplicate, and a higher epoch that does not start at sequence 0 is
// OUT_OF_ORDER_SEQUENCE_NUMBER. (The FSM's rule itself is tested in fsm,
// TestEpochBumpBySequenceZero; the fake agent follows it.)
func TestProduceEpochBump(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("bump", 1)
	cl := e.client(t)
	ir, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctxT(t), cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ir)
	}
	pid, ep := ir.ProducerID, ir.ProducerEpoch
	if p := produceRaw(t, e, cl, "bump", rawBatch(pid, ep, 0, 2)); p.ErrorCode != 0 {
		t.Fatalf("first batch: %+v", p)
	}
	if p := produceRaw(t, e, cl, "bump", rawBatch(pid, ep+1, 5, 1)); p.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("higher epoch at sequence 5: code %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", p.ErrorCode)
	}
	bumped := produceRaw(t, e, cl, "bump", rawBatch(pid, ep+1, 0, 3))
	if bumped.ErrorCode != 0 || bumped.BaseOffset != 2 {
		t.Fatalf("epoch+1 at sequence 0: %+v", bumped)
	}
	if p := produceRaw(t, e, cl, "bump", rawBatch(pid, ep+1, 0, 3)); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("retry of the bump batch: %+v", p)
	}
	for _, seq := range []int32{0, 2} { // a retry of the first batch, the old epoch's next one
		if p := produceRaw(t, e, cl, "bump", rawBatch(pid, ep, seq, 2)); p.ErrorCode != kerr.InvalidProducerEpoch.Code {
			t.Fatalf("old epoch at sequence %d after the bump: code %d, want INVALID_PRODUCER_EPOCH", seq, p.ErrorCode)
		}
	}
	if p := produceRaw(t, e, cl, "bump", rawBatch(pid, ep+1, 3, 1)); p.ErrorCode != 0 || p.BaseOffset != 5 {
		t.Fatalf("next batch of the new epoch: %+v", p)
	}
	if got := consumeN(t, e, "bump", 6); len(got) != 6 {
		t.Fatalf("%d records, want 6 (2 + 3 + 1, nothing duplicated)", len(got))
	}
}

// TestKgoProducerContinuesAfterFailedBatch: a franz-go idempotent producer
// whose batch fails (delivery timeout while its partition has no leader)
// bumps its epoch locally; its next records must be acknowledged, not
// refused for ever with UNKNOWN_PRODUCER_ID.
func TestKgoProducerContinuesAfterFailedBatch(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("wedge", 2)
	cl := e.client(t, kgo.RecordDeliveryTimeout(time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMinAge(10*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	produce := func(part int32, v string) error {
		return cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "wedge", Partition: part, Value: []byte(v)}).FirstErr()
	}
	if err := produce(0, "a"); err != nil {
		t.Fatalf("first record: %v", err)
	}
	e.agent.mu.Lock()
	e.agent.leader["wedge/1"] = "gone"
	e.agent.mu.Unlock()
	if err := produce(1, "lost"); err == nil {
		t.Fatal("a record for a leaderless partition was acknowledged")
	}
	e.agent.mu.Lock()
	delete(e.agent.leader, "wedge/1")
	e.agent.mu.Unlock()
	for i, part := range []int32{0, 1, 0} {
		if err := produce(part, fmt.Sprint("after-", i)); err != nil {
			t.Fatalf("record %d after the failed batch: %v", i, err)
		}
	}
	if got := consumeN(t, e, "wedge", 3); len(got) != 3 {
		t.Fatalf("partition 0 holds %d records, want 3", len(got))
	}
}
