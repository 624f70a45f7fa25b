package client

import (
	"context"
	"errors"
	"fmt"
)

// The idempotent producer's pipeline. Up to MaxInFlightPerPartition
// batches of one partition are in flight at once. Each is numbered when it
// is dispatched (number), in send order, and joins its partition's window,
// which runs from the oldest unresolved batch (neither acknowledged nor
// failed for good) to the newest: a batch leaves it only once every batch
// before it has left. The window, not just the requests in flight, is
// bounded by MaxInFlightPerPartition: while a batch waits to be resent,
// at most 4 batches after it can be applied, so the agent, which
// remembers a producer's last 5 batches per partition, still recognises
// the resent batch if an earlier attempt was written. The agent
// applies a batch only when its base sequence is the next one of the
// producer and partition, so the window's batches land in order whatever
// order the requests arrive in:
//
//   - A batch refused with OUT_OF_ORDER_SEQUENCE while a batch numbered
//     before it was still unresolved was not written; it waits until every
//     batch before it is resolved and is sent again with the same sequence
//     (Kafka's rule). The same answer for the first batch of the window is
//     a real disagreement: the batch fails and the producer re-initialises.
//   - A batch that fails for good without having been written, while later
//     batches are numbered behind it, leaves a gap no later batch can
//     cross; so does a batch given up with an unknown outcome. Both ask for
//     a new epoch (reinit), which fences every request of the old one and
//     renumbers the window from 0 in order. A batch that may have been
//     written under the old epoch is never renumbered: it fails with an
//     unknown outcome (renumbering it could write it twice).
//   - A batch that fails for good with no batch numbered behind it gives
//     its sequence back: the next batch reuses it, as before pipelining.
//
// Lock order: idMu (read-held while a batch is sent, write-held by reinit,
// so reinit runs when no attempt is in flight), then mu.

// step is what deliverIdempotent does after an attempt.
type step int

const (
	stepDone     step = iota // the batch is resolved
	stepAgain                // send it again (after a re-initialisation)
	stepWaitTurn             // wait until every batch before it is resolved, then send it again
)

// number gives b the next sequence of its partition under the current
// identity and appends it to the partition's window. p.mu is held.
func (p *Producer) number(ps *partState, b *batch) {
	b.seq, b.ident = ps.seq, p.ident
	ps.seq += int64(len(b.recs))
	ps.window = append(ps.window, b)
}

// deliverIdempotent sends b until it is resolved.
func (p *Producer) deliverIdempotent(ps *partState, b *batch) ([]Offset, error) {
	retriedUnknownProducer := false
	for {
		p.idMu.RLock()
		if err := p.usable(); err != nil && !errors.Is(err, ErrClosed) {
			p.idMu.RUnlock()
			return nil, p.fail(ps, b, err)
		}
		p.mu.Lock()
		reinit := p.needReinit.Load()
		id, seq, current := b.ident, b.seq, b.ident == p.ident
		first := len(ps.window) > 0 && ps.window[0] == b
		p.mu.Unlock()
		if reinit {
			p.idMu.RUnlock()
			if err := p.reinit(); err != nil {
				return nil, p.fail(ps, b, err)
			}
			continue
		}
		if !current {
			// Left out of the renumbering: it may have been written.
			p.idMu.RUnlock()
			return nil, p.fail(ps, b, fmt.Errorf("produce to %s/%d: the producer was re-initialised while the batch's outcome was unknown", b.key.topic, b.key.partition))
		}
		var (
			offs    []Offset
			unknown bool
			err     error
		)
		if !p.withSlot(b, func() { offs, unknown, err = p.attempts(b, &id, seq) }) {
			err = p.closedBeforeSend(b)
		}
		next, err := p.settle(ps, b, first, unknown, err, &retriedUnknownProducer)
		p.idMu.RUnlock()
		switch next {
		case stepDone:
			return offs, err
		case stepWaitTurn:
			if err := p.waitTurn(ps, b); err != nil {
				return nil, p.fail(ps, b, err)
			}
		}
	}
}

// settle records the outcome of b's attempts (err nil: acknowledged) and
// says what comes next; the error is the batch's when it is resolved.
// first says b was the first of its window when the attempts began.
func (p *Producer) settle(ps *partState, b *batch, first, unknown bool, err error, retriedUnknownProducer *bool) (step, error) {
	p.mu.Lock()
	b.unknown = b.unknown || unknown
	switch {
	case err == nil:
		ps.acked = max(ps.acked, b.seq+int64(len(b.recs)))
		p.resolveLocked(ps, b)
		p.mu.Unlock()
		return stepDone, nil
	case Kind(err) == KindOutOfOrderSequence && !first:
		// A batch numbered before b had not been applied: it was still
		// on its way, or it failed. b was not written.
		p.mu.Unlock()
		return stepWaitTurn, nil
	case Kind(err) == KindUnknownProducer && !*retriedUnknownProducer && !b.unknown:
		// The id expired (idle too long): nothing was written; get a new
		// id, which renumbers b, and send it again.
		*retriedUnknownProducer = true
		p.needReinit.Store(true)
		p.mu.Unlock()
		return stepAgain, nil
	case errors.Is(err, ErrFenced):
		if p.fatal == nil {
			p.fatal = err
		}
	case Kind(err) == KindOutOfOrderSequence:
		// The agent expects another sequence although nothing before b is
		// pending: only a new epoch brings the two back in line.
		p.needReinit.Store(true)
	}
	err = p.failLocked(ps, b, err)
	p.mu.Unlock()
	return stepDone, err
}

// fail resolves b with err.
func (p *Producer) fail(ps *partState, b *batch, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failLocked(ps, b, err)
}

// failLocked resolves b with err and keeps the partition's sequences
// usable: a batch that may have been written, or one with batches
// numbered behind it, asks for a new epoch (unless one already replaced
// the epoch b was numbered under); otherwise its sequence is given back.
// It returns b's error (outcome unknown when some attempt may have been
// written). p.mu is held.
func (p *Producer) failLocked(ps *partState, b *batch, err error) error {
	if b.unknown && !IsOutcomeUnknown(err) {
		err = p.finalErr(fmt.Sprintf("Produce %s/%d", b.key.topic, b.key.partition), err, true, "")
	}
	switch {
	case b.ident != p.ident:
	case b.unknown || unresolvedAfter(ps, b):
		p.needReinit.Store(true)
	default:
		ps.seq = b.seq
	}
	p.resolveLocked(ps, b)
	return err
}

// resolveLocked marks b resolved, drops the resolved batches at the front
// of its partition's window and wakes the batches waiting behind it. p.mu
// is held.
func (p *Producer) resolveLocked(ps *partState, b *batch) {
	b.resolved = true
	for len(ps.window) > 0 && ps.window[0].resolved {
		ps.window[0] = nil
		ps.window = ps.window[1:]
	}
	close(ps.changed)
	ps.changed = make(chan struct{})
}

// unresolvedAfter reports a batch numbered after b that is not resolved
// yet. p.mu is held.
func unresolvedAfter(ps *partState, b *batch) bool {
	after := false
	for _, w := range ps.window {
		if after && !w.resolved {
			return true
		}
		after = after || w == b
	}
	return false
}

// waitTurn waits until every batch numbered before b is resolved. If they
// left a gap before b's sequence (one failed), a new epoch is needed.
func (p *Producer) waitTurn(ps *partState, b *batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(ps.window) > 0 && ps.window[0] != b {
		ch := ps.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.ctx.Done():
			p.mu.Lock()
			return fmt.Errorf("produce to %s/%d: %w before the batch was acknowledged", b.key.topic, b.key.partition, ErrClosed)
		}
		p.mu.Lock()
	}
	if b.ident == p.ident && ps.acked < b.seq {
		p.needReinit.Store(true)
	}
	return nil
}

// reinit bumps the producer's epoch (or gets a new id when the old one is
// unknown) once no batch is in flight, and renumbers every window from 0.
func (p *Producer) reinit() error {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if !p.needReinit.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.RetryTimeout)
	defer cancel()
	backoff := p.cfg.RetryBackoff
	for {
		id, err := p.c.InitProducer(ctx, p.ident.ID)
		if k := Kind(err); k == KindUnknownProducer || k == KindPermissionDenied {
			// Expired, or issued to another API key (ours was renamed): a
			// new producer id starts over; it fails too if the key may not
			// produce at all.
			id, err = p.c.InitProducer(ctx, 0)
		}
		if err == nil {
			p.c.log.Info("idempotent producer re-initialised",
				"producer_id", id.ID, "epoch", id.Epoch, "previous_id", p.ident.ID, "previous_epoch", p.ident.Epoch)
			p.mu.Lock()
			p.ident = id
			for _, ps := range p.parts {
				p.renumber(ps)
			}
			p.needReinit.Store(false)
			p.mu.Unlock()
			return nil
		}
		if !IsRetriable(err) || sleepCtx(ctx, jitter(backoff)) != nil {
			return fmt.Errorf("re-initialise the idempotent producer: %w", err)
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// renumber restarts the sequences of ps at 0 under the new identity, in
// window order; a batch that may have been written keeps its old number
// (its sender fails it). p.mu is held.
func (p *Producer) renumber(ps *partState) {
	ps.seq, ps.acked = 0, 0
	window := ps.window[:0]
	for _, b := range ps.window {
		if b.resolved {
			continue
		}
		window = append(window, b)
		if !b.unknown {
			b.seq, b.ident = ps.seq, p.ident
			ps.seq += int64(len(b.recs))
		}
	}
	clear(ps.window[len(window):])
	ps.window = window
}
