package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Defaults of ProducerConfig.
const (
	DefaultLinger          = 5 * time.Millisecond
	DefaultMaxBatchRecords = 10000
	DefaultMaxBatchBytes   = 1 << 20
	DefaultMaxInFlight     = 32
	// DefaultMaxInFlightPerPartition is also the most an idempotent
	// producer may use: the agent remembers a producer's last 5 batches of
	// a partition (fsm.MaxProducerBatches), so a retried batch is still
	// recognised when the 4 batches numbered after it were applied first.
	DefaultMaxInFlightPerPartition = 5
	DefaultRetryBackoff            = 100 * time.Millisecond
	DefaultRetryTimeout            = 60 * time.Second
	DefaultRequestTimeout          = 30 * time.Second
	DefaultBufferBytes             = 64 << 20
	maxRetryBackoff                = 2 * time.Second
)

// ProducerConfig configures a Producer. Zero values take the defaults.
type ProducerConfig struct {
	// Linger is how long a partition's batch waits for more records before
	// it is sent (default 5 ms; negative: send as soon as the partition has
	// no batch in flight). A batch is sent earlier when it is full.
	Linger time.Duration
	// MaxBatchRecords and MaxBatchBytes close a batch when it is full
	// (defaults 10000 records, 1 MiB). A record larger than MaxBatchBytes
	// is sent alone.
	MaxBatchRecords int
	MaxBatchBytes   int
	// MaxInFlight bounds the Produce requests in flight over all
	// partitions (default 32).
	MaxInFlight int
	// MaxInFlightPerPartition bounds the batches of one partition in
	// flight at once in idempotent mode (default and maximum 5, like
	// Kafka's max.in.flight.requests.per.connection with idempotence).
	// Their sequence numbers keep them in order: a batch that reaches the
	// agent before its predecessor is refused and resent after it.
	MaxInFlightPerPartition int
	// DisableIdempotence turns the idempotent producer (the default) off:
	// batches carry no producer id and only the agent's UNAVAILABLE
	// "unavailable" answers (definitely not written) are retried; several batches of one partition may be in
	// flight at once (up to MaxInFlight), so a retry can reorder them.
	DisableIdempotence bool
	// RetryBackoff is the first wait before a retry (default 100 ms); it
	// doubles up to 2 s, with jitter.
	RetryBackoff time.Duration
	// RetryTimeout bounds the time a batch is retried (default 60 s).
	RetryTimeout time.Duration
	// RequestTimeout bounds one Produce attempt (default 30 s).
	RequestTimeout time.Duration
	// BufferBytes bounds the records buffered and in flight; Send blocks
	// (until its ctx is done) while it is exceeded (default 64 MiB).
	BufferBytes int
}

func (c *ProducerConfig) setDefaults() {
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	orDefault(&c.MaxBatchRecords, DefaultMaxBatchRecords)
	orDefault(&c.MaxBatchBytes, DefaultMaxBatchBytes)
	orDefault(&c.MaxInFlight, DefaultMaxInFlight)
	orDefault(&c.MaxInFlightPerPartition, DefaultMaxInFlightPerPartition)
	c.MaxInFlightPerPartition = min(c.MaxInFlightPerPartition, DefaultMaxInFlightPerPartition)
	orDefault(&c.RetryBackoff, DefaultRetryBackoff)
	orDefault(&c.RetryTimeout, DefaultRetryTimeout)
	orDefault(&c.RequestTimeout, DefaultRequestTimeout)
	orDefault(&c.BufferBytes, DefaultBufferBytes)
}

// orDefault sets *v to def unless it is positive.
func orDefault[T ~int | ~int32 | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Result is the future outcome of one record given to Send.
type Result struct {
	done      chan struct{}
	partition int32
	offset    int64
	err       error
}

func newResult() *Result { return &Result{done: make(chan struct{}), partition: -1, offset: -1} }

func (r *Result) complete(partition int32, offset int64, err error) {
	r.partition, r.offset, r.err = partition, offset, err
	close(r.done)
}

// Done is closed when the outcome is known.
func (r *Result) Done() <-chan struct{} { return r.done }

// Wait waits for the outcome: the record's partition and offset, or the
// error that failed it (the partition is set when one was chosen). An error
// of ctx only stops the waiting; the record's fate is unaffected.
func (r *Result) Wait(ctx context.Context) (partition int32, offset int64, err error) {
	select {
	case <-r.done:
		return r.partition, r.offset, r.err
	case <-ctx.Done():
		return -1, -1, ctx.Err()
	}
}

// Producer sends records in batches. It is safe for concurrent use. See the
// package documentation for batching, partitioning and retries.
type Producer struct {
	c    *Client
	cfg  ProducerConfig
	idem bool

	ctx    context.Context // canceled by Close when its ctx expires: retries stop
	cancel context.CancelFunc
	sem    chan struct{} // MaxInFlight
	wg     sync.WaitGroup

	// Lock order: idMu, then mu.
	idMu       sync.RWMutex     // read-held while a batch is sent; write-held to re-initialise
	ident      ProducerIdentity // written under idMu and mu; read under either
	needReinit atomic.Bool

	mu       sync.Mutex
	topics   map[string]*topicState
	parts    map[partKey]*partState
	pending  map[*batch]struct{} // open, queued and in-flight batches
	buffered int
	space    chan struct{} // closed (and replaced) when buffered shrinks
	closed   bool
	fatal    error // ErrFenced: every later send fails
}

type partKey struct {
	topic     string
	partition int32
}

type partState struct {
	key      partKey
	open     *batch   // collecting records
	queue    []*batch // closed, waiting to be sent
	inflight int

	// Idempotent mode (producer_idem.go), under mu.
	seq     int64         // next sequence number to give a batch
	window  []*batch      // numbered batches from the oldest unresolved one on, in sequence order
	acked   int64         // sequence after the highest acknowledged batch
	changed chan struct{} // closed (and replaced) when a window batch resolves
}

type batch struct {
	key     partKey
	recs    []Record
	results []*Result
	bytes   int
	ready   bool // linger expired: send when the partition is free
	timer   *time.Timer
	done    chan struct{}

	// Idempotent mode, under mu (written by the batch's own sender).
	seq      int64            // base sequence under ident
	ident    ProducerIdentity // the identity seq was given under
	unknown  bool             // an attempt may have been written
	resolved bool             // acknowledged or failed for good
}

// NewProducer creates a producer. An idempotent producer (the default)
// obtains its producer id here.
func (c *Client) NewProducer(ctx context.Context, cfg ProducerConfig) (*Producer, error) {
	cfg.setDefaults()
	p := &Producer{
		c: c, cfg: cfg, idem: !cfg.DisableIdempotence, sem: make(chan struct{}, cfg.MaxInFlight),
		topics: map[string]*topicState{}, parts: map[partKey]*partState{}, pending: map[*batch]struct{}{},
		space: make(chan struct{}),
	}
	if p.idem {
		id, err := c.InitProducer(ctx, 0)
		if err != nil {
			return nil, err
		}
		p.ident = id
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Identity returns the idempotent producer's id and epoch (zero when not
// idempotent).
func (p *Producer) Identity() ProducerIdentity {
	p.idMu.RLock()
	defer p.idMu.RUnlock()
	return p.ident
}

// Send adds rec to the batch of its partition and returns at once with the
// record's future outcome. It blocks only while the producer's buffer is
// full (BufferBytes) or the topic's metadata is fetched; ctx bounds that
// wait, not the delivery (RetryTimeout does).
func (p *Producer) Send(ctx context.Context, topic string, rec Record) *Result {
	res := newResult()
	if err := p.usable(); err != nil {
		res.complete(-1, -1, err)
		return res
	}
	if err := ctx.Err(); err != nil {
		res.complete(-1, -1, wrapErr("Send", err))
		return res
	}
	n, err := p.c.partitionCount(ctx, topic)
	if err != nil {
		res.complete(-1, -1, err)
		return res
	}
	size := rec.size()

	p.mu.Lock()
	for p.buffered > 0 && p.buffered+size > p.cfg.BufferBytes {
		ch := p.space
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			res.complete(-1, -1, wrapErr("Send", ctx.Err()))
			return res
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if err := p.usableLocked(); err != nil {
		res.complete(-1, -1, err)
		return res
	}
	ts := p.topics[topic]
	if ts == nil || ts.partitions != n {
		ts = newTopicState(n)
		p.topics[topic] = ts
	}
	part, err := ts.choose(&rec)
	if err != nil {
		res.complete(-1, -1, err)
		return res
	}
	key := partKey{topic, part}
	ps := p.parts[key]
	if ps == nil {
		ps = &partState{key: key, changed: make(chan struct{})}
		p.parts[key] = ps
	}
	if b := ps.open; b != nil && (len(b.recs) >= p.cfg.MaxBatchRecords || b.bytes+size > p.cfg.MaxBatchBytes) {
		p.closeBatch(ps)
	}
	b := ps.open
	if b == nil {
		b = &batch{key: key, done: make(chan struct{})}
		ps.open = b
		p.pending[b] = struct{}{}
		if p.cfg.Linger > 0 {
			b.timer = time.AfterFunc(p.cfg.Linger, func() { p.lingerExpired(ps, b) })
		} else {
			b.ready = true
		}
	}
	rec.Topic, rec.Partition, rec.Offset = topic, part, 0
	b.recs = append(b.recs, rec)
	b.results = append(b.results, res)
	b.bytes += size
	p.buffered += size
	if len(b.recs) >= p.cfg.MaxBatchRecords || b.bytes >= p.cfg.MaxBatchBytes {
		p.closeBatch(ps)
	}
	p.dispatch(ps)
	return res
}

// Produce sends recs and waits for them: a synchronous convenience over
// Send that does not wait for Linger. It returns the offsets in record
// order and the first error (the offset of a failed record is -1).
func (p *Producer) Produce(ctx context.Context, topic string, recs ...Record) ([]Offset, error) {
	results := make([]*Result, len(recs))
	for i := range recs {
		results[i] = p.Send(ctx, topic, recs[i])
	}
	p.sendNow()
	out := make([]Offset, len(recs))
	var first error
	for i, r := range results {
		part, off, err := r.Wait(ctx)
		if err != nil && first == nil {
			first = err
		}
		out[i] = Offset{Partition: part, Offset: off}
	}
	return out, first
}

// Flush sends every buffered record at once and waits until every record
// given to Send before the call has its outcome (or ctx is done). Errors
// of individual records are reported by their Results.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	var dones []chan struct{}
	for _, ps := range p.parts {
		if ps.open != nil {
			p.closeBatch(ps)
		}
		p.dispatch(ps)
	}
	for b := range p.pending {
		dones = append(dones, b.done)
	}
	p.mu.Unlock()
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close flushes the producer and releases it; later sends fail with
// ErrClosed. If ctx ends before the buffered records are delivered, their
// retries are abandoned (their Results fail; the outcome of a batch that
// was in flight is unknown) and ctx's error is returned. Idempotent.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	if err != nil {
		p.cancel()
	}
	p.wg.Wait()
	p.cancel()
	return err
}

func (p *Producer) usable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.usableLocked()
}

func (p *Producer) usableLocked() error {
	if p.fatal != nil {
		return p.fatal
	}
	if p.closed {
		return ErrClosed
	}
	return nil
}

// sendNow marks every open batch ready, so it leaves as soon as its
// partition has no batch in flight, without waiting for Linger.
func (p *Producer) sendNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ps := range p.parts {
		if ps.open != nil {
			ps.open.ready = true
			p.dispatch(ps)
		}
	}
}

func (p *Producer) lingerExpired(ps *partState, b *batch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps.open == b {
		b.ready = true
		p.dispatch(ps)
	}
}

// closeBatch moves the open batch of ps to its send queue. p.mu is held.
func (p *Producer) closeBatch(ps *partState) {
	b := ps.open
	ps.open = nil
	if b.timer != nil {
		b.timer.Stop()
	}
	ps.queue = append(ps.queue, b)
	if ts := p.topics[ps.key.topic]; ts != nil {
		ts.batchClosed(ps.key.partition)
	}
}

// maxInFlight is the per-partition limit: MaxInFlightPerPartition in
// idempotent mode (the sequence numbers keep those in order), else
// MaxInFlight.
func (p *Producer) maxInFlight() int {
	if p.idem {
		return p.cfg.MaxInFlightPerPartition
	}
	return p.cfg.MaxInFlight
}

// dispatch starts sending queued batches of ps while the partition's
// in-flight limit allows; a ready open batch (linger expired) is closed
// and sent when the partition is free. p.mu is held.
func (p *Producer) dispatch(ps *partState) {
	limit := p.maxInFlight()
	for ps.inflight < limit && (!p.idem || len(ps.window) < limit) {
		if len(ps.queue) == 0 && ps.open != nil && ps.open.ready {
			p.closeBatch(ps)
		}
		if len(ps.queue) == 0 {
			return
		}
		b := ps.queue[0]
		ps.queue[0] = nil
		ps.queue = ps.queue[1:]
		ps.inflight++
		if p.idem {
			p.number(ps, b)
		}
		p.wg.Add(1)
		go p.sendBatch(ps, b)
	}
}

// sendBatch delivers one batch and completes its records.
func (p *Producer) sendBatch(ps *partState, b *batch) {
	defer p.wg.Done()
	var (
		offs []Offset
		err  error
	)
	if p.idem {
		offs, err = p.deliverIdempotent(ps, b)
	} else {
		offs, err = p.deliverPlain(b)
	}
	for i, r := range b.results {
		if err != nil {
			r.complete(b.key.partition, -1, err)
		} else {
			r.complete(offs[i].Partition, offs[i].Offset, nil)
		}
	}
	p.mu.Lock()
	ps.inflight--
	delete(p.pending, b)
	p.buffered -= b.bytes
	close(p.space)
	p.space = make(chan struct{})
	p.dispatch(ps)
	p.mu.Unlock()
	close(b.done)
}

// deliverPlain sends a non-idempotent batch with retries.
func (p *Producer) deliverPlain(b *batch) ([]Offset, error) {
	var (
		offs []Offset
		err  error
	)
	if !p.withSlot(b, func() { offs, _, err = p.attempts(b, nil, 0) }) {
		return nil, p.closedBeforeSend(b)
	}
	return offs, err
}

// withSlot runs send holding one of the MaxInFlight request slots; false
// when the producer was closed first (send did not run).
func (p *Producer) withSlot(b *batch, send func()) bool {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
		send()
		return true
	case <-p.ctx.Done():
		return false
	}
}

func (p *Producer) closedBeforeSend(b *batch) error {
	return fmt.Errorf("produce to %s/%d: %w before the batch was sent", b.key.topic, b.key.partition, ErrClosed)
}

// retriable says whether a failed attempt is sent again: the agent's own
// unavailable answer (not written) always; a transient answer that may
// have been written (see notWritten) only when idempotent, because the
// agent then recognises a duplicate.
func retriable(idempotent bool, err error) bool {
	if Kind(err) == KindUnavailable {
		return true
	}
	return idempotent && !notWritten(err) && transientCodes[Code(err)]
}

// transientCodes are the status codes a broken connection, a reset stream
// or a failing agent produce: an idempotent producer resends a batch after
// them. Any other answer without the agent's detail ends the batch (as
// outcome unknown) rather than being resent until RetryTimeout.
var transientCodes = map[codes.Code]bool{
	codes.Unavailable: true, codes.Unknown: true, codes.DeadlineExceeded: true, codes.Internal: true,
}

// notWrittenKinds are the agent's error kinds (ErrorDetail.code) that say
// a produce was refused before anything was proposed (transport's error
// table, GRPC.md "Status codes").
var notWrittenKinds = map[string]bool{
	KindBadRequest: true, KindNotFound: true, KindLimitExceeded: true, KindQuotaExceeded: true,
	KindRecordTooLarge: true, KindRequestTooLarge: true, KindUnavailable: true,
	KindProducerFenced: true, KindUnknownProducer: true, KindOutOfOrderSequence: true,
	KindUnauthenticated: true, KindPermissionDenied: true,
}

// notWritten reports whether an attempt that failed with err (wrapped by
// wrapErr) was definitely not written: only the agent's own error detail
// says so. INTERNAL, UNKNOWN, a timeout and any status without a detail
// may come after the agent wrote the batch — grpc-go answers INTERNAL or
// UNAVAILABLE when the connection drops after the agent answered, and so
// does a proxy resetting the stream — so they leave the outcome unknown.
func notWritten(err error) bool {
	return notWrittenKinds[Kind(err)]
}

// attempts sends b until it succeeds, fails for good or RetryTimeout
// passes. id is nil for a non-idempotent batch. unknown reports that some
// attempt may have been written.
func (p *Producer) attempts(b *batch, id *ProducerIdentity, seq int64) (offs []Offset, unknown bool, err error) {
	op := fmt.Sprintf("Produce %s/%d", b.key.topic, b.key.partition)
	req := &pb.ProduceRequest{Topic: b.key.topic, Records: make([]*pb.ProduceRecord, len(b.recs)), OffsetRanges: true}
	part := b.key.partition
	for i := range b.recs {
		r := &b.recs[i]
		pr := &pb.ProduceRecord{Partition: &part, Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp}
		if pr.Value == nil {
			pr.Value = []byte{}
		}
		for _, h := range r.Headers {
			pr.Headers = append(pr.Headers, &pb.Header{Key: h.Key, Value: h.Value})
		}
		req.Records[i] = pr
	}
	if id != nil {
		req.ProducerId, req.ProducerEpoch, req.BaseSequence = &id.ID, id.Epoch, seq
	}
	deadline := time.Now().Add(p.cfg.RetryTimeout)
	backoff := p.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		cc, _, cerr := p.c.leaderConn(b.key.topic, part, attempt)
		if cerr != nil {
			return nil, unknown, cerr
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(p.ctx, min(p.cfg.RequestTimeout, max(time.Until(deadline), time.Millisecond)))
		resp, rerr := pb.NewStreamHouseClient(cc).Produce(actx, req)
		cancel()
		if rerr == nil {
			offs, err = answeredOffsets(resp, len(b.recs))
			if err != nil {
				return nil, true, newError(op, codes.Unknown, KindOutcomeUnknown, "outcome unknown: %v", err)
			}
			return offs, unknown, nil
		}
		code := Code(rerr)
		werr := wrapErr(op, rerr)
		if !notWritten(werr) {
			unknown = true
		}
		if p.ctx.Err() != nil {
			return nil, unknown, p.finalErr(op, rerr, unknown, "the producer was closed before the batch was acknowledged")
		}
		if code == codes.NotFound {
			p.c.forgetTopic(b.key.topic)
		}
		if !retriable(id != nil, werr) {
			return nil, unknown, p.finalErr(op, rerr, unknown, "")
		}
		wait := jitter(backoff)
		if time.Now().Add(wait).After(deadline) {
			return nil, unknown, p.finalErr(op, rerr, unknown, fmt.Sprintf("gave up after %d attempts (RetryTimeout %v)", attempt+1, p.cfg.RetryTimeout))
		}
		p.c.log.Debug("produce attempt failed, retrying", "topic", b.key.topic, "partition", part, "attempt", attempt+1,
			"code", code.String(), "err", rerr)
		p.c.refreshSoon(p.ctx, sent)
		if sleepCtx(p.ctx, wait) != nil {
			return nil, unknown, p.finalErr(op, rerr, unknown, "the producer was closed before the batch was acknowledged")
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// finalErr is the error of a batch that failed: the last attempt's error,
// or an outcome_unknown error when an earlier attempt may have written it.
func (p *Producer) finalErr(op string, last error, unknown bool, why string) error {
	err := wrapErr(op, last)
	if unknown && !IsOutcomeUnknown(err) {
		msg := "outcome unknown: an earlier attempt may have been written; last error: " + err.Error()
		if why != "" {
			msg = why + "; " + msg
		}
		return newError(op, codes.Unknown, KindOutcomeUnknown, "%s", msg)
	}
	if why != "" {
		var e *Error
		if errors.As(err, &e) {
			c := *e
			c.Message = why + ": " + e.Message
			return &c
		}
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

// answeredOffsets reads the offsets of a produce answer for n records:
// from its offset ranges (asked for), or one per record (an agent of an
// earlier release ignores the request for ranges).
func answeredOffsets(resp *pb.ProduceResponse, n int) ([]Offset, error) {
	offs := make([]Offset, 0, n)
	if len(resp.GetOffsets()) == 0 {
		for _, r := range resp.GetOffsetRanges() {
			if r.GetCount() <= 0 || r.GetCount() > int32(n-len(offs)) {
				return nil, fmt.Errorf("the agent answered a range of %d offsets for %d records, %d of them placed", r.GetCount(), n, len(offs))
			}
			if r.GetBaseOffset() < 0 || r.GetBaseOffset() > math.MaxInt64-int64(r.GetCount()) {
				return nil, fmt.Errorf("the agent answered a range of %d offsets from %d", r.GetCount(), r.GetBaseOffset())
			}
			for i := range int64(r.GetCount()) {
				offs = append(offs, Offset{Partition: r.GetPartition(), Offset: r.GetBaseOffset() + i})
			}
		}
	} else {
		for _, o := range resp.GetOffsets() {
			if o.GetOffset() < 0 {
				return nil, fmt.Errorf("the agent answered offset %d", o.GetOffset())
			}
			offs = append(offs, Offset{Partition: o.GetPartition(), Offset: o.GetOffset()})
		}
	}
	if len(offs) != n {
		return nil, fmt.Errorf("the agent answered %d offsets for %d records", len(offs), n)
	}
	return offs, nil
}
