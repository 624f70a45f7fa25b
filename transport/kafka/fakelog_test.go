package kafka

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// fakeLog is an in-memory partition log behind the fake agent: produce,
// long-poll fetch, idempotent sequences and timestamp lookups, enough to
// drive franz-go against the broker.
type fakeLog struct {
	parts map[string][]fsm.FetchedRecord // "topic/partition"
	low   map[string]int64
	wake  chan struct{}
	// Idempotent producers are decided by a real state machine (seqFSM),
	// so these tests exercise the FSM's rules, not a copy of them.
	seq       *fsm.FSM
	seqIndex  uint64                     // its last Raft index
	seqTopics map[string]uint64          // topic -> its topic ID there
	seqOffs   map[string]map[int64]int64 // "topic/partition" -> its base offset -> ours
}

func pkey(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

func (f *fakeAgent) initLog() {
	if f.log.parts == nil {
		f.log = fakeLog{parts: map[string][]fsm.FetchedRecord{}, low: map[string]int64{}, wake: make(chan struct{}),
			seq: fsm.New(nil), seqTopics: map[string]uint64{}, seqOffs: map[string]map[int64]int64{}}
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

func (f *fakeAgent) InitProducer(_ context.Context, id uint64, owner string) (fsm.ProducerIdentity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLog()
	res := f.seqApplyLocked(&fsm.InitProducer{ProducerID: id, Timestamp: 1, Owner: owner})
	if err := res.Err(); err != nil {
		return fsm.ProducerIdentity{}, err
	}
	return fsm.ProducerIdentity{ID: res.ProducerID, Epoch: res.ProducerEpoch}, nil
}

// seqApplyLocked applies cmd to the producers' state machine; f.mu held.
func (f *fakeAgent) seqApplyLocked(cmd fsm.Command) *fsm.Result {
	f.log.seqIndex++
	return f.log.seq.Apply(&raft.Log{Index: f.log.seqIndex, Type: raft.LogCommand, Data: fsm.Encode(cmd)}).(*fsm.Result)
}

// seqTopicLocked is topic's ID in the producers' state machine, created
// with the topic's partitions on first use; f.mu held.
func (f *fakeAgent) seqTopicLocked(topic string) uint64 {
	if id, ok := f.log.seqTopics[topic]; ok {
		return id
	}
	n := f.topics[topic].Partitions
	leaders := make([]string, n)
	for i := range leaders {
		leaders[i] = f.nodeID // at leader epoch 1
	}
	res := f.seqApplyLocked(&fsm.CreateTopic{Name: topic, Partitions: n, Leaders: leaders})
	f.log.seqTopics[topic] = res.TopicID
	return res.TopicID
}

// seqBatchLocked asks the producers' state machine about an idempotent
// batch (an AppendBatch as a partition leader of this version proposes it;
// Count is the batch's length unless count is set); f.mu held.
func (f *fakeAgent) seqBatchLocked(b fsm.IdempotentBatch, count int32) *fsm.Result {
	if count == 0 {
		count = int32(len(b.Records))
	}
	return f.seqApplyLocked(&fsm.AppendBatch{TopicID: f.seqTopicLocked(b.Topic), Partition: b.Partition, LeaderEpoch: 1,
		Timestamp: 1, Count: count, Records: []byte{0}, ProducerID: b.Producer.ID, ProducerEpoch: b.Producer.Epoch,
		BaseSequence: b.BaseSeq, ProducerOwner: b.Owner, AllowEpochBump: true})
}

// ProduceIdempotent lets the state machine decide (sequence, epoch,
// duplicate) and appends what it accepts.
func (f *fakeAgent) ProduceIdempotent(_ context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLog()
	if err := f.checkPartition(b.Topic, b.Partition); err != nil {
		return fsm.IdempotentResult{}, err
	}
	res := f.seqBatchLocked(b, 0)
	if err := res.Err(); err != nil {
		return fsm.IdempotentResult{}, err
	}
	k := pkey(b.Topic, b.Partition)
	if res.Duplicate {
		return fsm.IdempotentResult{BaseOffset: f.log.seqOffs[k][res.BaseOffset], Count: res.Count, Duplicate: true}, nil
	}
	base := f.appendLocked(b.Topic, b.Partition, b.Records)
	if f.log.seqOffs[k] == nil {
		f.log.seqOffs[k] = map[int64]int64{}
	}
	f.log.seqOffs[k][res.BaseOffset] = base
	return fsm.IdempotentResult{BaseOffset: base, Count: res.Count}, nil
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
			got = withinBytes(got, req.MaxBytes)
			n = len(got)
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

// withinBytes cuts recs at maxBytes of record sizes (at least one record),
// as partition.Fetcher does.
func withinBytes(recs []fsm.FetchedRecord, maxBytes int) []fsm.FetchedRecord {
	bytes := 0
	for i, r := range recs {
		if maxBytes > 0 && i > 0 && bytes+r.Size() > maxBytes {
			return recs[:i]
		}
		bytes += r.Size()
	}
	return recs
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
