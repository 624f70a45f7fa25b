package grpcapi

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// fakeAgent implements every backend interface of the gRPC server in
// memory, behaving like the real agent where the API can tell: offsets are
// dense per partition, Fetch long-polls until a produce (or its wait or
// context ends), groups refuse commits past the high watermark, an
// idempotent batch retried with the same (producer, epoch, sequence) gets
// its original offsets, and a newer producer epoch fences older ones.
type fakeAgent struct {
	mu      sync.Mutex
	topics  map[string]*fakeTopic
	nextID  uint64
	changed chan struct{} // closed and replaced on every append
	waiters int           // Fetch calls currently long-polling
	rr      int32         // round robin for null keys
	clock   int64         // timestamp given to records produced with 0

	ready       bool
	readyReason string

	groups map[string]map[gkey]fsm.GroupPartition

	nextProducer uint64
	producers    map[uint64]uint32 // id -> current epoch
	// producerOwners: id -> the owner passed to InitProducer.
	producerOwners map[uint64]string
	sequences      map[seqKey]*sequenceState // per (producer, topic, partition)

	cluster transport.ClusterStatus

	panicIn string           // backend method that panics
	errIn   map[string]error // backend method -> injected error
}

type fakeTopic struct {
	t       fsm.Topic
	logs    [][]fsm.FetchedRecord // per partition; logs[p][i].Offset == low[p]+i
	low     []int64
	leaders []string
	epochs  []uint64
}

func (t *fakeTopic) next(p int32) int64 { return t.low[p] + int64(len(t.logs[p])) }

type gkey struct {
	topic string
	part  int32
}

type seqKey struct {
	producer uint64
	topic    string
	part     int32
}

type sequenceState struct {
	epoch   uint32
	next    int64
	batches map[int64]fsm.IdempotentResult // base sequence -> original result
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{
		topics: map[string]*fakeTopic{}, changed: make(chan struct{}), clock: 1_700_000_000_000, ready: true,
		groups: map[string]map[gkey]fsm.GroupPartition{}, producers: map[uint64]uint32{}, producerOwners: map[uint64]string{},
		sequences: map[seqKey]*sequenceState{}, errIn: map[string]error{},
	}
}

// hook runs the injected panic or error of a backend method.
func (f *fakeAgent) hook(method string) error {
	f.mu.Lock()
	p, err := f.panicIn, f.errIn[method]
	f.mu.Unlock()
	if p == method {
		panic("fake: " + method + " exploded")
	}
	return err
}

func (f *fakeAgent) setPanic(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.panicIn = method
}

func (f *fakeAgent) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errIn[method] = err
}

func (f *fakeAgent) setReady(ok bool, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready, f.readyReason = ok, reason
}

func (f *fakeAgent) numWaiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiters
}

// truncate moves a partition's low watermark (as retention would).
func (f *fakeAgent) truncate(topic string, part int32, low int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.topics[topic]
	drop := low - t.low[part]
	t.logs[part] = t.logs[part][drop:]
	t.low[part] = low
}

// stored returns the records of a partition as the fake stored them.
func (f *fakeAgent) stored(topic string, part int32) []fsm.FetchedRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fsm.FetchedRecord(nil), f.topics[topic].logs[part]...)
}

func (f *fakeAgent) setLeader(topic string, part int32, leader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.topics[topic]
	t.leaders[part] = leader
	t.epochs[part]++
}

// ---- Topics

func (f *fakeAgent) CreateTopic(_ context.Context, name string, partitions int32, cfg fsm.TopicConfig) (fsm.Topic, error) {
	if err := f.hook("CreateTopic"); err != nil {
		return fsm.Topic{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if partitions < 1 {
		return fsm.Topic{}, fmt.Errorf("%w: invalid partition count %d", fsm.ErrInvalidArgument, partitions)
	}
	switch cfg.Compression {
	case "", "zstd", "lz4", "none":
	default:
		return fsm.Topic{}, fmt.Errorf("%w: unknown compression %q", fsm.ErrInvalidArgument, cfg.Compression)
	}
	if _, ok := f.topics[name]; ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicExists, name)
	}
	f.nextID++
	t := &fakeTopic{
		t:    fsm.Topic{ID: f.nextID * 10, Name: name, Partitions: partitions, Config: cfg, CreatedAt: f.clock},
		logs: make([][]fsm.FetchedRecord, partitions), low: make([]int64, partitions),
		leaders: make([]string, partitions), epochs: make([]uint64, partitions),
	}
	for i := range t.leaders {
		t.leaders[i], t.epochs[i] = "agent-1", 1
	}
	f.topics[name] = t
	return t.t, nil
}

func (f *fakeAgent) DeleteTopic(_ context.Context, name string) error {
	if err := f.hook("DeleteTopic"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[name]; !ok {
		return fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	delete(f.topics, name)
	return nil
}

func (f *fakeAgent) Topics() []fsm.Topic {
	_ = f.hook("Topics")
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fsm.Topic, 0, len(f.topics))
	for _, t := range f.topics {
		out = append(out, t.t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (f *fakeAgent) Topic(name string) (fsm.Topic, error) {
	if err := f.hook("Topic"); err != nil {
		return fsm.Topic{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	return t.t, nil
}

func (f *fakeAgent) Partitions(name string) ([]fsm.PartitionInfo, error) {
	if err := f.hook("Partitions"); err != nil {
		return nil, err
	}
	return f.partitions(name)
}

// PartitionsForRouting: the fake has no read barrier.
func (f *fakeAgent) PartitionsForRouting(name string) ([]fsm.PartitionInfo, error) {
	if err := f.hook("PartitionsForRouting"); err != nil {
		return nil, err
	}
	return f.partitions(name)
}

func (f *fakeAgent) partitions(name string) ([]fsm.PartitionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	out := make([]fsm.PartitionInfo, t.t.Partitions)
	for p := range out {
		out[p] = f.infoLocked(t, int32(p))
	}
	return out, nil
}

func (f *fakeAgent) infoLocked(t *fakeTopic, p int32) fsm.PartitionInfo {
	next := t.next(p)
	return fsm.PartitionInfo{
		TopicID: t.t.ID, Topic: t.t.Name, Partition: p, Leader: t.leaders[p], LeaderEpoch: t.epochs[p],
		NextOffset: next, FlushedOffset: t.low[p], LowWatermark: t.low[p], Segments: int(t.low[p] / 10),
	}
}

// ---- Producer

func (f *fakeAgent) Produce(_ context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	if err := f.hook("Produce"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no records", fsm.ErrInvalidArgument)
	}
	parts := make([]int32, len(recs))
	for i, r := range recs {
		switch {
		case r.Partition >= t.t.Partitions:
			return nil, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrInvalidArgument, r.Partition, topic, t.t.Partitions)
		case r.Partition >= 0:
			parts[i] = r.Partition
		case r.Record.Key == nil:
			parts[i] = f.rr % t.t.Partitions
			f.rr++
		default:
			h := fnv.New32a()
			h.Write(r.Record.Key)
			parts[i] = int32(h.Sum32() % uint32(t.t.Partitions))
		}
	}
	out := make([]fsm.RecordOffset, len(recs))
	for i, r := range recs {
		out[i] = f.appendLocked(t, parts[i], r.Record)
	}
	f.notifyLocked()
	return out, nil
}

func (f *fakeAgent) appendLocked(t *fakeTopic, p int32, r fsm.Record) fsm.RecordOffset {
	if r.Timestamp == 0 {
		r.Timestamp = f.clock
	}
	off := t.next(p)
	t.logs[p] = append(t.logs[p], fsm.FetchedRecord{Partition: p, Offset: off, Record: r})
	return fsm.RecordOffset{Partition: p, Offset: off}
}

func (f *fakeAgent) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// ---- IdempotentProducer

func (f *fakeAgent) InitProducer(_ context.Context, id uint64, owner string) (fsm.ProducerIdentity, error) {
	if err := f.hook("InitProducer"); err != nil {
		return fsm.ProducerIdentity{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == 0 {
		f.nextProducer++
		f.producers[f.nextProducer] = 0
		f.producerOwners[f.nextProducer] = owner
		return fsm.ProducerIdentity{ID: f.nextProducer}, nil
	}
	epoch, ok := f.producers[id]
	if !ok {
		return fsm.ProducerIdentity{}, fmt.Errorf("%w: %d", fsm.ErrUnknownProducer, id)
	}
	if f.producerOwners[id] != owner {
		return fsm.ProducerIdentity{}, fmt.Errorf("%w: producer %d", fsm.ErrProducerNotOwned, id)
	}
	f.producers[id] = epoch + 1
	return fsm.ProducerIdentity{ID: id, Epoch: epoch + 1}, nil
}

func (f *fakeAgent) ProduceIdempotent(_ context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	if err := f.hook("ProduceIdempotent"); err != nil {
		return fsm.IdempotentResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[b.Topic]
	switch {
	case !ok:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, b.Topic)
	case len(b.Records) == 0, b.Producer.ID == 0, b.BaseSeq < 0:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: bad idempotent batch", fsm.ErrInvalidArgument)
	case b.Partition < 0 || b.Partition >= t.t.Partitions:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: partition %d does not exist", fsm.ErrInvalidArgument, b.Partition)
	}
	epoch, ok := f.producers[b.Producer.ID]
	switch {
	case !ok:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: %d", fsm.ErrUnknownProducer, b.Producer.ID)
	case b.Producer.Epoch < epoch:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: epoch %d, current %d", fsm.ErrProducerFenced, b.Producer.Epoch, epoch)
	case b.Producer.Epoch > epoch:
		return fsm.IdempotentResult{}, fmt.Errorf("%w: epoch %d was never issued", fsm.ErrInvalidArgument, b.Producer.Epoch)
	}
	k := seqKey{b.Producer.ID, b.Topic, b.Partition}
	st := f.sequences[k]
	if st == nil || st.epoch != epoch { // a new epoch starts its sequences at 0
		st = &sequenceState{epoch: epoch, batches: map[int64]fsm.IdempotentResult{}}
		f.sequences[k] = st
	}
	if res, ok := st.batches[b.BaseSeq]; ok && int(res.Count) == len(b.Records) {
		res.Duplicate = true
		return res, nil
	}
	if b.BaseSeq != st.next {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: got %d, expected %d", fsm.ErrOutOfOrderSequence, b.BaseSeq, st.next)
	}
	res := fsm.IdempotentResult{BaseOffset: t.next(b.Partition), Count: int32(len(b.Records))}
	for _, r := range b.Records {
		f.appendLocked(t, b.Partition, r)
	}
	st.batches[b.BaseSeq] = res
	st.next += int64(len(b.Records))
	f.notifyLocked()
	return res, nil
}

// ---- Fetcher

func (f *fakeAgent) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	if err := f.hook("Fetch"); err != nil {
		return fsm.FetchResult{}, err
	}
	var deadline <-chan struct{}
	waited := false
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		t, ok := f.topics[req.Topic]
		if !ok {
			return fsm.FetchResult{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, req.Topic)
		}
		if req.Partition < 0 || req.Partition >= t.t.Partitions {
			return fsm.FetchResult{}, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, req.Partition, req.Topic, t.t.Partitions)
		}
		low, next := t.low[req.Partition], t.next(req.Partition)
		if req.Offset < low || req.Offset > next {
			return fsm.FetchResult{}, &fsm.OffsetOutOfRangeError{Requested: req.Offset, LowWatermark: low, HighWatermark: next}
		}
		if req.Offset < next {
			res := fsm.FetchResult{NextOffset: req.Offset, HighWatermark: next, LowWatermark: low}
			bytes := 0
			for _, r := range t.logs[req.Partition][req.Offset-low:] {
				if len(res.Records) == req.MaxRecords || (len(res.Records) > 0 && req.MaxBytes > 0 && bytes+r.Size() > req.MaxBytes) {
					break
				}
				bytes += r.Size()
				res.Records = append(res.Records, r)
				res.NextOffset = r.Offset + 1
			}
			return res, nil
		}
		if req.WaitMs <= 0 || waited {
			return fsm.FetchResult{NextOffset: req.Offset, HighWatermark: next, LowWatermark: low}, nil
		}
		if deadline == nil {
			dctx, cancel := context.WithTimeout(ctx, msDuration(req.WaitMs))
			defer cancel()
			deadline = dctx.Done()
		}
		changed := f.changed
		f.waiters++
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			waited = true
		}
		f.mu.Lock()
		f.waiters--
		if err := ctx.Err(); err != nil {
			return fsm.FetchResult{}, err
		}
	}
}

// ---- Groups

func (f *fakeAgent) CommitOffsets(_ context.Context, group string, commits []fsm.GroupCommit) error {
	if err := f.hook("CommitOffsets"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commitLocked(group, commits)
}

func (f *fakeAgent) commitLocked(group string, commits []fsm.GroupCommit) error {
	if group == "" {
		return fmt.Errorf("%w: empty group name", fsm.ErrInvalidArgument)
	}
	if len(commits) == 0 {
		return fmt.Errorf("%w: no offsets to commit", fsm.ErrInvalidArgument)
	}
	for _, c := range commits {
		t, ok := f.topics[c.Topic]
		switch {
		case !ok:
			return fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, c.Topic)
		case c.Partition < 0 || c.Partition >= t.t.Partitions:
			return fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, c.Partition, c.Topic, t.t.Partitions)
		case c.Offset < 0:
			return fmt.Errorf("%w: offset %d is negative", fsm.ErrInvalidArgument, c.Offset)
		case c.Offset > t.next(c.Partition):
			return fmt.Errorf("%w: offset %d is past the high watermark %d", fsm.ErrInvalidArgument, c.Offset, t.next(c.Partition))
		}
	}
	g := f.groups[group]
	if g == nil {
		g = map[gkey]fsm.GroupPartition{}
		f.groups[group] = g
	}
	for _, c := range commits {
		g[gkey{c.Topic, c.Partition}] = fsm.GroupPartition{Topic: c.Topic, Partition: c.Partition, Offset: c.Offset, Metadata: c.Metadata, CommittedAt: f.clock}
	}
	return nil
}

func (f *fakeAgent) describeLocked(group string) (fsm.GroupDescription, error) {
	g, ok := f.groups[group]
	if !ok {
		return fsm.GroupDescription{}, fmt.Errorf("%w: %q", fsm.ErrGroupNotFound, group)
	}
	d := fsm.GroupDescription{Group: group, Partitions: []fsm.GroupPartition{}}
	for k, gp := range g {
		t, ok := f.topics[k.topic]
		if !ok {
			continue
		}
		gp.HighWatermark, gp.LowWatermark = t.next(k.part), t.low[k.part]
		gp.Lag = max(gp.HighWatermark-gp.Offset, 0)
		d.TotalLag += gp.Lag
		d.Partitions = append(d.Partitions, gp)
	}
	d.SortPartitions()
	return d, nil
}

func (f *fakeAgent) DescribeGroup(_ context.Context, group string) (fsm.GroupDescription, error) {
	if err := f.hook("DescribeGroup"); err != nil {
		return fsm.GroupDescription{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.describeLocked(group)
}

func (f *fakeAgent) ListGroups() []fsm.GroupSummary {
	_ = f.hook("ListGroups")
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.groups))
	for n := range f.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	out := []fsm.GroupSummary{}
	for _, n := range names {
		d, _ := f.describeLocked(n)
		out = append(out, d.Summary())
	}
	return out
}

func (f *fakeAgent) DeleteGroup(_ context.Context, group string) error {
	if err := f.hook("DeleteGroup"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.groups[group]; !ok {
		return fmt.Errorf("%w: %q", fsm.ErrGroupNotFound, group)
	}
	delete(f.groups, group)
	return nil
}

func (f *fakeAgent) ResetGroup(_ context.Context, group string, req fsm.GroupReset) (fsm.GroupDescription, error) {
	if err := f.hook("ResetGroup"); err != nil {
		return fsm.GroupDescription{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[req.Topic]
	if !ok {
		return fsm.GroupDescription{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, req.Topic)
	}
	parts := req.Partitions
	if len(parts) == 0 {
		for p := int32(0); p < t.t.Partitions; p++ {
			parts = append(parts, p)
		}
	}
	var commits []fsm.GroupCommit
	for _, p := range parts {
		if p < 0 || p >= t.t.Partitions {
			return fsm.GroupDescription{}, fmt.Errorf("%w: partition %d does not exist", fsm.ErrPartitionInvalid, p)
		}
		low, next := t.low[p], t.next(p)
		var off int64
		switch req.Strategy {
		case fsm.ResetEarliest:
			off = low
		case fsm.ResetLatest:
			off = next
		case fsm.ResetOffset:
			off = min(max(req.Offset, low), next)
		case fsm.ResetTimestamp:
			off = next
			for _, r := range t.logs[p] {
				if r.Timestamp >= req.TimestampMs {
					off = r.Offset
					break
				}
			}
		default:
			return fsm.GroupDescription{}, fmt.Errorf("%w: unknown reset strategy %q", fsm.ErrInvalidArgument, req.Strategy)
		}
		commits = append(commits, fsm.GroupCommit{Topic: req.Topic, Partition: p, Offset: off})
	}
	if err := f.commitLocked(group, commits); err != nil {
		return fsm.GroupDescription{}, err
	}
	return f.describeLocked(group)
}

// ---- ClusterInfo, Readiness

func (f *fakeAgent) ClusterStatus() transport.ClusterStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.cluster
	st.Members = append([]transport.ClusterMember(nil), f.cluster.Members...)
	return st
}

func (f *fakeAgent) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.readyReason
}

// Interface checks.
var (
	_ transport.Topics             = (*fakeAgent)(nil)
	_ transport.Producer           = (*fakeAgent)(nil)
	_ transport.IdempotentProducer = (*fakeAgent)(nil)
	_ transport.Fetcher            = (*fakeAgent)(nil)
	_ transport.Groups             = (*fakeAgent)(nil)
	_ transport.ClusterInfo        = (*fakeAgent)(nil)
	_ transport.Readiness          = (*fakeAgent)(nil)
)

func (f *fakeAgent) AlterTopicConfig(_ context.Context, name string, set map[string]string) (fsm.Topic, error) {
	if err := f.hook("AlterTopicConfig"); err != nil {
		return fsm.Topic{}, err
	}
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
	cfg, err := t.t.Config.WithUpdates(entries)
	if err != nil {
		return fsm.Topic{}, err
	}
	t.t.Config = cfg
	return t.t, nil
}

func (f *fakeAgent) CreatePartitions(_ context.Context, name string, count int32) (fsm.Topic, error) {
	if err := f.hook("CreatePartitions"); err != nil {
		return fsm.Topic{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, name)
	}
	if count <= t.t.Partitions {
		return fsm.Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only be raised", fsm.ErrInvalidArgument, name, t.t.Partitions)
	}
	for i := t.t.Partitions; i < count; i++ {
		t.logs = append(t.logs, nil)
		t.low = append(t.low, 0)
		t.leaders = append(t.leaders, "agent-1")
		t.epochs = append(t.epochs, 1)
	}
	t.t.Partitions = count
	return t.t, nil
}
