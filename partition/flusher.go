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
}

func (c FlusherConfig) withDefaults() FlusherConfig {
	if c.MaxBytes <= 0 {
		c.MaxBytes = 8 << 20
	}
	if c.MaxAge <= 0 {
		c.MaxAge = time.Second
	}
	if c.Interval <= 0 {
		c.Interval = min(max(c.MaxAge/4, 10*time.Millisecond), 250*time.Millisecond)
	}
	if c.CommitWindow <= 0 {
		c.CommitWindow = time.Hour
	}
	return c
}

// FlusherMetrics are the flush-path collectors.
type FlusherMetrics struct {
	SegmentWrites prometheus.Counter
	SegmentBytes  prometheus.Counter
	FlushFailures prometheus.Counter
	FlushDuration prometheus.Histogram
}

// newFlusherMetrics creates and registers the flush-path collectors.
func newFlusherMetrics(reg prometheus.Registerer) *FlusherMetrics {
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
	nodeID   string
	meta     Metadata
	store    *Store
	segs     SegmentStore
	proposer Proposer
	metrics  *FlusherMetrics
	log      *slog.Logger
	clock    func() time.Time
	errs     func(kind string)

	mu       sync.Mutex // one flush at a time
	failures int        // tick's goroutine only
	retryAt  time.Time
}

// newFlusher returns a flusher; the service runs its loop.
func newFlusher(cfg Config, d Deps) *Flusher {
	d = d.withDefaults()
	return &Flusher{cfg: cfg.Flusher.withDefaults(), nodeID: cfg.NodeID, meta: d.FSM, store: d.Store, segs: d.Segments,
		proposer: d.Node, metrics: newFlusherMetrics(d.Registerer), log: d.Logger.With("component", "flusher"),
		clock: d.Clock, errs: d.Errors}
}

// now is the agent's clock in unix milliseconds.
func (f *Flusher) now() int64 { return f.clock().UnixMilli() }

// tick is one check of the flush loop, which the service runs every
// Interval: a failed flush is retried with exponential backoff (ticks
// before the retry time do nothing). Unflushed records stay in the store
// (and the Raft log) when the loop ends and are flushed after restart.
func (f *Flusher) tick(ctx context.Context) {
	if time.Now().Before(f.retryAt) {
		return
	}
	if _, err := f.FlushOnce(ctx, false); err != nil && ctx.Err() == nil {
		f.failures++
		backoff := min(time.Duration(1<<min(f.failures, 8))*50*time.Millisecond, 10*time.Second)
		f.retryAt = time.Now().Add(backoff)
		f.metrics.FlushFailures.Inc()
		f.errs(ErrorSegmentUpload)
		f.log.Warn("segment flush failed; records stay in the WAL and the flush is retried", "err", err, "retry_in", backoff)
	} else {
		f.failures = 0
	}
}

type flushCandidate struct {
	info fsm.PartitionInfo
	u    Unflushed
}

// FlushOnce writes one segment if the roll policy says so (or force) and
// returns how many partitions it committed: candidates → due → collect →
// upload → commit.
func (f *Flusher) FlushOnce(ctx context.Context, force bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cands, total, oldest := f.candidates()
	if len(cands) == 0 || !force && !f.due(total, oldest) {
		return 0, nil
	}
	start := time.Now()
	seg, err := f.collect(cands)
	if err != nil || len(seg.parts) == 0 {
		return 0, err
	}
	commitBy := f.commitBy()
	key, refs, err := f.segs.WriteSegment(ctx, seg.parts, commitBy)
	if err != nil {
		return 0, fmt.Errorf("upload segment: %w", err)
	}
	accepted, err := f.commit(ctx, key, commitBy, seg, refs)
	if err != nil {
		return 0, err
	}
	f.metrics.SegmentWrites.Inc()
	f.metrics.SegmentBytes.Add(float64(seg.bytes))
	f.metrics.FlushDuration.Observe(time.Since(start).Seconds())
	f.log.Debug("segment committed", "key", key, "partitions", accepted, "bytes", seg.bytes)
	return accepted, nil
}

// candidates lists the partitions this agent leads that hold unflushed
// records, with their total size and the oldest record's timestamp.
func (f *Flusher) candidates() (cands []flushCandidate, total, oldest int64) {
	for _, info := range f.meta.AllPartitions() {
		if info.Leader != f.nodeID || info.NextOffset <= info.FlushedOffset {
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
	return cands, total, oldest
}

// due is the roll policy: MaxBytes unflushed, or the oldest record MaxAge
// old (by this agent's clock).
func (f *Flusher) due(total, oldest int64) bool {
	return total >= f.cfg.MaxBytes || f.now()-oldest >= f.cfg.MaxAge.Milliseconds()
}

// segment is what one flush uploads: parts[i] was read at leader epoch
// epochs[i]; bytes is the records' size.
type segment struct {
	parts  []SegmentPart
	epochs []uint64
	bytes  int64
}

// collect reads the candidates' unflushed records from the store, up to
// MaxBytes in all. A partition whose topic is gone is skipped.
func (f *Flusher) collect(cands []flushCandidate) (segment, error) {
	var seg segment
	budget := f.cfg.MaxBytes
	for _, c := range cands {
		if budget <= 0 {
			break
		}
		recs, err := f.readUnflushed(c, &budget)
		if err != nil {
			return segment{}, err
		}
		for _, r := range recs {
			seg.bytes += int64(r.Size())
		}
		t, ok := f.meta.TopicByID(c.info.TopicID)
		if !ok {
			continue
		}
		seg.parts = append(seg.parts, SegmentPart{TopicID: c.info.TopicID, Topic: t.Name, Partition: c.info.Partition,
			Compression: t.Config.Compression, Records: recs})
		seg.epochs = append(seg.epochs, c.info.LeaderEpoch)
	}
	return seg, nil
}

// readUnflushed reads one partition's records from its flushed offset,
// charging them to budget.
func (f *Flusher) readUnflushed(c flushCandidate, budget *int64) ([]fsm.FetchedRecord, error) {
	k := fsm.PartitionKey{TopicID: c.info.TopicID, Partition: c.info.Partition}
	var recs []fsm.FetchedRecord
	off := c.info.FlushedOffset
	for off < c.u.End && *budget > 0 {
		got, err := f.store.Read(k, off, 10000, int(min(*budget, 64<<20)))
		if err != nil {
			return nil, fmt.Errorf("read unflushed %s/%d at %d: %w", c.info.Topic, c.info.Partition, off, err)
		}
		for _, r := range got {
			*budget -= int64(r.Size())
		}
		if recs == nil {
			recs = got // usually the only read: no copy
		} else {
			recs = append(recs, got...)
		}
		off = got[len(got)-1].Offset + 1
	}
	return recs, nil
}

// commit proposes one CommitSegment for the uploaded object and returns how
// many of its entries the state machine accepted; none is an error (the
// object is then orphaned and the next round re-reads the state).
func (f *Flusher) commit(ctx context.Context, key string, commitBy int64, seg segment, refs []fsm.SegmentRef) (int, error) {
	// The commit time is never below the cluster clock this agent applied
	// (a wall clock behind it would make the segment look old to
	// retention); the state machine also raises it to the clock at apply.
	cmd := &fsm.CommitSegment{Node: f.nodeID, ObjectKey: key, Timestamp: max(f.now(), f.meta.Clock()), CommitBy: commitBy}
	for i, p := range seg.parts {
		cmd.Entries = append(cmd.Entries, fsm.CommitEntry{TopicID: p.TopicID, Partition: p.Partition, LeaderEpoch: seg.epochs[i], Ref: refs[i]})
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
		return 0, fmt.Errorf("commit segment %s: %w", key, res.Err())
	}
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
