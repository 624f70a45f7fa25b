package kafka

import (
	"context"
	"errors"
	"math"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// Idempotent producers. Kafka's producer id (int64) and epoch (int16) are
// the FSM's producer id (uint64) and epoch (uint32); an id or epoch that
// does not fit is never handed out (an exhausted epoch gets a new id, as
// Kafka does). Kafka sequences are int32 and wrap to 0 after MaxInt32; the
// FSM's are int64 and do not wrap, so a wrapped Kafka sequence is the FSM
// sequence minus 2^31 per wrap (seqWraps).

// handleInitProducerID issues a producer id, or bumps the epoch of the one
// the client names (v3+). Transactional ids are refused: transactions are
// not supported.
func (s *Server) handleInitProducerID(ctx context.Context, c *Conn, req *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	id, err := s.initProducer(ctx, c, req)
	if err != nil {
		resp.ErrorCode = initProducerCode(err)
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = int64(id.ID), int16(id.Epoch)
	return resp, nil
}

// initProducer bumps the named producer's epoch when it is ours to bump,
// else (or when the epoch would not fit in int16) issues a new producer.
func (s *Server) initProducer(ctx context.Context, c *Conn, req *kmsg.InitProducerIDRequest) (fsm.ProducerIdentity, error) {
	if req.ProducerID > 0 {
		id, err := s.cfg.Idempotent.InitProducer(ctx, uint64(req.ProducerID), c.Principal)
		switch {
		case err == nil && id.Epoch <= math.MaxInt16:
			return id, nil
		case err == nil, errors.Is(err, fsm.ErrUnknownProducer), errors.Is(err, fsm.ErrProducerNotOwned):
			// Exhausted, expired or not ours: a fresh producer instead.
		default:
			return fsm.ProducerIdentity{}, err
		}
	}
	id, err := s.cfg.Idempotent.InitProducer(ctx, 0, c.Principal)
	if err == nil && (id.ID > math.MaxInt64 || id.Epoch > math.MaxInt16) {
		return fsm.ProducerIdentity{}, errProducerIDSpace
	}
	return id, err
}

var errProducerIDSpace = errors.New("producer id space exhausted")

func initProducerCode(err error) int16 {
	switch {
	case errors.Is(err, errProducerIDSpace):
		return kerr.UnknownServerError.Code
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, fsm.ErrOutcomeUnknown),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, fsm.ErrNotLeader):
		return kerr.CoordinatorNotAvailable.Code // retriable
	}
	return errorCode(err)
}

// seqKey names one producer's sequence space in one partition.
type seqKey struct {
	producer  uint64
	epoch     uint32
	topic     string
	partition int32
}

// seqWraps remembers, per producer session and partition, how many times
// its Kafka sequence wrapped past MaxInt32 (only non-zero entries). It is
// rebuilt on demand: an out-of-order answer is retried once as the next
// wrap, which the FSM refused without writing anything.
type seqWraps struct {
	mu sync.Mutex
	m  map[seqKey]int64
}

func (w *seqWraps) get(k seqKey) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[k]
}

func (w *seqWraps) set(k seqKey, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[seqKey]int64{}
	}
	w.m[k] = n
}

// writeIdempotent appends an idempotent batch. A duplicate of one of the
// producer's recent batches answers success with the original offsets, as
// Kafka does.
func (s *Server) writeIdempotent(ctx context.Context, c *Conn, p *producePart, b *producedBatch) (int64, error) {
	if b.producerID <= 0 || b.producerEpoch < 0 || b.baseSequence < 0 {
		return 0, &batchError{code: kerr.UnknownProducerID.Code, msg: "producer id, epoch and base sequence must not be negative"}
	}
	key := seqKey{producer: uint64(b.producerID), epoch: uint32(b.producerEpoch), topic: p.topic, partition: p.info.Partition}
	batch := fsm.IdempotentBatch{
		Topic: p.topic, Partition: p.info.Partition, Records: b.records, Owner: c.Principal,
		Producer: fsm.ProducerIdentity{ID: key.producer, Epoch: key.epoch},
	}
	wraps := s.wraps.get(key)
	try := func(w int64) (fsm.IdempotentResult, error) {
		batch.BaseSeq = int64(b.baseSequence) + w<<31
		return s.cfg.Idempotent.ProduceIdempotent(ctx, batch)
	}
	res, err := try(wraps)
	switch {
	case errors.Is(err, fsm.ErrSequenceGap) && wraps > 0:
		// Perhaps a resend of a batch from before the last wrap (its
		// answer was lost): as that wrap it is a duplicate or the next
		// batch; anything else stays the gap (refused, nothing written).
		if r2, err2 := try(wraps - 1); err2 == nil {
			res, err = r2, nil
		}
	case errors.Is(err, fsm.ErrSequenceGap):
	case errors.Is(err, fsm.ErrOutOfOrderSequence):
		// Perhaps the sequence wrapped: the FSM refused without writing,
		// so asking again as the next wrap is safe. A gap there may be
		// filled by batches still in flight: it is answered as a gap.
		r2, err2 := try(wraps + 1)
		switch {
		case err2 == nil:
			s.wraps.set(key, wraps+1)
			res, err = r2, nil
		case errors.Is(err2, fsm.ErrSequenceGap):
			err = err2
		}
	}
	if errors.Is(err, fsm.ErrSequenceGap) {
		// The missing batches may still arrive (in flight on a connection
		// the client gave up on): a retriable answer makes the client
		// resend this batch as it is. OUT_OF_ORDER_SEQUENCE_NUMBER would
		// make franz-go bump its epoch and renumber the batch, written
		// twice once the stale copy lands. Nothing was written.
		return 0, &batchError{code: kerr.NotEnoughReplicas.Code, msg: "sequence gap: an earlier batch of this producer has not arrived yet; resend this one"}
	}
	if err != nil {
		return 0, err
	}
	return res.BaseOffset, nil
}
