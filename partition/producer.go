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
	// BatchSize seals a batch once it holds this many records.
	BatchSize int
	// BatchTimeout is the longest a record waits for more records to join
	// its batch while a previous batch of the partition is in flight. An
	// idle partition proposes at once.
	BatchTimeout time.Duration
	// MaxInFlight bounds the batches of one partition sealed and not yet
	// applied.
	MaxInFlight int
	// Coalescer bounds the agent's proposal coalescer (group commit of
	// every partition's batches into one Raft entry).
	Coalescer CoalescerConfig
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
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultBatcherIdle
	}
	return c
}

// ProducerMetrics are the produce-path collectors.
type ProducerMetrics struct {
	Produced       prometheus.Counter
	BatchRecords   prometheus.Histogram
	ProduceLatency prometheus.Histogram
	// Batchers counts the running per-partition batchers.
	Batchers prometheus.Gauge
}

// newProducerMetrics creates and registers the produce-path collectors.
func newProducerMetrics(reg prometheus.Registerer) *ProducerMetrics {
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
	nodeID   string
	meta     Metadata
	proposer Proposer
	sync     Syncer
	levels   Levels
	fwd      Forwarder // nil: partitions led elsewhere are refused
	admits   []Admission
	store    *Store
	metrics  *ProducerMetrics
	log      *slog.Logger
	clock    func() time.Time
	// seq sequences every AppendBatch this agent proposes: coalescer.
	seq       sequencer
	coalescer *coalescer
	gate      *seqGate // orders an idempotent producer's pipelined batches
	// tasks runs the batchers, the sweeper and forwarded requests; closing
	// it fails what is queued and waits for them.
	tasks *group

	mu       sync.Mutex
	batchers map[fsm.PartitionKey]*batcher
	rr       map[uint64]*atomic.Uint32 // keyless round robin per topic
}

// newProducer returns a producer over d whose goroutines run in tasks; it
// starts batchers lazily. admits can refuse a request before anything is
// proposed.
func newProducer(cfg Config, d Deps, tasks *group, admits ...Admission) *Producer {
	d = d.withDefaults()
	log := d.Logger.With("component", "producer")
	pc := cfg.Producer.withDefaults()
	p := &Producer{cfg: pc, nodeID: cfg.NodeID, meta: d.FSM, proposer: d.Node, sync: d.Node, levels: d.Node,
		fwd: d.Forwarder, admits: admits, store: d.Store, metrics: newProducerMetrics(d.Registerer),
		log: log, clock: d.Clock, tasks: tasks,
		batchers: map[fsm.PartitionKey]*batcher{}, rr: map[uint64]*atomic.Uint32{}}
	p.coalescer = newCoalescer(pc.Coalescer, d.Node, tasks, log, d.Registerer)
	p.seq = p.coalescer
	p.gate = newSeqGate(seqGateMaxWait)
	return p
}

// now is the agent's clock in unix milliseconds (record timestamps).
func (p *Producer) now() int64 { return p.clock().UnixMilli() }

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

// checkRecord refuses an oversize record (i is its position in the
// request) and stamps a record without a timestamp with now. The limit is
// the agent's MAX_RECORD_BYTES, or the topic's max.message.bytes when that
// is smaller (read from the current state on every request).
func (p *Producer) checkRecord(t fsm.Topic, i int, r *fsm.Record, now int64) error {
	if limit := t.Config.RecordLimit(p.cfg.MaxRecordBytes); limit > 0 && r.Size() > limit {
		if limit < p.cfg.MaxRecordBytes || p.cfg.MaxRecordBytes <= 0 {
			return fmt.Errorf("%w: record %d is %d bytes, topic %q accepts at most %d (max.message.bytes)", fsm.ErrRecordTooLarge, i, r.Size(), t.Name, limit)
		}
		return fmt.Errorf("%w: record %d is %d bytes, the limit is %d", fsm.ErrRecordTooLarge, i, r.Size(), limit)
	}
	if r.Timestamp == 0 {
		r.Timestamp = now
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

// routing is a request's records grouped by partition (in request order)
// and its partitions by the agent that sequences them.
type routing struct {
	groups      map[int32]*request
	local       []int32            // partitions this agent leads
	remote      map[string][]int32 // partitions by leading agent
	remoteOrder []string
}

// produce is route → admit → dispatch → wait → classifyOutcome.
func (p *Producer) produce(ctx context.Context, topic string, recs []fsm.ProduceRecord, forward bool) ([]fsm.RecordOffset, error) {
	start := time.Now()
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no records", fsm.ErrInvalidArgument)
	}
	if err := p.checkRequestSize(len(recs)); err != nil {
		return nil, err
	}
	t, err := lookupTopicFor(ctx, p.meta, p.sync, topic, maxPartition(recs))
	if err != nil {
		return nil, err
	}
	rt, err := p.route(t, topic, recs, forward)
	if err != nil {
		return nil, err
	}
	if err := p.admitRouted(rt); err != nil {
		return nil, err
	}
	units, submitErr := p.dispatch(ctx, t.ID, topic, rt)
	out := make([]fsm.RecordOffset, len(recs))
	errs, err := awaitUnits(ctx, units, out)
	if err != nil {
		return nil, err
	}
	if err := classifyOutcome(errs, submitErr); err != nil {
		return nil, err
	}
	p.metrics.Produced.Add(float64(len(recs)))
	p.metrics.ProduceLatency.Observe(time.Since(start).Seconds())
	return out, nil
}

// maxPartition is the highest partition the records name (-1: none).
func maxPartition(recs []fsm.ProduceRecord) int32 {
	m := int32(-1)
	for i := range recs {
		m = max(m, recs[i].Partition)
	}
	return m
}

// route picks every record's partition, groups the records by partition and
// the partitions by leader. Nothing is proposed for a request it refuses.
func (p *Producer) route(t fsm.Topic, topic string, recs []fsm.ProduceRecord, forward bool) (*routing, error) {
	parts, err := p.assignPartitions(t, topic, recs)
	if err != nil {
		return nil, err
	}
	rt := &routing{groups: map[int32]*request{}, remote: map[string][]int32{}}
	var order []int32
	for i := range recs {
		g := rt.groups[parts[i]]
		if g == nil {
			g = &request{done: make(chan struct{})}
			rt.groups[parts[i]] = g
			order = append(order, parts[i])
		}
		g.recs = append(g.recs, recs[i].Record)
		g.idx = append(g.idx, i)
	}
	for _, part := range order {
		info, ok := p.meta.Partition(t.ID, part)
		if !ok {
			return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
		}
		switch {
		case info.Leader == p.nodeID:
			rt.local = append(rt.local, part)
		case !forward || p.fwd == nil || info.Leader == "":
			return nil, fmt.Errorf("%w: %w: partition %d of %q is led by %q", fsm.ErrUnavailable, fsm.ErrNotLeader, part, topic, info.Leader)
		default:
			if _, seen := rt.remote[info.Leader]; !seen {
				rt.remoteOrder = append(rt.remoteOrder, info.Leader)
			}
			rt.remote[info.Leader] = append(rt.remote[info.Leader], part)
		}
	}
	return rt, nil
}

// assignPartitions checks and stamps every record and picks its partition:
// the explicit one, the key's hash, or — for keyless records — one
// partition per call (sticky), spread across calls by round robin.
func (p *Producer) assignPartitions(t fsm.Topic, topic string, recs []fsm.ProduceRecord) ([]int32, error) {
	now := p.now()
	parts := make([]int32, len(recs))
	sticky := int32(-1)
	for i := range recs {
		r := &recs[i]
		if err := p.checkRecord(t, i, &r.Record, now); err != nil {
			return nil, err
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
	}
	return parts, nil
}

// admitRouted runs the admission checks: every request, and the backlog
// bound when some partitions are led here.
func (p *Producer) admitRouted(rt *routing) error {
	if err := p.admit(); err != nil {
		return err
	}
	if len(rt.local) > 0 {
		return p.admitBacklog()
	}
	return nil
}

// dispatch hands the local partitions' records to their batchers and
// starts one forward per remote leader. If a batcher refuses (shutting
// down, or ctx ended) it stops there and returns the units already
// submitted with that error; nothing is forwarded then.
func (p *Producer) dispatch(ctx context.Context, topicID uint64, topic string, rt *routing) ([]*unit, error) {
	var units []*unit
	for _, part := range rt.local {
		g := rt.groups[part]
		if err := p.enqueue(ctx, fsm.PartitionKey{TopicID: topicID, Partition: part}, g); err != nil {
			return units, err
		}
		units = append(units, p.localUnit(g, part))
	}
	for _, node := range rt.remoteOrder {
		units = append(units, p.forwardUnit(ctx, node, topic, rt.remote[node], rt.groups))
	}
	return units, nil
}

// awaitUnits waits for every unit, fills out from those that succeeded and
// returns each unit's error (nil on success). If ctx ends first the whole
// request's outcome is unknown.
func awaitUnits(ctx context.Context, units []*unit, out []fsm.RecordOffset) ([]error, error) {
	errs := make([]error, len(units))
	for i, u := range units {
		select {
		case <-u.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, ctx.Err())
		}
		if errs[i] = u.err(); errs[i] == nil {
			u.fill(out)
		}
	}
	return errs, nil
}

// classifyOutcome turns the outcomes of a request's units (nil = applied)
// and the error that stopped submitting more units (nil = all submitted)
// into the request's answer (DESIGN.md invariant 5):
//   - everything applied: nil;
//   - nothing applied, every failure definite: the first error stands
//     (safe to retry);
//   - some parts applied and others not: fsm.ErrOutcomeUnknown — the
//     request as a whole must never be reported as safe to retry;
//   - nothing applied, at least one outcome unknown: fsm.ErrOutcomeUnknown.
func classifyOutcome(errs []error, submitErr error) error {
	failed, definite := 0, 0
	var firstErr error
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if !errors.Is(err, fsm.ErrOutcomeUnknown) {
			definite++
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if submitErr != nil && firstErr == nil {
		firstErr = submitErr
	}
	n := len(errs)
	switch {
	case submitErr == nil && failed == 0:
		return nil
	case failed == n && definite == n:
		return firstErr
	case failed < n:
		return fmt.Errorf("%w: %d of %d parts of the request were applied before a failure: %v",
			fsm.ErrOutcomeUnknown, n-failed, n, firstErr)
	default:
		return fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, firstErr)
	}
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
	ferr := errShuttingDown
	u := &unit{done: done, err: func() error { return ferr }}
	started := p.tasks.Go("forward", func(stopping context.Context) {
		defer close(done)
		// Close cancels the forward: its outcome is then unknown.
		fctx, cancel := context.WithCancel(ctx)
		defer context.AfterFunc(stopping, cancel)()
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

// seal builds the batch's AppendBatch with the leader epoch this agent
// sees and queues it with the sequencer.
func (b *batcher) seal(ctx context.Context, batch []*request, n int) (*appendCall, error) {
	info, ok := b.p.meta.Partition(b.key.TopicID, b.key.Partition)
	if !ok {
		return nil, fmt.Errorf("%w: topic was deleted", fsm.ErrTopicNotFound)
	}
	if info.Leader != b.p.nodeID {
		return nil, fmt.Errorf("%w: %w: partition moved to %q", fsm.ErrUnavailable, fsm.ErrNotLeader, info.Leader)
	}
	size := 0
	for _, r := range batch {
		size += fsm.RecordsSize(r.recs)
	}
	blob := make([]byte, 0, size)
	for _, r := range batch {
		blob = fsm.AppendRecords(blob, r.recs)
	}
	cmd := &fsm.AppendBatch{
		TopicID: b.key.TopicID, Partition: b.key.Partition, LeaderEpoch: info.LeaderEpoch,
		Timestamp: b.p.now(), Count: int32(n), Records: blob, MaxUnflushed: b.p.cfg.MaxUnflushedRecords,
	}
	b.p.metrics.BatchRecords.Observe(float64(n))
	return b.p.seq.Sequence(ctx, cmd)
}

// complete waits for the batch's own result and answers its requests. It
// does not give up when the service closes: the coalescer answers every
// queued call (a batch it never proposed fails "shutting down", definitely
// not written; one in flight gets what Propose returned).
func (b *batcher) complete(call *appendCall, batch []*request) {
	<-call.done
	res, err := call.res, call.err
	if err == nil {
		err = appendErr(res)
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

// appendErr is a batch's apply result as an error: a stale epoch is
// definitely not applied (the partition moved on), so retriable.
func appendErr(res *fsm.Result) error {
	err := res.Err()
	if errors.Is(err, fsm.ErrStaleEpoch) {
		err = fmt.Errorf("%w: %w", fsm.ErrUnavailable, err)
	}
	return err
}
