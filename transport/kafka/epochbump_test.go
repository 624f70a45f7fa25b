package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceRawTo is produceRaw to one partition.
func produceRawTo(t *testing.T, e *env, cl *kgo.Client, topic string, part int32, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	if tp, err := e.agent.Topic(topic); err == nil {
		rt.TopicID = TopicID(tp.ID)
	}
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = part, batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}

// TestIdempotentLocalEpochBump reproduces franz-go's KIP-360 local epoch
// bump with raw Produce requests: after a failed batch the client moves to
// epoch E+1 without InitProducerId; partition 0 restarts at sequence 0
// under E+1 while a batch of partition 1 sent under E is retried as it was.
// The retry must be answered as the duplicate it is (its original offset,
// not written again), and both partitions continue under E+1.
func TestIdempotentLocalEpochBump(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("bump", 2)
	cl := e.client(t)
	ir, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctxT(t), cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ir)
	}
	pid, ep := ir.ProducerID, ir.ProducerEpoch
	ok := func(what string, r kmsg.ProduceResponseTopicPartition, base int64) {
		t.Helper()
		if r.ErrorCode != 0 || r.BaseOffset != base {
			t.Fatalf("%s: error %v, base offset %d (want %d)", what, kerr.ErrorForCode(r.ErrorCode), r.BaseOffset, base)
		}
	}
	ok("epoch E seq 0 on partition 0", produceRawTo(t, e, cl, "bump", 0, rawBatch(pid, ep, 0, 2)), 0)
	ok("epoch E seq 0 on partition 1", produceRawTo(t, e, cl, "bump", 1, rawBatch(pid, ep, 0, 2)), 0)
	ok("epoch E+1 seq 0 on partition 0", produceRawTo(t, e, cl, "bump", 0, rawBatch(pid, ep+1, 0, 1)), 2)
	ok("retry of epoch E seq 0 on partition 1", produceRawTo(t, e, cl, "bump", 1, rawBatch(pid, ep, 0, 2)), 0)
	ok("epoch E+1 seq 0 on partition 1", produceRawTo(t, e, cl, "bump", 1, rawBatch(pid, ep+1, 0, 3)), 2)
	ok("epoch E+1 seq 1 on partition 0", produceRawTo(t, e, cl, "bump", 0, rawBatch(pid, ep+1, 1, 1)), 3)
	for _, c := range []struct {
		what  string
		part  int32
		epoch int16
		seq   int32
		want  *kerr.Error
	}{
		{"epoch E after the bump", 0, ep, 2, kerr.InvalidProducerEpoch},
		// A gap may be filled by a predecessor still in flight (sequence
		// gaps below): retriable, so the client resends the batch as it is
		// instead of renumbering it under a new epoch.
		{"epoch E+2 at sequence 5", 1, ep + 2, 5, kerr.NotEnoughReplicas},
		{"epoch E+1 with a gap", 1, ep + 1, 9, kerr.NotEnoughReplicas},
	} {
		if r := produceRawTo(t, e, cl, "bump", c.part, rawBatch(pid, c.epoch, c.seq, 1)); r.ErrorCode != c.want.Code {
			t.Fatalf("%s: %v, want %v", c.what, kerr.ErrorForCode(r.ErrorCode), c.want)
		}
	}
	// Behind the next sequence and not one of the recent batches: read as
	// the next wrap of the int32 sequence it is a gap (batches after a
	// wrap may arrive out of order), so it is answered as one; a client
	// that keeps at most 5 batches in flight never sends such a batch
	// otherwise. Nothing is written either way.
	if r := produceRawTo(t, e, cl, "bump", 0, rawBatch(pid, ep+1, 0, 2)); r.ErrorCode != kerr.NotEnoughReplicas.Code {
		t.Fatalf("epoch E+1 behind, not a recent batch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// InitProducerId naming the producer moves past every partition's
	// epoch and fences them all.
	init := kmsg.NewPtrInitProducerIDRequest()
	init.ProducerID, init.ProducerEpoch, init.Version = pid, ep+1, 4
	if ir, err = init.RequestWith(ctxT(t), cl); err != nil || ir.ErrorCode != 0 || ir.ProducerID != pid || ir.ProducerEpoch != ep+2 {
		t.Fatalf("InitProducerId after local bumps: %v %+v, want epoch %d", err, ir, ep+2)
	}
	for part := int32(0); part < 2; part++ {
		if r := produceRawTo(t, e, cl, "bump", part, rawBatch(pid, ep+1, 5, 1)); r.ErrorCode != kerr.InvalidProducerEpoch.Code {
			t.Fatalf("epoch E+1 on partition %d after InitProducerId: %v", part, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	e.agent.mu.Lock()
	defer e.agent.mu.Unlock()
	for part, want := range []int{4, 5} {
		if got := len(e.agent.log.parts[pkey("bump", int32(part))]); got != want {
			t.Errorf("partition %d holds %d records, want %d (each batch once)", part, got, want)
		}
	}
}

// TestIdempotentSequenceGapIsRetriable: a batch whose predecessor has not
// arrived (it may still be in flight, e.g. on a connection the client gave
// up on) is refused without writing and with a retriable code, as Kafka's
// Java client treats an out-of-order answer to a batch that is not the next
// one. franz-go answers OUT_OF_ORDER_SEQUENCE_NUMBER by bumping its epoch
// and renumbering the batch, which would write it twice once the stale copy
// landed too. When the predecessor arrives, the resent batch is written
// once.
func TestIdempotentSequenceGapIsRetriable(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("gap", 1)
	cl := e.client(t)
	ir, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctxT(t), cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ir)
	}
	pid, ep := ir.ProducerID, ir.ProducerEpoch
	if r := produceRawTo(t, e, cl, "gap", 0, rawBatch(pid, ep, 3, 2)); r.ErrorCode != kerr.NotEnoughReplicas.Code {
		t.Fatalf("batch at 3 before 0..2: %v, want NOT_ENOUGH_REPLICAS", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := produceRawTo(t, e, cl, "gap", 0, rawBatch(pid, ep, 0, 3)); r.ErrorCode != 0 || r.BaseOffset != 0 {
		t.Fatalf("the predecessor: %v at %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
	if r := produceRawTo(t, e, cl, "gap", 0, rawBatch(pid, ep, 3, 2)); r.ErrorCode != 0 || r.BaseOffset != 3 {
		t.Fatalf("the resent batch: %v at %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
	e.agent.mu.Lock()
	defer e.agent.mu.Unlock()
	if got := len(e.agent.log.parts[pkey("gap", 0)]); got != 5 {
		t.Fatalf("partition holds %d records, want 5", got)
	}
}
