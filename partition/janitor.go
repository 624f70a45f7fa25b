package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// JanitorConfig configures retention and object garbage collection.
type JanitorConfig struct {
	// Interval between rounds; default 30 s.
	Interval time.Duration
}

// JanitorMetrics are the janitor's collectors.
type JanitorMetrics struct {
	SegmentsExpired prometheus.Counter
	ObjectsDeleted  prometheus.Counter
	OrphansDeleted  prometheus.Counter
}

// newJanitorMetrics creates and registers the janitor's collectors.
func newJanitorMetrics(reg prometheus.Registerer) *JanitorMetrics {
	m := &JanitorMetrics{
		SegmentsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_retention_segments_expired_total", Help: "Partition segments removed by retention.",
		}),
		ObjectsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_objects_deleted_total", Help: "Segment objects deleted after retention or topic deletion released them.",
		}),
		OrphansDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamhouse_orphan_objects_deleted_total", Help: "Uploaded but never committed segment objects deleted once the cluster clock passed their commit-by time.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.SegmentsExpired, m.ObjectsDeleted, m.OrphansDeleted)
	}
	return m
}

// Janitor runs on the Raft leader once its barrier has applied the log
// (Leadership.LeaderReady): it applies per-topic retention through
// committed TrimPartition commands, deletes the objects the state machine
// released (and records that with ObjectsDeleted), and deletes orphaned
// uploads. Every time it compares is the cluster clock (Metadata.Clock),
// never this agent's wall clock or the object store's LastModified, and an
// object is deleted only when no committed command references it and no
// command in the log or still to come can commit it (see collectOrphans).
type Janitor struct {
	cfg      JanitorConfig
	meta     Metadata
	segs     SegmentStore
	proposer Proposer
	leader   Leadership
	metrics  *JanitorMetrics
	log      *slog.Logger
	errs     func(string)
}

// newJanitor returns a Janitor; the service runs round every Interval.
func newJanitor(cfg Config, d Deps) *Janitor {
	d = d.withDefaults()
	jc := cfg.Janitor
	if jc.Interval <= 0 {
		jc.Interval = 30 * time.Second
	}
	return &Janitor{cfg: jc, meta: d.FSM, segs: d.Segments, proposer: d.Node, leader: d.Node,
		metrics: newJanitorMetrics(d.Registerer), log: d.Logger.With("component", "janitor"), errs: d.Errors}
}

// round runs RunOnce and reports a failure (the next round retries).
func (j *Janitor) round(ctx context.Context) {
	if err := j.RunOnce(ctx); err != nil && ctx.Err() == nil {
		j.errs(ErrorJanitor)
		j.log.Warn("janitor round failed; retrying next round", "err", err)
	}
}

// RunOnce runs one round, only on a Raft leader whose barrier applied
// the log. Retention and orphan collection also wait for the first leader
// clock tick (a cluster clock of 0 says nothing about time).
func (j *Janitor) RunOnce(ctx context.Context) error {
	if !j.leader.LeaderReady() {
		return nil
	}
	// Read the clock before anything else: collectOrphans relies on every
	// reference check happening at a log position at or after this one.
	now := j.meta.Clock()
	if now == 0 {
		return j.deleteReleased(ctx)
	}
	retention := j.applyRetention(ctx, now)
	return errors.Join(retention, j.deleteReleased(ctx), j.collectOrphans(ctx, now))
}

func (j *Janitor) applyRetention(ctx context.Context, now int64) error {
	var errs []error
	for _, t := range j.meta.Topics() {
		if t.Config.RetentionMs <= 0 && t.Config.RetentionBytes <= 0 {
			continue
		}
		for _, p := range j.meta.Partitions(t.ID) {
			segs := j.meta.Segments(t.ID, p.Partition)
			before := fsm.RetentionPoint(segs, p.FlushedOffset, t.Config, now)
			if before <= p.LowWatermark {
				continue
			}
			res, err := j.proposer.Propose(ctx, fsm.Encode(&fsm.TrimPartition{TopicID: t.ID, Partition: p.Partition, Before: before, Timestamp: now}))
			if err == nil {
				err = res.Err()
			}
			if errors.Is(err, fsm.ErrRetentionChanged) {
				// The topic's retention changed after this round read it;
				// the next round recomputes under the new config.
				j.log.Info("retention trim refused: the topic's config changed", "topic", t.Name, "partition", p.Partition, "err", err)
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("trim %s/%d to %d: %w", t.Name, p.Partition, before, err))
				continue
			}
			expired := 0
			for _, s := range segs {
				if s.LastOffset < before {
					expired++
				}
			}
			j.metrics.SegmentsExpired.Add(float64(expired))
			j.log.Info("retention trimmed partition", "topic", t.Name, "partition", p.Partition, "low_watermark", before, "segments", expired)
		}
	}
	return errors.Join(errs...)
}

func (j *Janitor) deleteReleased(ctx context.Context) error {
	pending := j.meta.PendingDeletes()
	if len(pending) == 0 {
		return nil
	}
	var deleted []string
	var errs []error
	for _, key := range pending {
		if err := j.segs.DeleteObject(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
			continue
		}
		deleted = append(deleted, key)
	}
	if len(deleted) > 0 {
		res, err := j.proposer.Propose(ctx, fsm.Encode(&fsm.ObjectsDeleted{Keys: deleted}))
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("record deleted objects: %w", err))
		} else {
			j.metrics.ObjectsDeleted.Add(float64(len(deleted)))
		}
	}
	return errors.Join(errs...)
}

// OrphanDeletable is the garbage-collection rule for a listed object, given
// the cluster clock read before the reference check. An object is deleted
// only if no committed segment references it (and it is not queued for a
// tracked delete) and the clock has passed its commit-by time. Together
// with the state machine refusing a CommitSegment applied after its
// commit-by time, this makes "committed" and "deleted" exclusive: a commit
// applied before the reference check is seen by it; one applied after it
// applies at a clock >= clock > commit-by and is refused. Keys without a
// commit-by time (written by older versions) are never deleted.
func OrphanDeletable(o ObjectInfo, clock int64, referenced bool) bool {
	return o.CommitBy != 0 && clock > o.CommitBy && !referenced
}

func (j *Janitor) collectOrphans(ctx context.Context, clock int64) error {
	objs, err := j.segs.ListObjects(ctx)
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	var errs []error
	legacy := 0
	for _, o := range objs {
		if o.CommitBy == 0 {
			legacy++
		}
		if !OrphanDeletable(o, clock, j.meta.ObjectReferenced(o.Key)) {
			continue
		}
		if err := j.segs.DeleteObject(ctx, o.Key); err != nil {
			errs = append(errs, fmt.Errorf("delete orphan %s: %w", o.Key, err))
			continue
		}
		j.metrics.OrphansDeleted.Inc()
		j.log.Info("deleted orphaned segment object", "key", o.Key, "commit_by", o.CommitBy, "cluster_clock", clock)
	}
	if legacy > 0 {
		j.log.Debug("objects without a commit-by time in their key are never collected", "count", legacy)
	}
	return errors.Join(errs...)
}
