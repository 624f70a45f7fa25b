package partition

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// Group commit across partitions and requests (DESIGN.md "Proposal
// coalescer"). Every AppendBatch this agent proposes — the batchers' and
// the idempotent producers' — goes through one coalescer. It proposes the
// first batch at once when nothing is in flight; while its entries are in
// flight (MaxInFlight) it gathers every batch that becomes ready, of any
// partition, and proposes them together as one AppendBatches entry when a
// slot frees. An idle agent adds no wait; a busy one pays one Raft commit
// (and, on an agent that is not the Raft leader, one forward) per entry
// instead of per batch. Apply gives every batch its own result.
//
// Order: a batch queued before another is never in a later entry, and
// within an entry batches keep their queue order. Entries are started in
// sealing order from run's goroutine through the orderedProposer (on the
// Raft leader that enqueues them into Raft in that order; elsewhere it
// forwards each entry once the leader has enqueued the one before) and,
// up to MaxInFlight, awaited
// concurrently. See DESIGN.md "Proposal coalescer" for what is ordered.

// CoalescerConfig bounds the proposal coalescer.
type CoalescerConfig struct {
	// MaxInFlight is how many entries may be proposed and not yet applied
	// at once (default 2: one may commit while the next is written and
	// replicated; later batches gather meanwhile).
	MaxInFlight int
	// MaxBytes seals an entry once its batches' records reach this many
	// bytes (default 4 MiB; a larger single batch still goes alone).
	MaxBytes int
	// MaxBatches seals an entry at this many batches (default 1024, at
	// most fsm.MaxBatchesPerEntry).
	MaxBatches int
}

func (c CoalescerConfig) withDefaults() CoalescerConfig {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 2
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 4 << 20
	}
	if c.MaxBatches <= 0 || c.MaxBatches > fsm.MaxBatchesPerEntry {
		c.MaxBatches = min(1024, fsm.MaxBatchesPerEntry)
	}
	return c
}

// appendCall is one AppendBatch handed to the Sequencer; done is closed
// once res or err is set.
type appendCall struct {
	batch *fsm.AppendBatch
	done  chan struct{}
	res   *fsm.Result
	err   error
}

// wait returns the batch's own apply result (errors as Proposer.Propose
// returns them). If ctx ends first the outcome is unknown.
func (c *appendCall) wait(ctx context.Context) (*fsm.Result, error) {
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", fsm.ErrOutcomeUnknown, ctx.Err())
	}
}

// coalescer is the agent's Sequencer over the Proposer.
type coalescer struct {
	cfg     CoalescerConfig
	prop    Proposer
	tasks   *group
	log     *slog.Logger
	entries prometheus.Histogram // batches per proposed entry

	in     chan *appendCall
	slots  chan struct{}
	queued atomic.Int64 // batches queued since start (read by tests)

	sendMu  sync.RWMutex // read: a send in progress; write: stopping
	started bool         // under sendMu (write)
	stopped bool
}

func newCoalescer(cfg CoalescerConfig, prop Proposer, tasks *group, log *slog.Logger, reg prometheus.Registerer) *coalescer {
	cfg = cfg.withDefaults()
	c := &coalescer{cfg: cfg, prop: prop, tasks: tasks, log: log,
		in: make(chan *appendCall, 4096), slots: make(chan struct{}, cfg.MaxInFlight),
		entries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamhouse_produce_entry_batches", Help: "Record batches per proposed Raft entry (group commit across partitions and requests).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		})}
	if reg != nil {
		reg.MustRegister(c.entries)
	}
	return c
}

// Sequence queues b behind every batch queued before it and returns at
// once; the call's wait gives b's own result. Errors (nothing queued)
// wrap fsm.ErrUnavailable.
func (c *coalescer) Sequence(ctx context.Context, b *fsm.AppendBatch) (*appendCall, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.stopped {
		return nil, errShuttingDown
	}
	call := &appendCall{batch: b, done: make(chan struct{})}
	select {
	case c.in <- call:
		c.queued.Add(1)
		return call, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", fsm.ErrUnavailable, ctx.Err())
	case <-c.tasks.Stopping():
		return nil, errShuttingDown
	}
}

// start runs the coalescer's goroutine in the producer's group on first use.
func (c *coalescer) start() error {
	c.sendMu.RLock()
	started, stopped := c.started, c.stopped
	c.sendMu.RUnlock()
	if started && !stopped {
		return nil
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.stopped {
		return errShuttingDown
	}
	if !c.started {
		if !c.tasks.Go("coalescer", c.run) {
			return errShuttingDown
		}
		c.started = true
	}
	return nil
}

// run seals and proposes entries until ctx ends. Proposals run on
// goroutines of their own, owned by run: it returns only after every one
// of them did.
func (c *coalescer) run(ctx context.Context) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		var entry []*appendCall
		size := 0
		select {
		case call := <-c.in:
			entry, size = append(entry, call), len(call.batch.Records)
		case <-ctx.Done():
			c.shutdown()
			return
		}
		c.gather(&entry, &size)
		if !c.acquireSlot(ctx, &entry, &size) {
			finish(entry, nil, errShuttingDown)
			c.shutdown()
			return
		}
		c.gather(&entry, &size) // what arrived while the slot freed
		c.entries.Observe(float64(len(entry)))
		wait := c.startPropose(ctx, entry)
		inflight.Add(1)
		go func(entry []*appendCall) {
			defer inflight.Done()
			defer func() { <-c.slots }()
			c.finishEntry(entry, wait)
		}(entry)
	}
}

// startPropose starts proposing entry as one Raft entry — a plain
// AppendBatch when it holds one batch, else AppendBatches — and returns
// the wait for its result. With an orderedProposer the entry is ordered
// behind every entry started before it when startPropose returns; with a
// plain Proposer (tests) the proposal runs in wait, unordered.
func (c *coalescer) startPropose(ctx context.Context, entry []*appendCall) func() (*fsm.Result, error) {
	var cmd []byte
	if len(entry) == 1 {
		cmd = fsm.Encode(entry[0].batch)
	} else {
		batches := &fsm.AppendBatches{Batches: make([]*fsm.AppendBatch, len(entry))}
		for i, call := range entry {
			batches.Batches[i] = call.batch
		}
		cmd = fsm.Encode(batches)
	}
	if op, ok := c.prop.(orderedProposer); ok {
		return op.StartPropose(ctx, cmd)
	}
	return func() (*fsm.Result, error) { return c.prop.Propose(ctx, cmd) }
}

func (c *coalescer) full(entry []*appendCall, size int) bool {
	return len(entry) >= c.cfg.MaxBatches || size >= c.cfg.MaxBytes
}

// gather adds what is already queued until the entry is full.
func (c *coalescer) gather(entry *[]*appendCall, size *int) {
	for !c.full(*entry, *size) {
		select {
		case call := <-c.in:
			*entry, *size = append(*entry, call), *size+len(call.batch.Records)
		default:
			return
		}
	}
}

// acquireSlot takes an in-flight slot, gathering what is queued meanwhile
// until the entry is full. It returns false when ctx ended.
func (c *coalescer) acquireSlot(ctx context.Context, entry *[]*appendCall, size *int) bool {
	for {
		if c.full(*entry, *size) {
			select {
			case c.slots <- struct{}{}:
				return true
			case <-ctx.Done():
				return false
			}
		}
		select {
		case c.slots <- struct{}{}:
			return true
		case call := <-c.in:
			*entry, *size = append(*entry, call), *size+len(call.batch.Records)
		case <-ctx.Done():
			return false
		}
	}
}

// shutdown refuses new calls once no send is in progress (senders select
// on the group's context) and fails what was queued: definitely not
// written.
func (c *coalescer) shutdown() {
	c.sendMu.Lock()
	c.stopped = true
	c.sendMu.Unlock()
	for {
		select {
		case call := <-c.in:
			finish([]*appendCall{call}, nil, errShuttingDown)
		default:
			return
		}
	}
}

// finishEntry waits for entry's result and hands every call its own.
func (c *coalescer) finishEntry(entry []*appendCall, wait func() (*fsm.Result, error)) {
	res, err := wait()
	if err != nil || len(entry) == 1 {
		finish(entry, []*fsm.Result{res}, err)
		return
	}
	if len(res.Batches) != len(entry) {
		err := fmt.Errorf("%w: %d results for an entry of %d batches", fsm.ErrOutcomeUnknown, len(res.Batches), len(entry))
		finish(entry, nil, err)
		return
	}
	results := make([]*fsm.Result, len(entry))
	for i := range res.Batches {
		results[i] = &res.Batches[i]
	}
	finish(entry, results, nil)
}

// finish completes calls: with err when set (the whole entry's outcome),
// else with their own results.
func finish(calls []*appendCall, results []*fsm.Result, err error) {
	for i, call := range calls {
		if err != nil {
			call.err = err
		} else {
			call.res = results[i]
		}
		close(call.done)
	}
}
