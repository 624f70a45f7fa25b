package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Defaults of ConsumerConfig.
const (
	DefaultMaxRecords = 500
	DefaultMaxWait    = time.Second
	// pollRetryWait is how long Poll waits before returning a retriable
	// error, so that a caller's loop does not spin against a down agent.
	pollRetryWait = 200 * time.Millisecond
	// fetchGrace is added to MaxWait for the deadline of one Fetch.
	fetchGrace = 10 * time.Second
)

// StartPosition is where a consumer starts in a partition that has no
// committed offset for its group. The zero value is Earliest.
type StartPosition struct {
	latest bool
	offset int64 // >= 0 with explicit
	explic bool
	timed  bool
	ts     int64 // unix ms with timed
}

// Start positions.
var (
	// Earliest starts at the first record still stored (low watermark).
	Earliest = StartPosition{}
	// Latest starts after the last record (high watermark): only records
	// produced from now on.
	Latest = StartPosition{latest: true}
)

// AtOffset starts at offset n (clamped by the agent's answer: a gap is
// skipped; an offset below the low watermark continues from it).
func AtOffset(n int64) StartPosition { return StartPosition{offset: n, explic: true} }

// AtTimestamp starts at the first record whose timestamp is at or after
// ms (unix milliseconds), or at the high watermark when no record is that
// recent (the agent's ListOffsets).
func AtTimestamp(ms int64) StartPosition { return StartPosition{ts: max(ms, 0), timed: true} }

func (s StartPosition) String() string {
	switch {
	case s.timed:
		return "timestamp " + time.UnixMilli(s.ts).UTC().Format(time.RFC3339Nano)
	case s.explic:
		return fmt.Sprintf("offset %d", s.offset)
	case s.latest:
		return "latest"
	default:
		return "earliest"
	}
}

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Topic string // required
	// Group, when set, makes the consumer start from the group's committed
	// offsets and enables Commit.
	Group string
	// Partitions to read; nil reads every partition of the topic, including
	// partitions added later (CreatePartitions): Poll picks them up from
	// the client's metadata (refreshed in the background) and reads them
	// from their first offset, whatever Start says, so nothing produced to
	// them before they were noticed is skipped.
	Partitions []int32
	// Start applies to partitions without a committed offset.
	Start StartPosition
	// MaxRecords bounds the records of one partition per Poll (default 500).
	MaxRecords int
	// MaxBytes bounds the bytes of one partition per Poll (default: the
	// agent's, 1 MiB).
	MaxBytes int
	// MaxWait is how long Poll waits for a record when every partition is
	// at its end (default 1 s).
	MaxWait time.Duration
}

// Consumer reads the partitions of one topic. Poll, Commit and the other
// methods may be called from different goroutines, but Poll must not run
// concurrently with itself.
type Consumer struct {
	c   *Client
	cfg ConsumerConfig

	mu        sync.Mutex
	parts     []int32
	pos       map[int32]int64 // next offset to fetch (= after the last returned record)
	high      map[int32]int64 // last high watermark seen
	committed map[int32]int64 // last committed offset
	paused    map[int32]bool
	closed    bool
}

// NewConsumer creates a consumer of cfg.Topic and resolves its start
// offsets: the group's committed offsets when it has them, else
// cfg.Start.
func (c *Client) NewConsumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Topic == "" {
		return nil, newError("NewConsumer", codes.InvalidArgument, KindBadRequest, "topic is required")
	}
	orDefault(&cfg.MaxRecords, DefaultMaxRecords)
	orDefault(&cfg.MaxWait, DefaultMaxWait)
	_, infos, err := c.DescribeTopic(ctx, cfg.Topic)
	if err != nil {
		return nil, err
	}
	k := &Consumer{c: c, cfg: cfg, pos: map[int32]int64{}, high: map[int32]int64{}, committed: map[int32]int64{}, paused: map[int32]bool{}}
	byPart := map[int32]PartitionInfo{}
	for _, pi := range infos {
		byPart[pi.Partition] = pi
	}
	if cfg.Partitions == nil {
		for _, pi := range infos {
			k.parts = append(k.parts, pi.Partition)
		}
	} else {
		for _, p := range cfg.Partitions {
			if _, ok := byPart[p]; !ok {
				return nil, newError("NewConsumer", codes.NotFound, KindNotFound,
					"partition %d of topic %q does not exist (it has %d)", p, cfg.Topic, len(infos))
			}
			if !slices.Contains(k.parts, p) {
				k.parts = append(k.parts, p)
			}
		}
	}
	if cfg.Group != "" {
		offs, err := c.FetchOffsets(ctx, cfg.Group, cfg.Topic)
		if err != nil && Code(err) != codes.NotFound {
			return nil, err
		}
		for _, o := range offs {
			k.pos[o.Partition] = o.Offset
			k.committed[o.Partition] = o.Offset
		}
	}
	timed, err := k.timedStarts(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range k.parts {
		pi := byPart[p]
		k.high[p] = pi.HighWatermark
		if _, ok := k.pos[p]; ok {
			continue
		}
		switch {
		case cfg.Start.timed:
			k.pos[p] = timed[p]
		case cfg.Start.explic:
			k.pos[p] = max(cfg.Start.offset, 0)
		case cfg.Start.latest:
			k.pos[p] = pi.HighWatermark
		default:
			k.pos[p] = pi.LowWatermark
		}
	}
	return k, nil
}

// timedStarts resolves an AtTimestamp start for the partitions without a
// committed offset (nil for another start).
func (k *Consumer) timedStarts(ctx context.Context) (map[int32]int64, error) {
	if !k.cfg.Start.timed {
		return nil, nil
	}
	var parts []int32
	for _, p := range k.parts {
		if _, ok := k.pos[p]; !ok {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	offs, err := k.c.ListOffsets(ctx, k.cfg.Topic, k.cfg.Start.ts, parts...)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(offs))
	for _, o := range offs {
		out[o.Partition] = o.Offset
	}
	return out, nil
}

// discover adds the partitions the topic gained since the consumer started
// (only when it reads every partition), from the client's cached metadata.
// New partitions are read from offset 0 (a retention-trimmed one continues
// from its low watermark, as any partition does).
func (k *Consumer) discover(ctx context.Context) {
	if k.cfg.Partitions != nil {
		return
	}
	n, err := k.c.partitionCount(ctx, k.cfg.Topic)
	if err != nil {
		return // the fetches report what is wrong
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for p := int32(len(k.parts)); p < n; p++ {
		k.parts = append(k.parts, p)
		if _, ok := k.pos[p]; !ok {
			k.pos[p] = 0
		}
	}
}

// Assignment returns the partitions the consumer reads.
func (k *Consumer) Assignment() []int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.parts)
}

// Position returns the next offset the consumer will read in partition p
// (the offset after the last record Poll returned, or the start offset).
func (k *Consumer) Position(p int32) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	off, ok := k.pos[p]
	return off, ok
}

// HighWatermark returns the last high watermark of partition p the
// consumer has seen.
func (k *Consumer) HighWatermark(p int32) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	off, ok := k.high[p]
	return off, ok
}

// Seek makes the next Poll read partition p from offset.
func (k *Consumer) Seek(p int32, offset int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.pos[p]; ok {
		k.pos[p] = offset
	}
}

// Pause stops fetching the given partitions until Resume.
func (k *Consumer) Pause(ps ...int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range ps {
		k.paused[p] = true
	}
}

// Resume undoes Pause.
func (k *Consumer) Resume(ps ...int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range ps {
		delete(k.paused, p)
	}
}

type fetchOut struct {
	partition int32
	from      int64
	res       FetchResult
	err       error
}

// Poll fetches the assigned partitions in parallel with long-polls and
// returns as soon as one of them has records (with the records of every
// partition that answered by then), or with no records after MaxWait. A
// partition's position moves to the agent's next_offset, so gaps in the
// offsets are skipped. A transient failure (IsRetriable) is returned after
// a short wait when no partition returned records; a record source that
// retention overtook continues from the low watermark.
func (k *Consumer) Poll(ctx context.Context) ([]Record, error) {
	k.discover(ctx)
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil, ErrClosed
	}
	type job struct {
		p    int32
		from int64
	}
	var jobs []job
	for _, p := range k.parts {
		if !k.paused[p] {
			jobs = append(jobs, job{p, k.pos[p]})
		}
	}
	k.mu.Unlock()
	if len(jobs) == 0 {
		// Nothing to read: behave like an empty long-poll, never spin.
		return nil, sleepCtx(ctx, k.cfg.MaxWait)
	}

	started := time.Now()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan fetchOut, len(jobs))
	for _, j := range jobs {
		go func() {
			fctx, fcancel := context.WithTimeout(pctx, k.cfg.MaxWait+fetchGrace)
			defer fcancel()
			res, err := k.c.Fetch(fctx, FetchRequest{
				Topic: k.cfg.Topic, Partition: j.p, Offset: j.from, MaxRecords: int32(k.cfg.MaxRecords),
				MaxBytes: int32(k.cfg.MaxBytes), MaxWait: k.cfg.MaxWait,
			})
			out <- fetchOut{partition: j.p, from: j.from, res: res, err: err}
		}()
	}
	var (
		recs     []Record
		firstErr error
		canceled bool
	)
	for range jobs {
		r := <-out
		if r.err != nil {
			if canceled && ctx.Err() == nil && (Code(r.err) == codes.Canceled || errors.Is(r.err, context.Canceled)) {
				continue // we stopped its long-poll: not an error
			}
			if next, ok := k.outOfRangeRecovery(r); ok {
				k.c.log.Warn("consumer offset below the low watermark (records removed by retention); continuing from the low watermark",
					"topic", k.cfg.Topic, "partition", r.partition, "offset", r.from, "low_watermark", next)
				continue
			}
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		got := k.advance(r)
		recs = append(recs, got...)
		if len(got) > 0 && !canceled {
			canceled = true
			cancel() // answer now; the others' long-polls end
		}
	}
	if len(recs) > 0 {
		return recs, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if firstErr != nil {
		if IsRetriable(firstErr) {
			k.c.refreshSoon(ctx, started)
			_ = sleepCtx(ctx, pollRetryWait)
		}
		return nil, firstErr
	}
	return nil, nil
}

// advance applies a fetch answer: it drops records before the position
// (a concurrent Seek), moves the position to next_offset and returns the
// records.
func (k *Consumer) advance(r fetchOut) []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.high[r.partition] = r.res.HighWatermark
	if k.pos[r.partition] != r.from {
		return nil // Seek since the fetch started: its answer is stale
	}
	if r.res.NextOffset > r.from {
		k.pos[r.partition] = r.res.NextOffset
	}
	return r.res.Records
}

// outOfRangeRecovery moves a partition whose position fell below the low
// watermark (retention) to the low watermark.
func (k *Consumer) outOfRangeRecovery(r fetchOut) (int64, bool) {
	var e *Error
	if !errors.As(r.err, &e) || e.Code != codes.OutOfRange || e.LowWatermark == nil || *e.LowWatermark <= r.from {
		return 0, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pos[r.partition] == r.from {
		k.pos[r.partition] = *e.LowWatermark
	}
	return *e.LowWatermark, true
}

// Commit commits, for the group, the position of every partition whose
// position changed since the last commit (the offset after the last record
// Poll returned). It needs ConsumerConfig.Group.
func (k *Consumer) Commit(ctx context.Context) error {
	if k.cfg.Group == "" {
		return ErrNoGroup
	}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return ErrClosed
	}
	k.mu.Unlock()
	commits := k.pending()
	if len(commits) == 0 {
		return nil
	}
	if err := k.c.CommitOffsets(ctx, k.cfg.Group, commits...); err != nil {
		return err
	}
	k.committedUpTo(commits)
	return nil
}

// Close releases the consumer (it commits nothing). Idempotent.
func (k *Consumer) Close() error {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	return nil
}
