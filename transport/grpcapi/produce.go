package grpcapi

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Produce implements pb.StreamHouseServer. The whole request is validated
// before anything is written: one bad record rejects it.
func (s *service) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	if req.GetTopic() == "" {
		return nil, invalid("topic is required")
	}
	if err := s.authorize(ctx, transport.ScopeWrite, req.GetTopic()); err != nil {
		return nil, err
	}
	if len(req.GetRecords()) == 0 {
		return nil, invalid("records must not be empty")
	}
	in := newRequestRecords(len(req.GetRecords()), req.ProducerId != nil)
	total := 0
	for i, r := range req.GetRecords() {
		pr, err := recordOf(i, r)
		if err != nil {
			return nil, err
		}
		size := pr.Record.Size()
		if s.cfg.MaxRecordBytes > 0 && size > s.cfg.MaxRecordBytes {
			return nil, fmt.Errorf("%w: records[%d] is %d bytes, the limit is %d", fsm.ErrRecordTooLarge, i, size, s.cfg.MaxRecordBytes)
		}
		total += size
		in.set(i, pr)
	}
	if total > s.maxRequest {
		return nil, fmt.Errorf("%w: the records are %d bytes, the request limit is %d; split the batch", transport.ErrRequestTooLarge, total, s.maxRequest)
	}
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaProduce, int64(total)); err != nil {
		return nil, err
	}
	if req.ProducerId != nil {
		return s.produceIdempotent(ctx, req, in.recs, in.parts)
	}
	recs := in.plain
	if req.GetProducerEpoch() != 0 || req.GetBaseSequence() != 0 {
		return nil, invalid("producer_epoch and base_sequence are only meaningful with producer_id")
	}
	offs, err := s.cfg.Producer.Produce(ctx, req.GetTopic(), recs)
	if err != nil {
		return nil, transport.AfterProposal(err) // unclassified: the records may have been proposed
	}
	if len(offs) != len(recs) {
		// The records were acknowledged, but we cannot say where: do not
		// claim failure (a retry would duplicate them).
		return nil, fmt.Errorf("%w: producer returned %d offsets for %d records", fsm.ErrOutcomeUnknown, len(offs), len(recs))
	}
	out := &pb.ProduceResponse{}
	if req.GetOffsetRanges() {
		for _, o := range offs {
			out.OffsetRanges = extendRange(out.OffsetRanges, o.Partition, o.Offset, 1)
		}
		return out, nil
	}
	out.Offsets = recordOffsets(len(offs))
	for i, o := range offs {
		out.Offsets[i].Partition, out.Offsets[i].Offset = o.Partition, o.Offset
	}
	return out, nil
}

// extendRange appends count records of partition at offset to runs: to
// the last run when they continue it, else as a new run.
func extendRange(runs []*pb.OffsetRange, partition int32, offset int64, count int32) []*pb.OffsetRange {
	if n := len(runs); n > 0 {
		last := runs[n-1]
		if last.Partition == partition && last.BaseOffset+int64(last.Count) == offset {
			last.Count += count
			return runs
		}
	}
	return append(runs, &pb.OffsetRange{Partition: partition, BaseOffset: offset, Count: count})
}

// recordOffsets returns n zero RecordOffset messages allocated together
// (one allocation per response, not one per record).
func recordOffsets(n int) []*pb.RecordOffset {
	msgs := make([]pb.RecordOffset, n)
	out := make([]*pb.RecordOffset, n)
	for i := range msgs {
		out[i] = &msgs[i]
	}
	return out
}

// requestRecords holds a request's converted records in the layout its
// path takes, so they are not copied from one into the other: plain for a
// produce, or for an idempotent one the batch's records with each
// record's partition beside them.
type requestRecords struct {
	plain []fsm.ProduceRecord
	recs  []fsm.Record
	parts []int32
}

func newRequestRecords(n int, idempotent bool) requestRecords {
	if idempotent {
		return requestRecords{recs: make([]fsm.Record, n), parts: make([]int32, n)}
	}
	return requestRecords{plain: make([]fsm.ProduceRecord, n)}
}

func (in requestRecords) set(i int, pr fsm.ProduceRecord) {
	if in.plain != nil {
		in.plain[i] = pr
		return
	}
	in.recs[i], in.parts[i] = pr.Record, pr.Partition
}

// recordOf converts and checks records[i] of a produce request (all but
// its size).
func recordOf(i int, r *pb.ProduceRecord) (fsm.ProduceRecord, error) {
	if r == nil {
		return fsm.ProduceRecord{}, invalid("records[%d] is null", i)
	}
	pr := fsm.ProduceRecord{Partition: -1, Record: fsm.Record{
		Timestamp: r.GetTimestampMs(), Key: r.Key, Value: r.GetValue(),
	}}
	switch {
	case r.GetValueNull() && len(r.GetValue()) > 0:
		return pr, invalid("records[%d] sets value_null with a non-empty value", i)
	case r.GetValueNull():
		pr.Record.Value = nil // a tombstone
	case pr.Record.Value == nil:
		pr.Record.Value = []byte{}
	}
	if r.Partition != nil {
		switch p := r.GetPartition(); {
		case p >= 0:
			pr.Partition = p
		case p != -1:
			return pr, invalid("records[%d].partition must be >= 0, or -1/unset to let the partitioner choose; got %d", i, p)
		}
	}
	if pr.Record.Timestamp < 0 {
		return pr, invalid("records[%d].timestamp_ms must be unix milliseconds >= 0 (0 = the agent's clock), got %d", i, pr.Record.Timestamp)
	}
	if n := len(r.GetHeaders()); n > 0 {
		pr.Record.Headers = make([]fsm.Header, n)
		for j, h := range r.GetHeaders() {
			if h == nil {
				return pr, invalid("records[%d].headers[%d] is null", i, j)
			}
			pr.Record.Headers[j] = fsm.Header{Key: h.GetKey(), Value: h.GetValue()}
		}
	}
	return pr, nil
}

// produceIdempotent sends an idempotent batch: one explicit partition for
// every record.
func (s *service) produceIdempotent(ctx context.Context, req *pb.ProduceRequest, recs []fsm.Record, parts []int32) (*pb.ProduceResponse, error) {
	if s.cfg.Idempotent == nil {
		return nil, fmt.Errorf("%w: idempotent produce", errUnimplemented)
	}
	if req.GetProducerId() == 0 {
		return nil, invalid("producer_id 0 is not a producer id (omit producer_id for a plain produce, or call InitProducer)")
	}
	if req.GetBaseSequence() < 0 {
		return nil, invalid("base_sequence must be >= 0, got %d", req.GetBaseSequence())
	}
	part := parts[0]
	for i, p := range parts {
		if p < 0 || p != part {
			return nil, invalid("records[%d].partition: an idempotent produce (producer_id set) names the same explicit partition (>= 0) in every record; got %s after %s",
				i, partitionText(p), partitionText(part))
		}
	}
	batch := fsm.IdempotentBatch{
		Topic: req.GetTopic(), Partition: part, BaseSeq: req.GetBaseSequence(),
		Producer: fsm.ProducerIdentity{ID: req.GetProducerId(), Epoch: req.GetProducerEpoch()},
		Records:  recs, Owner: callerName(ctx),
	}
	res, err := s.cfg.Idempotent.ProduceIdempotent(ctx, batch)
	if err != nil {
		return nil, transport.AfterProposal(err) // unclassified: the batch may have been proposed
	}
	if int(res.Count) != len(recs) {
		return nil, fmt.Errorf("%w: the batch of %d records was acknowledged as %d records", fsm.ErrOutcomeUnknown, len(recs), res.Count)
	}
	if req.GetOffsetRanges() {
		return &pb.ProduceResponse{Duplicate: res.Duplicate, OffsetRanges: extendRange(nil, part, res.BaseOffset, int32(len(recs)))}, nil
	}
	out := &pb.ProduceResponse{Offsets: recordOffsets(len(recs)), Duplicate: res.Duplicate}
	for i := range recs {
		out.Offsets[i].Partition, out.Offsets[i].Offset = part, res.BaseOffset+int64(i)
	}
	return out, nil
}

// callerName is the name of the caller's API key ("" without API keys): the
// owner recorded for the producers it creates.
func callerName(ctx context.Context) string {
	if p, ok := transport.PrincipalFrom(ctx); ok {
		return p.Key.Name
	}
	return ""
}

func partitionText(p int32) string {
	if p < 0 {
		return "no partition"
	}
	return fmt.Sprintf("partition %d", p)
}

// InitProducer implements pb.StreamHouseServer.
func (s *service) InitProducer(ctx context.Context, req *pb.InitProducerRequest) (*pb.InitProducerResponse, error) {
	if s.cfg.Idempotent == nil {
		return nil, fmt.Errorf("%w: idempotent producers", errUnimplemented)
	}
	if req.ProducerId != nil && req.GetProducerId() == 0 {
		return nil, invalid("producer_id 0 is not a producer id (omit it to get a new one)")
	}
	id, err := s.cfg.Idempotent.InitProducer(ctx, req.GetProducerId(), callerName(ctx))
	if err != nil {
		return nil, err
	}
	return &pb.InitProducerResponse{ProducerId: id.ID, ProducerEpoch: id.Epoch}, nil
}
