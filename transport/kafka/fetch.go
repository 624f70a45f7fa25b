package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// Fetch is served by any agent (partition.Fetcher reads the local WAL and
// the segment objects anywhere), so it never answers NOT_LEADER for a
// partition another agent leads. Fetch sessions are not kept: every answer
// carries session ID 0, so clients send full fetch requests.

// fetchPart is one partition of a fetch request and its answer.
type fetchPart struct {
	topic    string
	offset   int64
	maxBytes int // the request's partition_max_bytes
	// limit is what this read may add: maxBytes, or less where the
	// answer's max_bytes leaves less (readWithin).
	limit int
	out   *kmsg.FetchResponseTopicPartition
	// done: the partition has its answer (records or an error); the long
	// poll does not wait on it again.
	done  bool
	bytes int
}

func (s *Server) handleFetch(ctx context.Context, c *Conn, req *kmsg.FetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.SessionID != 0 || req.SessionEpoch > 0 {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil
	}
	parts := s.fetchParts(c, req, resp)
	minBytes := max(int(req.MinBytes), 1)
	if got := s.readWithin(ctx, parts, int(req.MaxBytes)); got < minBytes && req.MaxWaitMillis > 0 && !anyFailed(parts) {
		for _, p := range parts {
			p.limit = p.maxBytes
		}
		s.readParts(ctx, parts, int64(req.MaxWaitMillis), minBytes-got)
	}
	trimToMaxBytes(parts, int(req.MaxBytes))
	return resp, nil
}

// fetchParts builds the response skeleton and the partitions to read;
// partitions that cannot be read get their error now.
func (s *Server) fetchParts(c *Conn, req *kmsg.FetchRequest, resp *kmsg.FetchResponse) []*fetchPart {
	view := s.newTopicView()
	var parts []*fetchPart
	for _, rt := range req.Topics {
		t := kmsg.NewFetchResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		name, unknown := rt.Topic, kerr.UnknownTopicOrPartition.Code
		if req.Version >= 13 {
			name, _ = view.nameOf(rt.TopicID)
			unknown = kerr.UnknownTopicID.Code
		}
		t.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		denied := name != "" && s.authorize(c, OpRead, name) != nil // once per topic
		for j, rp := range rt.Partitions {
			out := &t.Partitions[j]
			*out = kmsg.NewFetchResponseTopicPartition()
			out.Partition, out.HighWatermark, out.LastStableOffset, out.LogStartOffset = rp.Partition, -1, -1, -1
			out.RecordBatches = []byte{} // empty, not null: librdkafka rejects a null record set
			switch {
			case name == "":
				out.ErrorCode = unknown
			case denied:
				out.ErrorCode = kerr.TopicAuthorizationFailed.Code
			default:
				info, err := view.partition(name, rp.Partition)
				if err != nil {
					out.ErrorCode = fetchCode(err, unknown)
					continue
				}
				// A partition max_bytes leaves unread is answered with the
				// watermarks this agent knows, as Kafka fills them, not -1;
				// one that is read gets the Fetcher's.
				out.HighWatermark, out.LastStableOffset, out.LogStartOffset = info.NextOffset, info.NextOffset, info.LowWatermark
				mb := int(rp.PartitionMaxBytes)
				parts = append(parts, &fetchPart{topic: name, offset: rp.FetchOffset, maxBytes: mb, limit: mb, out: out})
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return parts
}

// readWithin reads the partitions without waiting, within the answer's
// max_bytes, and returns the bytes read. Reading every partition and then
// dropping what exceeds max_bytes (trimToMaxBytes) would decode and encode
// records only to throw them away: a consumer asking 4 MiB for 33
// partitions of 1 MiB made the agents read 33 MiB per answer. Instead the
// partitions are read in waves, each in parallel: in request order, each
// partition of a wave may read up to what max_bytes leaves after the
// partitions before it (counted at their full limit), so a wave cannot
// overshoot; the next wave continues with what the previous one left
// unused (partitions at the end of their log read less than their limit),
// until max_bytes is nearly reached (less than minWaveBudget left), every
// partition was read, or fetchReadBudget has passed (waves run in series;
// a slow read must not hold the answer past the client's timeout). The
// first wave always runs and holds at least the first partition, so a
// record larger than max_bytes is still delivered, as Kafka does.
func (s *Server) readWithin(ctx context.Context, parts []*fetchPart, maxBytes int) int {
	if maxBytes <= 0 {
		return s.readParts(ctx, parts, 0, 0)
	}
	got, start := 0, time.Now()
	for next := 0; next < len(parts) && got < maxBytes; {
		if next > 0 && (maxBytes-got < minWaveBudget(maxBytes) || time.Since(start) > fetchReadBudget) {
			// Too little left to be worth a round in series, or the
			// answer has taken its time: the client asks again for the
			// rest (it moves its first partition on every request).
			break
		}
		n := budgetWave(parts[next:], maxBytes-got)
		got += s.readParts(ctx, parts[next:next+n], 0, 0)
		next += n
	}
	return got
}

// minWaveBudget is the least budget left for which readWithin starts
// another wave: each wave is a round of reads in series.
func minWaveBudget(maxBytes int) int { return max(maxBytes/16, 64<<10) }

// budgetWave sets the limit of the partitions of the next wave (at least
// one) from a remaining budget > 0 and returns how many it takes. A read
// of limit L is counted at L + L/8: the Fetcher's byte limit counts record
// sizes, a little below their encoding as record batches, and a wave that
// overshoots max_bytes has its last partition dropped (trimToMaxBytes).
func budgetWave(parts []*fetchPart, budget int) int {
	n := 0
	for _, p := range parts {
		if budget <= 0 {
			break
		}
		p.limit = max(budget-budget/9, 1)
		if p.maxBytes > 0 {
			p.limit = min(p.maxBytes, p.limit)
		}
		budget -= p.limit + p.limit/8
		n++
	}
	return n
}

// readParts reads every partition not yet answered, in parallel, and
// returns the bytes read. waitMs > 0 is the long poll: each partition
// waits up to waitMs at the end of its log, and as soon as the partitions
// that answered hold minBytes (or one failed) the others stop waiting.
func (s *Server) readParts(ctx context.Context, parts []*fetchPart, waitMs int64, minBytes int) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		total  int
		wg     sync.WaitGroup
		panics workerPanics
	)
	defer panics.rethrow()
	for _, p := range parts {
		if p.done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer panics.catch(cancel)
			n, stop := s.readPart(ctx, p, waitMs)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if waitMs > 0 && (stop || total >= minBytes) {
				cancel()
			}
		}()
	}
	wg.Wait()
	return total
}

// fetchReadBudget bounds the extra reads one partition makes to fill its
// byte limit after the first: a read of flushed offsets decodes a segment
// block, and an answer must come well within the client's request timeout
// (else it cancels, reconnects and asks again, never progressing).
const fetchReadBudget = 200 * time.Millisecond

// readPart reads one partition up to its limit and encodes the
// records as record batches. It reports the bytes read and whether the
// partition has its final answer (records or an error).
func (s *Server) readPart(ctx context.Context, p *fetchPart, waitMs int64) (int, bool) {
	out := p.out
	req := fsm.FetchRequest{Topic: p.topic, Partition: out.Partition, Offset: p.offset, MaxBytes: p.limit, WaitMs: waitMs}
	var start time.Time
	for {
		if !start.IsZero() && time.Since(start) > fetchReadBudget {
			break // answer what we have; the client asks again
		}
		res, err := s.cfg.Fetcher.Fetch(ctx, req)
		if err != nil {
			if ctx.Err() != nil && len(out.RecordBatches) == 0 {
				return 0, false // the long poll ended elsewhere: nothing to say
			}
			if len(out.RecordBatches) == 0 {
				setFetchError(out, err)
				p.done = true
				return 0, true
			}
			break
		}
		out.HighWatermark, out.LastStableOffset, out.LogStartOffset = res.HighWatermark, res.HighWatermark, res.LowWatermark
		if len(res.Records) == 0 && res.NextOffset > req.Offset && len(out.RecordBatches) == 0 {
			// A restore gap up to the end of the log: an empty batch over
			// it moves the consumer on (appendEmptyBatch).
			out.RecordBatches = appendEmptyBatch(out.RecordBatches, req.Offset, res.NextOffset-1, -1)
			p.bytes += len(out.RecordBatches)
			break
		}
		if len(res.Records) > 0 {
			before := len(out.RecordBatches)
			out.RecordBatches = appendFetched(out.RecordBatches, res.Records, -1)
			p.bytes += len(out.RecordBatches) - before
			if before == 0 {
				out.RecordBatches = reserveRest(out.RecordBatches, len(res.Records), res.HighWatermark-res.NextOffset, p.limit)
			}
		}
		if len(res.Records) == 0 || res.NextOffset >= res.HighWatermark || (p.limit > 0 && p.bytes >= p.limit) {
			break
		}
		if start.IsZero() {
			start = time.Now()
		}
		req.Offset, req.WaitMs = res.NextOffset, 0
		if p.limit > 0 {
			req.MaxBytes = p.limit - p.bytes
		}
	}
	p.done = p.done || p.bytes > 0
	return p.bytes, p.bytes > 0
}

// reserveRest moves buf, holding the encoding of the first n records of a
// read, into a pooled buffer (bufpool.go) with room for the rest records
// still to read, estimated from those n and capped by maxBytes (plus an
// eighth: the Fetcher's byte limit counts record sizes, a little below
// their encoding) and by fetchReserveMax (a client's limit is not trusted
// with memory up front): the later reads append without re-copying a
// multi-MiB buffer at every doubling, and without zeroing a fresh one.
func reserveRest(buf []byte, n int, rest int64, maxBytes int) []byte {
	if n == 0 || rest <= 0 || maxBytes <= len(buf) {
		return buf
	}
	want := int64(len(buf)) / int64(n) * rest
	room := int64(maxBytes-len(buf)) + int64(maxBytes)/8
	return append(getBuf(len(buf)+int(min(want+want/8, room, fetchReserveMax))), buf...)
}

// fetchReserveMax bounds reserveRest's one reservation; a larger answer
// grows by doubling past it.
const fetchReserveMax = 16 << 20

// anyFailed reports whether a partition already has an error to answer
// (then the request is answered at once, as Kafka does).
func anyFailed(parts []*fetchPart) bool {
	for _, p := range parts {
		if p.out.ErrorCode != 0 {
			return true
		}
	}
	return false
}

// setFetchError answers a partition's read failure.
func setFetchError(out *kmsg.FetchResponseTopicPartition, err error) {
	var oor *fsm.OffsetOutOfRangeError
	if errors.As(err, &oor) {
		out.HighWatermark, out.LastStableOffset, out.LogStartOffset = oor.HighWatermark, oor.HighWatermark, oor.LowWatermark
	}
	out.ErrorCode = fetchCode(err, kerr.UnknownTopicOrPartition.Code)
}

// fetchCode maps a read error; unknown is the code of a missing topic.
func fetchCode(err error, unknown int16) int16 {
	switch {
	case errors.Is(err, fsm.ErrTopicNotFound), errors.Is(err, fsm.ErrPartitionInvalid):
		return unknown
	case errors.Is(err, fsm.ErrUnavailable):
		// This agent is still catching up: the client refreshes its
		// metadata and retries.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return errorCode(err)
}

// trimToMaxBytes enforces the response's max_bytes in request order; the
// first partition with records is always kept whole, as Kafka does, so a
// record larger than the limit is still delivered. A later partition that
// crosses the limit keeps the whole record batches that fit (readWithin's
// waves overshoot by little, if at all); one of which none fits is dropped.
func trimToMaxBytes(parts []*fetchPart, maxBytes int) {
	if maxBytes <= 0 {
		return
	}
	total := 0
	for _, p := range parts {
		if p.bytes == 0 {
			continue
		}
		if total > 0 && total+p.bytes > maxBytes {
			p.bytes = batchesWithin(p.out.RecordBatches, maxBytes-total)
			if p.bytes == 0 {
				putBuf(p.out.RecordBatches)
				p.out.RecordBatches = []byte{}
				continue
			}
			p.out.RecordBatches = p.out.RecordBatches[:p.bytes]
		}
		total += p.bytes
	}
}

// batchesWithin is the length of the longest run of whole record batches
// at the start of set that fits in n bytes.
func batchesWithin(set []byte, n int) int {
	at := 0
	for at+12 <= len(set) {
		end := at + 12 + int(binary.BigEndian.Uint32(set[at+8:]))
		if end > n || end > len(set) {
			break
		}
		at = end
	}
	return at
}
