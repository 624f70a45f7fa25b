package partition

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// FlusherConfig configures segment rolling.
type FlusherConfig struct {
	NodeID string
	// MaxBytes rolls a segment once the led partitions' unflushed records
	// reach this size; it also bounds one object.
	MaxBytes int64
	// MaxAge rolls a segment once the oldest unflushed record is this old.
	MaxAge time.Duration
	// Interval is how often the flusher checks; default MaxAge/4 (10ms-250ms).
	Interval time.Duration
	// CommitWindow bounds, in cluster time, how long after its upload an
	// object can still be committed (ORPHAN_GRACE_MS): the commit carries
	// commit-by = cluster clock at upload + CommitWindow, the state machine
	// refuses it later, and garbage collection deletes an unreferenced
	// object only after it. Default 1 h.
	CommitWindow time.Duration
	Logger       *slog.Logger
	Clock        func() int64 // unix ms
}

// FlusherMetrics are the flush-path collectors.
type FlusherMetrics struct {
	SegmentWrites prometheus.Counter
	SegmentBytes  prometheus.Counter
	FlushFailures prometheus.Counter
	FlushDuration prometheus.Histogram
}

// NewFlusherMetrics creates and registers the flush-path collectors.
func NewFlusherMetrics(reg prometheus.Registerer) *FlusherMetrics {
	m := &FlusherMetrics{
		SegmentWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_writes_total", Help: "Segment objects written and committed by this agent.",
		}),
		SegmentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_bytes_total", Help: "Record bytes flushed into committed segments by this agent.",
		}),
		FlushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_segment_upload_failures_total", Help: "Segment flushes that failed (upload or commit) and will be retried.",
		}),
		FlushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamhouse_segment_flush_duration_seconds", Help: "Time to encode, upload and commit one segment.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.SegmentWrites, m.SegmentBytes, m.FlushFailures, m.FlushDuration)
	}
	return m
}

// Flusher packs the unflushed records of every partition this agent leads
// into one segment object per flush, uploads it and commits it through
// Raft. Records stay in the local store until their commit is applied; a
// failed upload is retried with backoff and nothing is dropped.
type Flusher struct {
	cfg      FlusherConfig
	meta     Metadata
	store    *Store
	segs     SegmentStore
	proposer Proposer
	metrics  *FlusherMetrics
	log      *slog.Logger
	errs     func(kind string)

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	kick     chan struct{}
	failures int
	retryAt  time.Time
}

// NewFlusher returns a flusher; Start runs it.
func NewFlusher(cfg FlusherConfig, meta Metadata, store *Store, segs SegmentStore, proposer Proposer, m *FlusherMetrics, errs func(string)) *Flusher {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 8 << 20
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = min(max(cfg.MaxAge/4, 10*time.Millisecond), 250*time.Millisecond)
	}
	if cfg.CommitWindow <= 0 {
		cfg.CommitWindow = time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = func() int64 { return time.Now().UnixMilli() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewFlusherMetrics(nil)
	}
	if errs == nil {
		errs = func(string) {}
	}
	return &Flusher{cfg: cfg, meta: meta, store: store, segs: segs, proposer: proposer, metrics: m,
		log: cfg.Logger.With("component", "flusher"), errs: errs, kick: make(chan struct{}, 1)}
}

// Start runs the flush loop until Close.
func (f *Flusher) Start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go f.loop(ctx)
}

// Close stops the loop and waits for it. Unflushed records stay in the
// store (and the Raft log) and are flushed after restart.
func (f *Flusher) Close() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
}

// Kick asks for an immediate flush check (e.g. after a large produce).
func (f *Flusher) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *Flusher) loop(ctx context.Context) {
	defer close(f.done)
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
		if time.Now().Before(f.retryAt) {
			continue
		}
		if _, err := f.FlushOnce(ctx, false); err != nil && ctx.Err() == nil {
			f.failures++
			backoff := min(time.Duration(1<<min(f.failures, 8))*50*time.Millisecond, 10*time.Second)
			f.retryAt = time.Now().Add(backoff)
			f.metrics.FlushFailures.Inc()
			f.errs("segment_upload")
			f.log.Warn("segment flush failed; records stay in the WAL and the flush is retried", "err", err, "retry_in", backoff)
		} else {
			f.failures = 0
		}
	}
}

type flushCandidate struct {
	info fsm.PartitionInfo
	u    Unflushed
}

// FlushOnce writes one segment if the roll policy says so (or force) and
// returns how many partitions it committed.
func (f *Flusher) FlushOnce(ctx context.Context, force bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.cfg.Clock()
	var cands []flushCandidate
	var total int64
	oldest := int64(0)
	for _, info := range f.meta.AllPartitions() {
		if info.Leader != f.cfg.NodeID || info.NextOffset <= info.FlushedOffset {
			continue
		}
		k := fsm.PartitionKey{TopicID: info.TopicID, Partition: info.Partition}
		u := f.store.Unflushed(k, info.FlushedOffset)
		if u.Bytes == 0 {
			continue
		}
		cands = append(cands, flushCandidate{info: info, u: u})
		total += u.Bytes
		if oldest == 0 || u.OldestTs < oldest {
			oldest = u.OldestTs
		}
	}
	if len(cands) == 0 {
		return 0, nil
	}
	if !force && total < f.cfg.MaxBytes && now-oldest < f.cfg.MaxAge.Milliseconds() {
		return 0, nil
	}
	start := time.Now()
	var parts []SegmentPart
	var epochs []uint64
	var budget = f.cfg.MaxBytes
	var recBytes int64
	for _, c := range cands {
		if budget <= 0 {
			break
		}
		k := fsm.PartitionKey{TopicID: c.info.TopicID, Partition: c.info.Partition}
		var recs []fsm.FetchedRecord
		off := c.info.FlushedOffset
		for off < c.u.End && budget > 0 {
			got, err := f.store.Read(k, off, 10000, int(min(budget, 64<<20)))
			if err != nil {
				return 0, fmt.Errorf("read unflushed %s/%d at %d: %w", c.info.Topic, c.info.Partition, off, err)
			}
			for _, r := range got {
				budget -= int64(r.Size())
				recBytes += int64(r.Size())
			}
			recs = append(recs, got...)
			off = got[len(got)-1].Offset + 1
		}
		t, ok := f.meta.TopicByID(c.info.TopicID)
		if !ok {
			continue
		}
		parts = append(parts, SegmentPart{TopicID: c.info.TopicID, Topic: t.Name, Partition: c.info.Partition,
			Compression: t.Config.Compression, Records: recs})
		epochs = append(epochs, c.info.LeaderEpoch)
	}
	if len(parts) == 0 {
		return 0, nil
	}
	commitBy := f.commitBy()
	key, refs, err := f.segs.WriteSegment(ctx, parts, commitBy)
	if err != nil {
		return 0, fmt.Errorf("upload segment: %w", err)
	}
	// The commit time is never below the cluster clock this agent applied
	// (a wall clock behind it would make the segment look old to
	// retention); the state machine also raises it to the clock at apply.
	cmd := &fsm.CommitSegment{Node: f.cfg.NodeID, ObjectKey: key, Timestamp: max(f.cfg.Clock(), f.meta.Clock()), CommitBy: commitBy}
	for i, p := range parts {
		cmd.Entries = append(cmd.Entries, fsm.CommitEntry{TopicID: p.TopicID, Partition: p.Partition, LeaderEpoch: epochs[i], Ref: refs[i]})
	}
	res, err := f.proposer.Propose(ctx, fsm.Encode(cmd))
	if err != nil {
		return 0, fmt.Errorf("commit segment %s: %w", key, err)
	}
	accepted := 0
	for _, ok := range res.Accepted {
		if ok {
			accepted++
		}
	}
	if accepted == 0 {
		// Leadership or offsets moved under us; the object is orphaned and
		// the next round re-reads the state.
		return 0, fmt.Errorf("commit segment %s: %w", key, res.Err())
	}
	f.metrics.SegmentWrites.Inc()
	f.metrics.SegmentBytes.Add(float64(recBytes))
	f.metrics.FlushDuration.Observe(time.Since(start).Seconds())
	f.log.Debug("segment committed", "key", key, "partitions", accepted, "bytes", recBytes)
	return accepted, nil
}

// commitBy is the commit-by time of an object about to be uploaded, taken
// before the upload from the cluster clock this agent has applied (never
// ahead of the leader's). Before the clock starts (older agents may be
// members, fsm.FeatureLevel) it is 0: the commit has no bound and the
// object is never collected as an orphan.
func (f *Flusher) commitBy() int64 {
	clock := f.meta.Clock()
	if clock <= 0 {
		return 0
	}
	return clock + f.cfg.CommitWindow.Milliseconds()
}
