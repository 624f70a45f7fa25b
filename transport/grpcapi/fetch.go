package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// StartOffsetHeader is the response header a Subscribe stream sends as soon
// as it has resolved its start offset (earliest/latest become a number).
// Records produced after the client has received the header are seen by a
// subscription that started at OffsetLatest.
const StartOffsetHeader = "streamhouse-start-offset"

// readParams are the validated common fields of Fetch and Subscribe.
type readParams struct {
	req     fsm.FetchRequest
	special int64 // OffsetEarliest, OffsetLatest or 0 for an explicit offset
}

func (s *service) readParams(topic string, partition int32, offset int64, maxRecords, maxBytes int32, waitMs int64) (readParams, error) {
	p := readParams{req: fsm.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
		MaxRecords: int(maxRecords), MaxBytes: int(maxBytes), WaitMs: waitMs}}
	switch {
	case topic == "":
		return p, invalid("topic is required")
	case partition < 0:
		return p, invalid("partition must be >= 0, got %d", partition)
	case offset < OffsetEarliest:
		return p, invalid("offset must be >= 0, -1 (latest) or -2 (earliest); got %d", offset)
	case maxRecords < 0:
		return p, invalid("max_records must not be negative (0 = %d), got %d", DefaultFetchRecords, maxRecords)
	case maxBytes < 0:
		return p, invalid("max_bytes must not be negative (0 = %d), got %d", DefaultFetchBytes, maxBytes)
	case waitMs < 0:
		return p, invalid("max_wait_ms must not be negative, got %d", waitMs)
	}
	if p.req.MaxRecords == 0 {
		p.req.MaxRecords = DefaultFetchRecords
	}
	if p.req.MaxBytes == 0 {
		p.req.MaxBytes = DefaultFetchBytes
	}
	if offset < 0 {
		p.special = offset
	}
	return p, nil
}

// resolve turns earliest/latest into an offset.
func (s *service) resolve(p *readParams) error {
	if p.special == 0 {
		return nil
	}
	ps, err := s.cfg.Topics.Partitions(p.req.Topic)
	if err != nil {
		return err
	}
	for _, info := range ps {
		if info.Partition == p.req.Partition {
			p.req.Offset = info.LowWatermark
			if p.special == OffsetLatest {
				p.req.Offset = info.NextOffset
			}
			return nil
		}
	}
	return fmt.Errorf("%w: partition %d of topic %q (it has %d)", fsm.ErrPartitionInvalid, p.req.Partition, p.req.Topic, len(ps))
}

// fetch runs one Fetch. From the earliest offset, a low watermark that
// retention moved since it was resolved is followed (once). A poll ended
// by the agent stopping is UNAVAILABLE.
//
// The key's fetch quota admits the read when not in debt, and the bytes
// returned are charged after it: an over-quota key's next read waits.
func (s *service) fetch(ctx context.Context, p *readParams) (res fsm.FetchResult, err error) {
	if err := s.cfg.Quotas.Take(ctx, transport.QuotaFetch, 0); err != nil {
		return res, err
	}
	defer func() { s.cfg.Quotas.Charge(ctx, transport.QuotaFetch, transport.FetchedBytes(res.Records)) }()
	pctx, cancel := s.pollContext(ctx)
	defer cancel()
	res, err = s.cfg.Fetcher.Fetch(pctx, p.req)
	var oor *fsm.OffsetOutOfRangeError
	if err != nil && p.special == OffsetEarliest && errors.As(err, &oor) && oor.LowWatermark > p.req.Offset {
		p.req.Offset = oor.LowWatermark
		res, err = s.cfg.Fetcher.Fetch(pctx, p.req)
	}
	if err != nil && ctx.Err() == nil && pctx.Err() != nil && s.stopping() {
		return res, fmt.Errorf("%w: the agent is shutting down; retry from offset %d, possibly on another agent", fsm.ErrUnavailable, p.req.Offset)
	}
	return res, err
}

func toFetched(recs []fsm.FetchedRecord, part int32) []*pb.FetchedRecord {
	out := make([]*pb.FetchedRecord, len(recs))
	for i := range recs {
		r := &recs[i]
		// A nil key leaves the optional field unset (null); an empty
		// non-nil key is sent as set-and-empty.
		fr := &pb.FetchedRecord{Partition: part, Offset: r.Offset, TimestampMs: r.Timestamp, Key: r.Key, Value: r.Value, ValueNull: r.Value == nil}
		if len(r.Headers) > 0 {
			fr.Headers = make([]*pb.Header, len(r.Headers))
			for j, h := range r.Headers {
				fr.Headers[j] = &pb.Header{Key: h.Key, Value: h.Value}
			}
		}
		out[i] = fr
	}
	return out
}

// waitQuota waits out a quota error's retry time and reports true, or
// reports false at once for another error, or when ctx ends or the agent
// stops first.
func (s *service) waitQuota(ctx context.Context, err error) bool {
	var qe *transport.QuotaError
	if !errors.As(err, &qe) {
		return false
	}
	pctx, cancel := s.pollContext(ctx)
	defer cancel()
	t := time.NewTimer(qe.RetryAfter)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pctx.Done():
		return false
	}
}

// Fetch implements pb.StreamHouseServer.
func (s *service) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	if err := s.authorize(ctx, transport.ScopeRead, req.GetTopic()); err != nil {
		return nil, err
	}
	p, err := s.readParams(req.GetTopic(), req.GetPartition(), req.GetOffset(), req.GetMaxRecords(), req.GetMaxBytes(), req.GetMaxWaitMs())
	if err != nil {
		return nil, err
	}
	if err := s.resolve(&p); err != nil {
		return nil, err
	}
	res, err := s.fetch(ctx, &p)
	if err != nil {
		return nil, err
	}
	return &pb.FetchResponse{
		Records: toFetched(res.Records, p.req.Partition), NextOffset: res.NextOffset,
		HighWatermark: res.HighWatermark, LowWatermark: res.LowWatermark,
	}, nil
}

// Subscribe implements pb.StreamHouseServer: it fetches in a loop with
// long-polls and sends every non-empty batch, until the client cancels, the
// agent stops (UNAVAILABLE) or a fetch fails (e.g. OUT_OF_RANGE when
// retention overtakes a slow subscriber).
func (s *service) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.SubscribeResponse]) error {
	if err := s.authorize(stream.Context(), transport.ScopeRead, req.GetTopic()); err != nil {
		return err
	}
	p, err := s.readParams(req.GetTopic(), req.GetPartition(), req.GetOffset(), req.GetMaxRecords(), req.GetMaxBytes(), req.GetMaxWaitMs())
	if err != nil {
		return err
	}
	if p.req.WaitMs == 0 {
		p.req.WaitMs = DefaultSubscribeWait
	}
	if err := s.resolve(&p); err != nil {
		return err
	}
	ctx := stream.Context()
	if err := stream.SendHeader(metadata.Pairs(StartOffsetHeader, strconv.FormatInt(p.req.Offset, 10))); err != nil {
		return err
	}
	for {
		res, err := s.fetch(ctx, &p)
		if err != nil && s.waitQuota(ctx, err) {
			continue // over the fetch quota: the stream pauses, it does not end
		}
		if err != nil {
			return err
		}
		p.special = 0 // "earliest" is resolved for good once read from
		if len(res.Records) > 0 {
			if err := stream.Send(&pb.SubscribeResponse{
				Records: toFetched(res.Records, p.req.Partition), NextOffset: res.NextOffset,
				HighWatermark: res.HighWatermark, LowWatermark: res.LowWatermark,
			}); err != nil {
				return err
			}
		}
		if res.NextOffset > p.req.Offset {
			p.req.Offset = res.NextOffset
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
