package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// ProducerConfig configures the produce path.
type ProducerConfig struct {
	NodeID string
	// BatchSize seals a batch once it holds this many records.
	BatchSize int
	// BatchTimeout is the longest a record waits for more records to join
	// its batch while a previous batch of the partition is in flight. An
	// idle partition proposes at once.
	BatchTimeout time.Duration
	// MaxInFlight bounds concurrent proposals per partition.
	MaxInFlight int
	// IdleTimeout retires a partition's batcher (goroutine and queue) after
	// this long with nothing queued or in flight; the next record starts a
	// new one. Default 10 s.
	IdleTimeout time.Duration
	// MaxRecordBytes rejects larger records with fsm.ErrRecordTooLarge.
	MaxRecordBytes int
	// MaxUnflushedBytes makes produce answer "retry later" while the local
	// store holds more than this many unflushed bytes (0 = no bound).
	MaxUnflushedBytes int64
	// MaxUnflushedRecords is carried in every AppendBatch: the FSM refuses
	// a batch that would leave its partition with more unflushed records
	// (fsm.ErrUnflushedLimit, retry later). A DR restore relies on it to
	// know how many offsets may have been acknowledged beyond what was
	// flushed. 0 = no bound.
	MaxUnflushedRecords int64
	Logger              *slog.Logger
	// Clock returns unix milliseconds; nil = wall clock.
	Clock func() int64
}

// ProducerMetrics are the produce-path collectors.
type ProducerMetrics struct {
	Produced       prometheus.Counter
	BatchRecords   prometheus.Histogram
	ProduceLatency prometheus.Histogram
	// Batchers counts the running per-partition batchers.
	Batchers prometheus.Gauge
}

// NewProducerMetrics creates and registers the produce-path collectors.
func NewProducerMetrics(reg prometheus.Registerer) *ProducerMetrics {
	m := &ProducerMetrics{
		Produced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_messages_produced_total", Help: "Records acknowledged to producers by this agent.",
		}),
		BatchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamhouse_produce_batch_records", Help: "Records per proposed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		ProduceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamhouse_produce_latency_seconds", Help: "Time from produce request to acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		Batchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamhouse_produce_batchers", Help: "Per-partition batchers running on this agent (partitions produced to recently).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Produced, m.BatchRecords, m.ProduceLatency, m.Batchers)
	}
	return m
}

// Producer accepts records, routes them to partitions, batches them per
// partition and proposes each batch through Raft. A call returns only after
// its records are committed and applied.
type Producer struct {
	cfg      ProducerConfig
	meta     Metadata
	proposer Proposer
	store    *Store
	metrics  *ProducerMetrics
	log      *slog.Logger

	mu       sync.Mutex
	batchers map[fsm.PartitionKey]*batcher
	rr       map[uint64]*atomic.Uint32 // keyless round robin per topic
	fwd      Forwarder
	sync     Syncer
	admits   []Admission
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   bool
}

// NewProducer returns a producer; it starts batchers lazily.
func NewProducer(cfg ProducerConfig, meta Metadata, proposer Proposer, store *Store, m *ProducerMetrics) *Producer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultBatcherIdle
	}
	if cfg.Clock == nil {
		cfg.Clock = func() int64 { return time.Now().UnixMilli() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewProducerMetrics(nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Producer{cfg: cfg, meta: meta, proposer: proposer, store: store, metrics: m,
		log: cfg.Logger.With("component", "producer"), batchers: map[fsm.PartitionKey]*batcher{},
		rr: map[uint64]*atomic.Uint32{}, ctx: ctx, cancel: cancel}
}

// SetSyncer makes topic misses be confirmed with the cluster (see
// lookupTopic). Call before serving.
func (p *Producer) SetSyncer(s Syncer) { p.sync = s }

// SetAdmission adds checks that can refuse produce (low disk, stalled
// apply). Call before serving.
func (p *Producer) SetAdmission(checks ...Admission) { p.admits = append(p.admits, checks...) }

// admitBacklog refuses records for partitions this agent leads while its
// store is over the unflushed-backlog bound.
func (p *Producer) admitBacklog() error {
	if p.cfg.MaxUnflushedBytes > 0 && p.store.Bytes() > p.cfg.MaxUnflushedBytes {
		return fmt.Errorf("%w: unflushed backlog above %d bytes; segment uploads are behind", fsm.ErrUnavailable, p.cfg.MaxUnflushedBytes)
	}
	return nil
}

// admit runs the admission checks for any produce this agent receives,
// local or to be forwarded (every agent stores every record: Raft
// replicates them all). Errors wrap fsm.ErrUnavailable.
func (p *Producer) admit() error {
	for _, a := range p.admits {
		if err := a.Admit(); err != nil {
			return err
		}
	}
	return nil
}

// SetForwarder enables forwarding produce requests for partitions led by
// other agents. Call before serving.
func (p *Producer) SetForwarder(f Forwarder) { p.fwd = f }

// Close stops the batchers; pending requests fail with fsm.ErrUnavailable.
func (p *Producer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Producer) nextRR(topicID uint64) uint32 {
	p.mu.Lock()
	c := p.rr[topicID]
	if c == nil {
		c = &atomic.Uint32{}
		p.rr[topicID] = c
	}
	p.mu.Unlock()
	return c.Add(1) - 1
}

// Produce appends records to topic. Every record of one partition in one
// call lands in one batch, in order, with consecutive offsets. Records of
// partitions led by another agent are forwarded to it, at most once.
func (p *Producer) Produce(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	return p.produce(ctx, topic, recs, true)
}

// ProduceLocal is the receiving side of a forwarded produce: it never
// forwards again, and answers fsm.ErrNotLeader (definitely not written) for
// partitions this agent does not lead.
func (p *Producer) ProduceLocal(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	return p.produce(ctx, topic, recs, false)
}

// checkRequestSize refuses a request that could never be written: more
// records than a partition may hold unflushed.
func (p *Producer) checkRequestSize(n int) error {
	if p.cfg.MaxUnflushedRecords > 0 && int64(n) > p.cfg.MaxUnflushedRecords {
		return fmt.Errorf("%w: %d records in one request, more than MAX_UNFLUSHED_RECORDS=%d", fsm.ErrInvalidArgument, n, p.cfg.MaxUnflushedRecords)
	}
	return nil
}

// unit is one independently failing part of a request: one local
// partition's batch, or one forward to another agent.
type unit struct {
	done <-chan struct{}
	err  func() error // valid once done is closed
	fill func(out []fsm.RecordOffset)
}

func (p *Producer) produce(ctx context.Context, topic string, recs []fsm.ProduceRecord, forward bool) ([]fsm.RecordOffset, error) {
	start := time.Now()
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no records", fsm.ErrInvalidArgument)
	}
	if err := p.checkRequestSize(len(recs)); err != nil {
		return nil, err
	}
	t, err := lookupTopic(ctx, p.meta, p.sync, topic)
	if err != nil {
		return nil, err
	}
	now := p.cfg.Clock()
	// Route every record; keyless records of one call go to one partition
	// (sticky per call), spread across calls.
	parts := make([]int32, len(recs))
	sticky := int32(-1)
	for i := range recs {
		r := &recs[i]
		if p.cfg.MaxRecordBytes > 0 && r.Record.Size() > p.cfg.MaxRecordBytes {
			return nil, fmt.Errorf("%w: record %d is %d bytes, the limit is %d", fsm.ErrRecordTooLarge, i, r.Record.Size(), p.cfg.MaxRecordBytes)
		}
		switch {
		case r.Partition >= 0:
			if r.Partition >= t.Partitions {
				return nil, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrInvalidArgument, r.Partition, topic, t.Partitions)
			}
			parts[i] = r.Partition
		case r.Record.Key != nil:
			parts[i] = fsm.KeyPartition(r.Record.Key, t.Partitions)
		default:
			if sticky < 0 {
				sticky = int32(p.nextRR(t.ID) % uint32(t.Partitions))
			}
			parts[i] = sticky
		}
		if r.Record.Timestamp == 0 {
			r.Record.Timestamp = now
		}
	}
	// Group by partition (keeping order), and partitions by leader.
	groups := map[int32]*request{}
	var order []int32
	for i := range recs {
		g := groups[parts[i]]
		if g == nil {
			g = &request{done: make(chan struct{})}
			groups[parts[i]] = g
			order = append(order, parts[i])
		}
		g.recs = append(g.recs, recs[i].Record)
		g.idx = append(g.idx, i)
	}
	var local []int32
	remote := map[string][]int32{}
	var remoteOrder []string
	for _, part := range order {
		info, ok := p.meta.Partition(t.ID, part)
		if !ok {
			return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
		}
		switch {
		case info.Leader == p.cfg.NodeID:
			local = append(local, part)
		case !forward || p.fwd == nil || info.Leader == "":
			return nil, fmt.Errorf("%w: %w: partition %d of %q is led by %q", fsm.ErrUnavailable, fsm.ErrNotLeader, part, topic, info.Leader)
		default:
			if _, seen := remote[info.Leader]; !seen {
				remoteOrder = append(remoteOrder, info.Leader)
			}
			remote[info.Leader] = append(remote[info.Leader], part)
		}
	}
	if err := p.admit(); err != nil {
		return nil, err
	}
	if len(local) > 0 {
		if err := p.admitBacklog(); err != nil {
			return nil, err
		}
	}
	var units []*unit
	var submitErr error
	for _, part := range local {
		g := groups[part]
		if err := p.enqueue(ctx, fsm.PartitionKey{TopicID: t.ID, Partition: part}, g); err != nil {
			submitErr = err
			break
		}
		units = append(units, p.localUnit(g, part))
	}
	if submitErr == nil {
		for _, node := range remoteOrder {
			units = append(units, p.forwardUnit(ctx, node, topic, remote[node], groups))
		}
	}
	out := make([]fsm.RecordOffset, len(recs))
	failed, definite := 0, 0
	var firstErr error
	for _, u := range units {
		select {
		case <-u.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, ctx.Err())
		}
		if err := u.err(); err != nil {
			failed++
			if !errors.Is(err, fsm.ErrOutcomeUnknown) {
				definite++
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		u.fill(out)
	}
	if submitErr != nil && firstErr == nil {
		firstErr = submitErr
	}
	switch {
	case submitErr == nil && failed == 0:
	case failed == len(units) && definite == len(units):
		// Nothing was applied anywhere: the definite error stands.
		return nil, firstErr
	case failed < len(units):
		// Some parts were applied and others were not: the request as a
		// whole must not be reported as safe to retry.
		return nil, fmt.Errorf("%w: %d of %d parts of the request were applied before a failure: %v",
			fsm.ErrOutcomeUnknown, len(units)-failed, len(units), firstErr)
	default:
		// Every part failed, at least one with an unknown outcome.
		return nil, fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, firstErr)
	}
	p.metrics.Produced.Add(float64(len(recs)))
	p.metrics.ProduceLatency.Observe(time.Since(start).Seconds())
	return out, nil
}

// localUnit wraps a submitted local partition request.
func (p *Producer) localUnit(g *request, part int32) *unit {
	u := &unit{done: g.done, err: func() error { return g.err }}
	u.fill = func(out []fsm.RecordOffset) {
		for j, i := range g.idx {
			out[i] = fsm.RecordOffset{Partition: part, Offset: g.base + int64(j)}
		}
	}
	return u
}

// forwardUnit sends the records of the given partitions to their leader.
func (p *Producer) forwardUnit(ctx context.Context, node, topic string, parts []int32, groups map[int32]*request) *unit {
	var recs []fsm.ProduceRecord
	var idx []int
	for _, part := range parts {
		g := groups[part]
		for j, r := range g.recs {
			recs = append(recs, fsm.ProduceRecord{Partition: part, Record: r})
			idx = append(idx, g.idx[j])
		}
	}
	done := make(chan struct{})
	var got []fsm.RecordOffset
	ferr := fmt.Errorf("%w: agent shutting down", fsm.ErrUnavailable)
	u := &unit{done: done, err: func() error { return ferr }}
	started := p.goOwned(func() {
		defer close(done)
		// Close cancels the forward: its outcome is then unknown.
		fctx, cancel := context.WithCancel(ctx)
		defer context.AfterFunc(p.ctx, cancel)()
		defer cancel()
		res, err := p.fwd.ForwardProduce(fctx, node, topic, recs)
		if err == nil && len(res) != len(recs) {
			err = fmt.Errorf("%w: agent %s acknowledged %d of %d forwarded records", fsm.ErrOutcomeUnknown, node, len(res), len(recs))
		}
		ferr, got = err, res
	})
	if !started {
		close(done)
	}
	u.fill = func(out []fsm.RecordOffset) {
		for j, i := range idx {
			out[i] = got[j]
		}
	}
	return u
}

func (b *batcher) propose(ctx context.Context, batch []*request, n int) {
	info, ok := b.p.meta.Partition(b.key.TopicID, b.key.Partition)
	if !ok {
		b.fail(batch, fmt.Errorf("%w: topic was deleted", fsm.ErrTopicNotFound))
		return
	}
	if info.Leader != b.p.cfg.NodeID {
		b.fail(batch, fmt.Errorf("%w: %w: partition moved to %q", fsm.ErrUnavailable, fsm.ErrNotLeader, info.Leader))
		return
	}
	var blob []byte
	for _, r := range batch {
		blob = fsm.AppendRecords(blob, r.recs)
	}
	cmd := fsm.Encode(&fsm.AppendBatch{
		TopicID: b.key.TopicID, Partition: b.key.Partition, LeaderEpoch: info.LeaderEpoch,
		Timestamp: b.p.cfg.Clock(), Count: int32(n), Records: blob, MaxUnflushed: b.p.cfg.MaxUnflushedRecords,
	})
	b.p.metrics.BatchRecords.Observe(float64(n))
	res, err := b.p.proposer.Propose(ctx, cmd)
	if err == nil {
		err = res.Err()
		if errors.Is(err, fsm.ErrStaleEpoch) {
			// Definitely not applied: the partition moved on.
			err = fmt.Errorf("%w: %w", fsm.ErrUnavailable, err)
		}
	}
	if err != nil {
		b.fail(batch, err)
		return
	}
	base := res.BaseOffset
	for _, r := range batch {
		r.base = base
		base += int64(len(r.recs))
		close(r.done)
	}
}
