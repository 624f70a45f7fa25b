package partition

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Batcher lifecycle (DESIGN.md "Batchers"). A partition's batcher — one
// goroutine and its queue — exists only while the partition is being
// produced to: it retires after IdleTimeout with nothing queued or in
// flight, or as soon as the sweeper sees its partition deleted or led
// elsewhere and it is idle. The next record starts a new one.
//
// Retirement cannot lose or reorder a request:
//   - A sender looks the batcher up under Producer.mu and sends holding
//     batcher.sendMu for reading; retire holds Producer.mu, takes sendMu for
//     writing only with TryLock (a send in progress means "not idle"), and
//     requires an empty queue and no proposal in flight. It then marks the
//     batcher stopped and removes it from the map, so a sender that looked
//     it up earlier finds it stopped and starts over with a new batcher.
//   - The new batcher proposes only after every proposal of the old one has
//     returned, so batches of one partition stay in order.
//   - Idempotent batches never pass through a batcher: the producer
//     sequence state lives in the FSM, which a batcher exit cannot touch.

// defaultBatcherIdle is ProducerConfig.IdleTimeout's default.
const defaultBatcherIdle = 10 * time.Second

// errRetired: the batcher retired between lookup and send; look it up again.
var errRetired = errors.New("partition: batcher retired")

// errShuttingDown refuses work once the service is closing: definitely not
// written.
var errShuttingDown = fmt.Errorf("%w: agent shutting down", fsm.ErrUnavailable)

// request is one Produce call's records for one partition.
type request struct {
	recs []fsm.Record
	idx  []int
	done chan struct{}
	base int64
	err  error
}

type batcher struct {
	p     *Producer
	key   fsm.PartitionKey
	queue chan *request
	slots chan struct{} // sealed batches not yet applied (MaxInFlight)
	kick  chan struct{} // the sweeper asks an unneeded batcher to retire

	sendMu  sync.RWMutex // read: a send in progress; write: retiring
	stopped bool         // under sendMu
}

// enqueue hands r to its partition's batcher, starting one if needed.
func (p *Producer) enqueue(ctx context.Context, k fsm.PartitionKey, r *request) error {
	for {
		b, err := p.batcher(k)
		if err != nil {
			return err
		}
		if err := b.submit(ctx, r); !errors.Is(err, errRetired) {
			return err
		}
	}
}

func (p *Producer) batcher(k fsm.PartitionKey) (*batcher, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.batchers[k]
	if b != nil {
		return b, nil
	}
	b = &batcher{p: p, key: k, queue: make(chan *request, 1024),
		slots: make(chan struct{}, p.cfg.MaxInFlight), kick: make(chan struct{}, 1)}
	// The batcher's goroutine waits for p.mu (retire) before it can leave
	// the map, so it is in the map before it can retire.
	if !p.tasks.Go("batcher", b.run) {
		return nil, errShuttingDown
	}
	p.batchers[k] = b
	p.metrics.Batchers.Inc()
	return b, nil
}

func (b *batcher) submit(ctx context.Context, r *request) error {
	b.sendMu.RLock()
	defer b.sendMu.RUnlock()
	if b.stopped {
		return errRetired
	}
	select {
	case b.queue <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", fsm.ErrUnavailable, ctx.Err())
	case <-b.p.tasks.Stopping():
		return errShuttingDown
	}
}

// retire stops the batcher if nothing is queued, being sent or in flight.
// force (shutdown) skips the idleness checks and waits for senders, which
// return promptly because they select on the producer's context.
func (b *batcher) retire(force bool) bool {
	b.p.mu.Lock()
	defer b.p.mu.Unlock()
	if force {
		b.sendMu.Lock()
	} else if !b.sendMu.TryLock() {
		return false
	}
	defer b.sendMu.Unlock()
	if !force && (len(b.queue) > 0 || len(b.slots) > 0) {
		return false
	}
	b.stopped = true
	if b.p.batchers[b.key] == b {
		delete(b.p.batchers, b.key)
	}
	b.p.metrics.Batchers.Dec()
	return true
}

// run seals batches: it takes whatever is queued; if the partition has a
// proposal in flight it waits (up to BatchTimeout, or until BatchSize
// records) for more, since the proposal could not go out sooner anyway.
func (b *batcher) run(ctx context.Context) {
	// Proposals run on goroutines of their own, owned by the batcher: it
	// returns only after every one of them did.
	var inflight sync.WaitGroup
	defer inflight.Wait()
	idle := time.NewTimer(b.p.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		var batch []*request
		n := 0
		select {
		case r := <-b.queue:
			batch, n = append(batch, r), len(r.recs)
		case <-idle.C:
			if b.retire(false) {
				return
			}
			idle.Reset(b.p.cfg.IdleTimeout)
			continue
		case <-b.kick:
			if b.retire(false) {
				return
			}
			continue
		case <-ctx.Done():
			b.shutdown()
			return
		}
		b.gather(&batch, &n)
		if !b.acquireSlot(ctx, &batch, &n) {
			return
		}
		// Sealed in order: the sequencer keeps the partition's batches in
		// the order they were queued.
		call, err := b.seal(ctx, batch, n)
		if err != nil {
			b.fail(batch, err)
			<-b.slots
			continue
		}
		inflight.Add(1)
		go func(call *appendCall, batch []*request) {
			defer inflight.Done()
			defer func() { <-b.slots }()
			b.complete(call, batch)
		}(call, batch)
		idle.Reset(b.p.cfg.IdleTimeout)
	}
}

// gather adds what is already queued, up to BatchSize records.
func (b *batcher) gather(batch *[]*request, n *int) {
	for *n < b.p.cfg.BatchSize {
		select {
		case r := <-b.queue:
			*batch, *n = append(*batch, r), *n+len(r.recs)
		default:
			return
		}
	}
}

// acquireSlot takes a proposal slot, gathering more queued requests while
// it waits, until the batch is full or the batch timeout passed. It returns
// false when the producer is closing (the batch is failed).
func (b *batcher) acquireSlot(ctx context.Context, batch *[]*request, n *int) bool {
	var timeout <-chan time.Time
	if b.p.cfg.BatchTimeout > 0 {
		timer := time.NewTimer(b.p.cfg.BatchTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	stop := func() bool {
		b.fail(*batch, errShuttingDown)
		b.shutdown()
		return false
	}
	gather := true
	for {
		if !gather || *n >= b.p.cfg.BatchSize {
			select {
			case b.slots <- struct{}{}:
				return true
			case <-ctx.Done():
				return stop()
			}
		}
		select {
		case b.slots <- struct{}{}:
			return true
		case r := <-b.queue:
			*batch, *n = append(*batch, r), *n+len(r.recs)
		case <-timeout:
			gather = false
		case <-ctx.Done():
			return stop()
		}
	}
}

// shutdown retires the batcher once no send is in progress and fails
// whatever was queued.
func (b *batcher) shutdown() {
	b.retire(true)
	for {
		select {
		case r := <-b.queue:
			b.fail([]*request{r}, errShuttingDown)
		default:
			return
		}
	}
}

func (b *batcher) fail(batch []*request, err error) {
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// sweepLoop runs the sweeper until ctx ends: it retires the batchers of
// partitions that were deleted or are now led by another agent (as soon
// as they are idle) and forgets the round-robin state of deleted topics.
// Without it batchers still retire after IdleTimeout.
func (p *Producer) sweepLoop(ctx context.Context) {
	for {
		ch := p.meta.Changed()
		p.sweep()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// sweep kicks the batchers this agent no longer needs. It never calls the
// metadata while holding Producer.mu.
func (p *Producer) sweep() {
	p.mu.Lock()
	bs := make([]*batcher, 0, len(p.batchers))
	for _, b := range p.batchers {
		bs = append(bs, b)
	}
	topics := make([]uint64, 0, len(p.rr))
	for id := range p.rr {
		topics = append(topics, id)
	}
	p.mu.Unlock()
	for _, id := range topics {
		if _, ok := p.meta.TopicByID(id); !ok {
			p.mu.Lock()
			delete(p.rr, id)
			p.mu.Unlock()
		}
	}
	for _, b := range bs {
		info, ok := p.meta.Partition(b.key.TopicID, b.key.Partition)
		if ok && info.Leader == p.nodeID {
			continue
		}
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}
