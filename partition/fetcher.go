package partition

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// FetcherConfig bounds reads.
type FetcherConfig struct {
	MaxRecords int           // per fetch, default 1000
	MaxWait    time.Duration // cap on long-poll wait, default 30s
}

// Fetcher serves reads from any agent: unflushed offsets from the local
// store, older ones from committed segment objects.
type Fetcher struct {
	cfg      FetcherConfig
	meta     Metadata
	store    *Store
	segs     SegmentStore
	consumed prometheus.Counter
	// sync confirms topic misses and offsets past the local high watermark
	// with the cluster before they are answered.
	sync Syncer
	// barrier holds every read until it sees what this agent acknowledged.
	barrier ReadBarrier
}

// newFetcherMetrics creates the consumed-records counter.
func newFetcherMetrics(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_messages_consumed_total", Help: "Records returned to consumers by this agent.",
	})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// newFetcher returns a Fetcher.
func newFetcher(cfg Config, d Deps) *Fetcher {
	fc := cfg.Fetcher
	if fc.MaxRecords <= 0 {
		fc.MaxRecords = 1000
	}
	if fc.MaxWait <= 0 {
		fc.MaxWait = 30 * time.Second
	}
	return &Fetcher{cfg: fc, meta: d.FSM, store: d.Store, segs: d.Segments, consumed: newFetcherMetrics(d.Registerer), sync: d.Node, barrier: d.Node}
}

// Fetch reads records of one partition from req.Offset. At the end of the
// log it waits up to req.WaitMs for new records.
func (f *Fetcher) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	t, err := f.topicPartition(ctx, req.Topic, req.Partition)
	if err != nil {
		return fsm.FetchResult{}, err
	}
	if req.MaxRecords <= 0 || req.MaxRecords > f.cfg.MaxRecords {
		req.MaxRecords = f.cfg.MaxRecords
	}
	if req.WaitMs < 0 {
		return fsm.FetchResult{}, fmt.Errorf("%w: wait_ms must not be negative", fsm.ErrInvalidArgument)
	}
	wait := min(time.Duration(req.WaitMs)*time.Millisecond, f.cfg.MaxWait)
	k := fsm.PartitionKey{TopicID: t.ID, Partition: req.Partition}
	if info, ok := f.meta.Partition(t.ID, req.Partition); ok && req.Offset > info.NextOffset && f.sync != nil {
		// Past this agent's high watermark: another agent may have handed
		// out that offset already. Catch up before calling it out of range.
		if err := f.sync.SyncRead(ctx); err != nil {
			return fsm.FetchResult{}, err
		}
	}
	var deadline <-chan time.Time
	for {
		// Subscribe before checking, so an append between check and wait
		// still wakes us.
		notify := f.store.Wait(k)
		info, ok := f.meta.Partition(t.ID, req.Partition)
		if !ok {
			return fsm.FetchResult{}, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, req.Topic)
		}
		if req.Offset < info.LowWatermark || req.Offset > info.NextOffset {
			return fsm.FetchResult{}, &fsm.OffsetOutOfRangeError{Requested: req.Offset, LowWatermark: info.LowWatermark, HighWatermark: info.NextOffset}
		}
		if req.Offset < info.NextOffset {
			res, err := f.read(ctx, k, info, req)
			if err == nil {
				f.consumed.Add(float64(len(res.Records)))
			}
			return res, err
		}
		if wait <= 0 {
			return fsm.FetchResult{NextOffset: req.Offset, HighWatermark: info.NextOffset, LowWatermark: info.LowWatermark}, nil
		}
		if deadline == nil {
			timer := time.NewTimer(wait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case <-notify:
		case <-deadline:
			wait = 0
		case <-ctx.Done():
			return fsm.FetchResult{}, ctx.Err()
		}
	}
}

// topicPartition passes the read barrier, looks the topic up and checks
// the partition exists.
func (f *Fetcher) topicPartition(ctx context.Context, topic string, part int32) (fsm.Topic, error) {
	if err := f.barrier.AwaitAcked(ctx); err != nil {
		return fsm.Topic{}, err
	}
	t, err := lookupTopicFor(ctx, f.meta, f.sync, topic, part)
	if err != nil {
		return fsm.Topic{}, err
	}
	if part < 0 || part >= t.Partitions {
		return fsm.Topic{}, fmt.Errorf("%w: partition %d does not exist (topic %q has %d)", fsm.ErrPartitionInvalid, part, topic, t.Partitions)
	}
	return t, nil
}

// read returns the records of req from the store and the segments (not
// counted as consumed: callers count what they hand out).
func (f *Fetcher) read(ctx context.Context, k fsm.PartitionKey, info fsm.PartitionInfo, req fsm.FetchRequest) (fsm.FetchResult, error) {
	res := fsm.FetchResult{HighWatermark: info.NextOffset, LowWatermark: info.LowWatermark}
	off := req.Offset
	bytes := 0
	for off < info.NextOffset && len(res.Records) < req.MaxRecords {
		if req.MaxBytes > 0 && bytes >= req.MaxBytes {
			break
		}
		var got []fsm.FetchedRecord
		var err error
		if off < info.FlushedOffset {
			if ref, ok := f.meta.SegmentFor(k.TopicID, k.Partition, off); ok && ref.IsGap() {
				// Offsets lost in a disaster and recorded as a gap by the
				// restore: skip them (like compacted-away offsets in Kafka).
				if len(res.Records) > 0 {
					break
				}
				off = ref.LastOffset + 1
				continue
			}
			got, err = f.readSegment(ctx, k, off)
			if err != nil {
				// Retention may have removed the segment under us.
				if fresh, ok := f.meta.Partition(k.TopicID, k.Partition); ok && off < fresh.LowWatermark {
					if len(res.Records) > 0 {
						break
					}
					return res, &fsm.OffsetOutOfRangeError{Requested: off, LowWatermark: fresh.LowWatermark, HighWatermark: fresh.NextOffset}
				}
			}
		} else {
			got, err = f.store.Read(k, off, req.MaxRecords-len(res.Records), req.MaxBytes-bytes)
			if errors.Is(err, ErrNotInStore) {
				// Flushed and truncated meanwhile: refresh and use segments.
				fresh, ok := f.meta.Partition(k.TopicID, k.Partition)
				if !ok || fresh.FlushedOffset <= off {
					// Only possible while this agent is still replaying the
					// Raft log after a restart (a commit not re-applied yet).
					return res, fmt.Errorf("%w: offset %d of %s/%d is not available on this agent yet (catching up)", fsm.ErrUnavailable, off, req.Topic, k.Partition)
				}
				info.FlushedOffset = fresh.FlushedOffset
				continue
			}
		}
		if err != nil {
			return res, err
		}
		if len(got) == 0 {
			break
		}
		full := false
		for _, r := range got {
			if r.Offset != off || len(res.Records) >= req.MaxRecords {
				break
			}
			if req.MaxBytes > 0 && len(res.Records) > 0 && bytes+r.Size() > req.MaxBytes {
				full = true // the next record does not fit: reading again would not either
				break
			}
			if res.Records == nil {
				res.Records = make([]fsm.FetchedRecord, 0, recordsCap(req, info.NextOffset-off))
			}
			res.Records = append(res.Records, r)
			bytes += r.Size()
			off++
		}
		if full || got[0].Offset > off {
			break
		}
	}
	res.NextOffset = off
	return res, nil
}

func (f *Fetcher) readSegment(ctx context.Context, k fsm.PartitionKey, off int64) ([]fsm.FetchedRecord, error) {
	ref, ok := f.meta.SegmentFor(k.TopicID, k.Partition, off)
	if !ok {
		return nil, fmt.Errorf("partition: no committed segment holds offset %d of partition %d", off, k.Partition)
	}
	recs, err := f.segs.ReadSegment(ctx, k.TopicID, k.Partition, ref)
	if err != nil {
		return nil, fmt.Errorf("read segment %s: %w", ref.ObjectKey, err)
	}
	i := int(off - ref.BaseOffset)
	if i < 0 || i >= len(recs) || recs[i].Offset != off {
		return nil, fmt.Errorf("read segment %s: offset %d not where the index says", ref.ObjectKey, off)
	}
	// Sequential reader: warm the cache with the partition's next block.
	if next, ok := f.meta.SegmentFor(k.TopicID, k.Partition, ref.LastOffset+1); ok && !next.IsGap() {
		f.segs.Prefetch(ctx, k.TopicID, k.Partition, next)
	}
	return recs[i:], nil
}

// recordsCap is the capacity a read's records get at once (instead of
// growing by doubling): what req may return of the rest records left.
func recordsCap(req fsm.FetchRequest, rest int64) int {
	n := min(int64(req.MaxRecords), rest)
	if req.MaxBytes > 0 {
		n = min(n, int64(req.MaxBytes)/64+1) // a guess: few records are under 64 B
	}
	return int(max(n, 1))
}
