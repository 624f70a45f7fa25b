package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// fakeLog is an in-memory partition log behind the fake agent: produce,
// long-poll fetch, idempotent sequences and timestamp lookups, enough to
// drive franz-go against the broker.
type fakeLog struct {
	parts     map[string][]fsm.FetchedRecord // "topic/partition"
	low       map[string]int64
	wake      chan struct{}
	producers map[uint64]uint32              // id -> epoch
	seqs      map[string][]fsm.ProducerBatch // "id/topic/partition"
	nextPID   uint64
}

func pkey(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

func (f *fakeAgent) initLog() {
	if f.log.parts == nil {
		f.log = fakeLog{parts: map[string][]fsm.FetchedRecord{}, low: map[string]int64{}, wake: make(chan struct{}),
			producers: map[uint64]uint32{}, seqs: map[string][]fsm.ProducerBatch{}}
	}
}

// appendLocked appends records to a partition; f.mu held.
func (f *fakeAgent) appendLocked(topic string, p int32, recs []fsm.Record) int64 {
	f.initLog()
	k := pkey(topic, p)
	base := f.log.low[k] + int64(len(f.log.parts[k]))
	for i, r := range recs {
		if r.Timestamp == 0 {
			r.Timestamp = time.Now().UnixMilli()
		}
		f.log.parts[k] = append(f.log.parts[k], fsm.FetchedRecord{Partition: p, Offset: base + int64(i), Record: r})
	}
	close(f.log.wake)
	f.log.wake = make(chan struct{})
	return base
}

func (f *fakeAgent) checkPartition(topic string, p int32) error {
	t, ok := f.topics[topic]
	if !ok {
		return fsm.ErrTopicNotFound
	}
	if p < 0 || p >= t.Partitions {
		return fsm.ErrPartitionInvalid
	}
	return nil
}

func (f *fakeAgent) Produce(_ context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fsm.RecordOffset, len(recs))
	for i, r := range recs {
		if err := f.checkPartition(topic, r.Partition); err != nil {
			return nil, err
		}
		out[i] = fsm.RecordOffset{Partition: r.Partition, Offset: f.appendLocked(topic, r.Partition, []fsm.Record{r.Record})}
	}
	return out, nil
}

func (f *fakeAgent) InitProducer(_ context.Context, id uint64, _ string) (fsm.ProducerIdentity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLog()
	if id == 0 {
		f.log.nextPID++
		f.log.producers[f.log.nextPID] = 0
		return fsm.ProducerIdentity{ID: f.log.nextPID}, nil
	}
	e, ok := f.log.producers[id]
	if !ok {
		return fsm.ProducerIdentity{}, fsm.ErrUnknownProducer
	}
	f.log.producers[id] = e + 1
	return fsm.ProducerIdentity{ID: id, Epoch: e + 1}, nil
}

// ProduceIdempotent follows the FSM's rules (fsm checkSequence).
func (f *fakeAgent) ProduceIdempotent(_ context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLog()
	if err := f.checkPartition(b.Topic, b.Partition); err != nil {
		return fsm.IdempotentResult{}, err
	}
	e, ok := f.log.producers[b.Producer.ID]
	switch {
	case !ok || b.Producer.Epoch > e:
		return fsm.IdempotentResult{}, fsm.ErrUnknownProducer
	case b.Producer.Epoch < e:
		return fsm.IdempotentResult{}, fsm.ErrProducerFenced
	}
	k := fmt.Sprintf("%d/%s", b.Producer.ID, pkey(b.Topic, b.Partition))
	recent := f.log.seqs[k]
	for _, r := range recent {
		if r.BaseSeq == b.BaseSeq && r.Count == int32(len(b.Records)) {
			return fsm.IdempotentResult{BaseOffset: r.BaseOffset, Count: r.Count, Duplicate: true}, nil
		}
	}
	var next int64
	if n := len(recent); n > 0 {
		next = recent[n-1].BaseSeq + int64(recent[n-1].Count)
	}
	if b.BaseSeq != next {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: sequence %d, expected %d", fsm.ErrOutOfOrderSequence, b.BaseSeq, next)
	}
	base := f.appendLocked(b.Topic, b.Partition, b.Records)
	f.log.seqs[k] = append(recent, fsm.ProducerBatch{BaseSeq: b.BaseSeq, Count: int32(len(b.Records)), BaseOffset: base})
	return fsm.IdempotentResult{BaseOffset: base, Count: int32(len(b.Records))}, nil
}

func (f *fakeAgent) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	deadline := time.After(time.Duration(req.WaitMs) * time.Millisecond)
	for {
		f.mu.Lock()
		f.initLog()
		if err := f.checkPartition(req.Topic, req.Partition); err != nil {
			f.mu.Unlock()
			return fsm.FetchResult{}, err
		}
		k := pkey(req.Topic, req.Partition)
		low, recs, wake := f.log.low[k], f.log.parts[k], f.log.wake
		f.mu.Unlock()
		high := low + int64(len(recs))
		if req.Offset < low || req.Offset > high {
			return fsm.FetchResult{}, &fsm.OffsetOutOfRangeError{Requested: req.Offset, LowWatermark: low, HighWatermark: high}
		}
		if req.Offset < high || req.WaitMs == 0 {
			n := min(int(high-req.Offset), max(req.MaxRecords, 1000))
			if req.MaxRecords > 0 {
				n = min(n, req.MaxRecords)
			}
			got := recs[req.Offset-low : req.Offset-low+int64(n)]
			return fsm.FetchResult{Records: got, NextOffset: req.Offset + int64(n), HighWatermark: high, LowWatermark: low}, nil
		}
		select {
		case <-wake:
		case <-deadline:
			req.WaitMs = 0
		case <-ctx.Done():
			return fsm.FetchResult{}, ctx.Err()
		}
	}
}

// OffsetForTimestamp scans the partition.
func (f *fakeAgent) OffsetForTimestamp(_ context.Context, topic string, p int32, ts int64) (fsm.TimestampOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLog()
	if err := f.checkPartition(topic, p); err != nil {
		return fsm.TimestampOffset{}, err
	}
	k := pkey(topic, p)
	low, recs := f.log.low[k], f.log.parts[k]
	out := fsm.TimestampOffset{Offset: low + int64(len(recs)), LowWatermark: low, HighWatermark: low + int64(len(recs))}
	for _, r := range recs {
		if r.Timestamp >= ts {
			out.Offset = r.Offset
			break
		}
	}
	return out, nil
}
