package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Idempotent produce. A batch from an idempotent producer stays its own
// AppendBatch carrying the producer id, epoch and base sequence, so the
// FSM can check the sequence atomically with the append (DESIGN.md
// invariant 3): a retried batch returns its original offsets. Such batches
// bypass the per-partition batcher — the client batches already, and
// merging two producers' batches would lose the per-batch sequence check —
// but go through the coalescer like every batch: an AppendBatches entry
// applies its batches one after the other exactly as separate entries
// would, each with its own sequence check and result.

// InitProducer issues a new producer id (id 0) owned by owner, or bumps the
// epoch of an existing one, fencing its previous session; the FSM refuses
// the bump (fsm.ErrProducerNotOwned) unless owner created it. owner is the
// caller's API key name ("" without API keys).
func (p *Producer) InitProducer(ctx context.Context, id uint64, owner string) (fsm.ProducerIdentity, error) {
	// Until the cluster clock starts, agents of an older version may be
	// members: write the payload they know (fsm.FeatureLevel).
	cmd := &fsm.InitProducer{ProducerID: id, Timestamp: p.now(), ExpireByTimestamp: p.meta.Clock() == 0, Owner: owner}
	res, err := p.proposer.Propose(ctx, fsm.Encode(cmd))
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fsm.ProducerIdentity{}, err
	}
	return fsm.ProducerIdentity{ID: res.ProducerID, Epoch: res.ProducerEpoch}, nil
}

// ProduceIdempotent appends an idempotent batch to its partition, forwarding
// it to the partition leader when another agent leads it.
func (p *Producer) ProduceIdempotent(ctx context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	return p.produceIdempotent(ctx, b, true)
}

// ProduceIdempotentLocal is the receiving side of a forwarded idempotent
// batch: it never forwards again.
func (p *Producer) ProduceIdempotentLocal(ctx context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	return p.produceIdempotent(ctx, b, false)
}

func (p *Producer) produceIdempotent(ctx context.Context, b fsm.IdempotentBatch, forward bool) (fsm.IdempotentResult, error) {
	start := time.Now()
	if len(b.Records) == 0 {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: no records", fsm.ErrInvalidArgument)
	}
	if b.Producer.ID == 0 {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: producer id 0 is not an idempotent producer", fsm.ErrInvalidArgument)
	}
	if b.BaseSeq < 0 {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: negative sequence number", fsm.ErrInvalidArgument)
	}
	if err := p.checkRequestSize(len(b.Records)); err != nil {
		return fsm.IdempotentResult{}, err
	}
	t, err := lookupTopicFor(ctx, p.meta, p.sync, b.Topic, b.Partition)
	if err != nil {
		return fsm.IdempotentResult{}, err
	}
	if b.Partition < 0 || b.Partition >= t.Partitions {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrInvalidArgument, b.Partition, b.Topic, t.Partitions)
	}
	now := p.now()
	for i := range b.Records {
		if err := p.checkRecord(t, i, &b.Records[i], now); err != nil {
			return fsm.IdempotentResult{}, err
		}
	}
	info, ok := p.meta.Partition(t.ID, b.Partition)
	if !ok {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, b.Topic)
	}
	if err := p.admit(); err != nil {
		return fsm.IdempotentResult{}, err
	}
	if info.Leader != p.nodeID {
		if !forward || p.fwd == nil || info.Leader == "" {
			return fsm.IdempotentResult{}, fmt.Errorf("%w: %w: partition %d of %q is led by %q", fsm.ErrUnavailable, fsm.ErrNotLeader, b.Partition, b.Topic, info.Leader)
		}
		res, err := p.fwd.ForwardIdempotent(ctx, info.Leader, b)
		if err == nil {
			p.metrics.Produced.Add(float64(res.Count))
		}
		return res, err
	}
	if err := p.admitBacklog(); err != nil {
		return fsm.IdempotentResult{}, err
	}
	res, err := p.appendIdempotent(ctx, &fsm.AppendBatch{
		TopicID: t.ID, Partition: b.Partition, LeaderEpoch: info.LeaderEpoch, Timestamp: now,
		Count: int32(len(b.Records)), Records: fsm.AppendRecords(nil, b.Records),
		ProducerID: b.Producer.ID, ProducerEpoch: b.Producer.Epoch, BaseSequence: b.BaseSeq, ProducerOwner: b.Owner,
		MaxUnflushed: p.cfg.MaxUnflushedRecords,
		// A client's local epoch bump (KIP-360) is accepted per partition
		// once every member applies it (fsm/DESIGN.md).
		AllowEpochBump: p.levels.MembersAt(fsm.FeatureEpochBump),
	})
	if err != nil {
		return fsm.IdempotentResult{}, err
	}
	if !res.Duplicate {
		p.metrics.Produced.Add(float64(res.Count))
		p.metrics.BatchRecords.Observe(float64(res.Count))
	}
	p.metrics.ProduceLatency.Observe(time.Since(start).Seconds())
	return fsm.IdempotentResult{BaseOffset: res.BaseOffset, Count: res.Count, Duplicate: res.Duplicate}, nil
}

// appendIdempotent sequences one idempotent batch, behind the producer's
// batches of the partition still on their way (seqGate), and waits for its
// own result.
func (p *Producer) appendIdempotent(ctx context.Context, b *fsm.AppendBatch) (*fsm.Result, error) {
	k := seqKey{producer: b.ProducerID, epoch: b.ProducerEpoch, part: fsm.PartitionKey{TopicID: b.TopicID, Partition: b.Partition}}
	p.gate.wait(ctx, k, b.BaseSequence)
	call, err := p.seq.Sequence(ctx, b)
	if err != nil {
		return nil, err
	}
	p.gate.queued(k, b.BaseSequence, b.Count, p.clock())
	res, err := call.wait(ctx)
	if err != nil {
		return nil, err
	}
	if err := appendErr(res); err != nil {
		return nil, err
	}
	return res, nil
}
