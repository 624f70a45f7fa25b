package transport

import (
	"context"
	"fmt"
	"sync"

	"github.com/streamhouse/streamhouse/fsm"
)

// fakeAgent implements Topics, Producer, Fetcher and Readiness in memory.
// Records produced with Partition -1 go to partition 0. Hooks override
// behaviour for error and concurrency tests.
type fakeAgent struct {
	mu     sync.Mutex
	topics map[string]fsm.Topic
	logs   map[string]map[int32][]fsm.FetchedRecord
	low    map[string]map[int32]int64 // low watermarks (retention)
	nextID uint64

	ready       bool
	readyReason string

	createErr  error
	deleteErr  error
	produceErr error
	fetchErr   error
	panicList  bool
	panicWrite bool // CreateTopic and Produce panic
	fetchHook  func(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error)

	lastCreate  createCall
	lastProduce []fsm.ProduceRecord
	fetches     []fsm.FetchRequest
}

type createCall struct {
	name       string
	partitions int32
	cfg        fsm.TopicConfig
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{
		topics: map[string]fsm.Topic{},
		logs:   map[string]map[int32][]fsm.FetchedRecord{},
		low:    map[string]map[int32]int64{},
		ready:  true,
	}
}

const fakeCreatedAt = 1700000000123 // 2023-11-14T22:13:20.123Z

func (f *fakeAgent) addTopic(name string, partitions int32) fsm.Topic {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addTopicLocked(name, partitions, fsm.TopicConfig{})
}

func (f *fakeAgent) addTopicLocked(name string, partitions int32, cfg fsm.TopicConfig) fsm.Topic {
	f.nextID++
	t := fsm.Topic{ID: f.nextID * 10, Name: name, Partitions: partitions, Config: cfg, CreatedAt: fakeCreatedAt}
	f.topics[name] = t
	f.logs[name] = map[int32][]fsm.FetchedRecord{}
	f.low[name] = map[int32]int64{}
	return t
}

func (f *fakeAgent) CreateTopic(_ context.Context, name string, partitions int32, cfg fsm.TopicConfig) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCreate = createCall{name, partitions, cfg}
	if f.panicWrite {
		panic("fake: create topic exploded")
	}
	if f.createErr != nil {
		return fsm.Topic{}, f.createErr
	}
	if partitions < 1 {
		return fsm.Topic{}, fmt.Errorf("%w: invalid partition count %d", fsm.ErrInvalidArgument, partitions)
	}
	if _, ok := f.topics[name]; ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicExists, name)
	}
	return f.addTopicLocked(name, partitions, cfg), nil
}

func (f *fakeAgent) DeleteTopic(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleteErr != nil {
		return f.deleteErr
	}
	if _, ok := f.topics[name]; !ok {
		return fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	delete(f.topics, name)
	return nil
}

func (f *fakeAgent) Topics() []fsm.Topic {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicList {
		panic("fake: list topics exploded")
	}
	out := make([]fsm.Topic, 0, len(f.topics))
	for _, t := range f.topics {
		out = append(out, t)
	}
	// Sorted by name, like the FSM.
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Name < out[i].Name {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func (f *fakeAgent) Topic(name string) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	return t, nil
}

// PartitionsForRouting: the fake has no read barrier.
func (f *fakeAgent) PartitionsForRouting(name string) ([]fsm.PartitionInfo, error) {
	return f.Partitions(name)
}

func (f *fakeAgent) Partitions(name string) ([]fsm.PartitionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	out := make([]fsm.PartitionInfo, t.Partitions)
	for i := range out {
		p := int32(i)
		out[i] = fsm.PartitionInfo{
			TopicID: t.ID, Topic: name, Partition: p, Leader: fmt.Sprintf("node-%d", p),
			LeaderEpoch: uint64(p) + 1, NextOffset: int64(len(f.logs[name][p])),
			FlushedOffset: f.low[name][p], LowWatermark: f.low[name][p], Segments: int(p),
		}
	}
	return out, nil
}

func (f *fakeAgent) Produce(_ context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastProduce = recs
	if f.produceErr != nil {
		return nil, f.produceErr
	}
	t, ok := f.topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
	}
	out := make([]fsm.RecordOffset, len(recs))
	for i, r := range recs {
		p := max(r.Partition, 0)
		if p >= t.Partitions {
			return nil, fmt.Errorf("%w: partition %d does not exist", fsm.ErrInvalidArgument, p)
		}
		off := int64(len(f.logs[topic][p]))
		f.logs[topic][p] = append(f.logs[topic][p], fsm.FetchedRecord{Partition: p, Offset: off, Record: r.Record})
		out[i] = fsm.RecordOffset{Partition: p, Offset: off}
	}
	return out, nil
}

func (f *fakeAgent) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	f.mu.Lock()
	f.fetches = append(f.fetches, req)
	hook := f.fetchHook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fetchErr != nil {
		return fsm.FetchResult{}, f.fetchErr
	}
	if _, ok := f.topics[req.Topic]; !ok {
		return fsm.FetchResult{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, req.Topic)
	}
	log := f.logs[req.Topic][req.Partition]
	low, high := f.low[req.Topic][req.Partition], int64(len(log))
	if req.Offset < low || req.Offset > high {
		return fsm.FetchResult{}, &fsm.OffsetOutOfRangeError{Requested: req.Offset, LowWatermark: low, HighWatermark: high}
	}
	end := min(high, req.Offset+int64(req.MaxRecords))
	return fsm.FetchResult{
		Records:    append([]fsm.FetchedRecord(nil), log[req.Offset:end]...),
		NextOffset: end, HighWatermark: high, LowWatermark: low,
	}, nil
}

func (f *fakeAgent) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.readyReason
}

func (f *fakeAgent) set(fn func(f *fakeAgent)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAgent) produced() []fsm.ProduceRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastProduce
}

func (f *fakeAgent) lastFetch() fsm.FetchRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fetches) == 0 {
		return fsm.FetchRequest{}
	}
	return f.fetches[len(f.fetches)-1]
}

func (f *fakeAgent) AlterTopicConfig(_ context.Context, name string, set map[string]string) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	entries, err := fsm.ConfigEntries(set)
	if err != nil {
		return fsm.Topic{}, err
	}
	if t.Config, err = t.Config.WithUpdates(entries); err != nil {
		return fsm.Topic{}, err
	}
	f.topics[name] = t
	return t, nil
}

func (f *fakeAgent) CreatePartitions(_ context.Context, name string, count int32) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	if count <= t.Partitions {
		return fsm.Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only be raised", fsm.ErrInvalidArgument, name, t.Partitions)
	}
	t.Partitions = count
	f.topics[name] = t
	return t, nil
}
