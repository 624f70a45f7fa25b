package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/s3seg"
)

// DR restore wiring: the steps of a restore, each done by the package that
// owns it (pgsync loads the checkpoint and allocates the generation, s3seg
// scans the bucket, fsm plans, cluster plants the state); restore.go is the
// command and its output.

// runRestore loads the latest checkpoint, reconciles the bucket, plants the
// restored Raft state in c.DataDir and hands the cluster to the new
// identity in Postgres. progress (may be nil) receives a progress bar for
// the footer scan. When objects stay unreadable it fails (an
// *unreadableError naming them) unless c.RestoreAllowUnreadable.
func runRestore(ctx context.Context, c *agentCmd, log *slog.Logger, progress io.Writer) (fsm.RestoreReport, error) {
	start := time.Now()
	if hasRaftState(c.DataDir) {
		return fsm.RestoreReport{}, fmt.Errorf("DATA_DIR %s already holds Raft state: restore only into an empty data dir", c.DataDir)
	}
	lock, err := lockDataDir(mkdirAll(c.DataDir))
	if err != nil {
		return fsm.RestoreReport{}, err
	}
	defer lock.release()

	db, err := pgsync.Open(ctx, c.DatabaseURL, log)
	if err != nil {
		return fsm.RestoreReport{}, fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	img, info, err := loadCheckpoint(ctx, db, log)
	if err != nil {
		return fsm.RestoreReport{}, err
	}
	scan, err := scanBucket(ctx, c, img, log, progress)
	if err != nil {
		return fsm.RestoreReport{}, err
	}
	if len(scan.Unreadable) > 0 && !c.RestoreAllowUnreadable {
		return fsm.RestoreReport{}, &unreadableError{failures: scan.Unreadable}
	}
	// A new producer generation for every restore, taken before anything
	// is planted: even a restore that fails later never shares it.
	gen, err := db.AllocateGeneration(ctx, img.ProducerGeneration)
	if err != nil {
		return fsm.RestoreReport{}, fmt.Errorf("restore: %w", err)
	}
	plan, rep := fsm.PlanRestore(restoreInput(c, img, scan, gen))
	rep.ObjectsScanned = len(scan.Footers) + len(scan.Unreadable) + len(scan.Vanished)
	rep.Unreadable = failureStrings(scan.Unreadable)
	rep.AllowUnreadable = len(rep.Unreadable) > 0
	if info.RaftIndex > 0 {
		rep.CheckpointTakenAt = info.TakenAt.UTC().Format(time.RFC3339)
		rep.CheckpointAge = time.Since(info.TakenAt).Round(time.Second).String()
	}
	if err := plantRestore(ctx, c, db, plan, &rep); err != nil {
		return fsm.RestoreReport{}, err
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	log.Info("restore complete", "topics", rep.Topics, "partitions", rep.Partitions,
		"segments_from_postgres", rep.SegmentsFromPG, "segments_from_s3", rep.SegmentsFromS3, "lost_offsets", rep.LostOffsets,
		"unreadable_objects", len(rep.Unreadable), "offset_gap", rep.OffsetGap, "producer_generation", rep.ProducerGen,
		"seed_index", rep.SeedIndex, "cluster", rep.ClusterID, "took", rep.Duration)
	return rep, nil
}

// loadCheckpoint is the latest checkpoint, or an empty image when Postgres
// holds none.
func loadCheckpoint(ctx context.Context, db *pgsync.DB, log *slog.Logger) (*fsm.Image, pgsync.Info, error) {
	img, info, err := db.LoadLatest(ctx)
	switch {
	case errors.Is(err, pgsync.ErrNoCheckpoint):
		log.Warn("Postgres holds no checkpoint: restoring from the bucket alone (consumer groups and producer state are lost)")
		return &fsm.Image{}, info, nil
	case err != nil:
		return nil, info, fmt.Errorf("restore: load checkpoint: %w", err)
	}
	return img, info, nil
}

// scanBucket opens the object store and reads the footers of the objects
// the checkpoint neither references nor queued for deletion.
func scanBucket(ctx context.Context, c *agentCmd, img *fsm.Image, log *slog.Logger, progress io.Writer) (s3seg.BucketScan, error) {
	objects, err := c.openObjectStore(ctx, prometheus.NewRegistry(), log)
	if err != nil {
		return s3seg.BucketScan{}, err
	}
	start, done := progressBar(progress)
	scan, err := s3seg.ScanBucket(ctx, objects, img.KnownObjects(), s3seg.ScanOptions{
		RetryFor: time.Duration(c.RestoreReadRetryMs) * time.Millisecond, Start: start, Done: done})
	if err != nil {
		return scan, fmt.Errorf("restore: %w", err)
	}
	for _, f := range scan.Unreadable {
		log.Warn("segment object unreadable", "key", f.Key, "attempts", f.Attempts, "err", f.Err)
	}
	return scan, nil
}

// restoreInput hands the planner the checkpoint and the scanned footers'
// blocks (converted by partition.SegmentRefOf, the object's modification
// time as the commit time).
func restoreInput(c *agentCmd, img *fsm.Image, scan s3seg.BucketScan, generation uint64) fsm.RestoreInput {
	in := fsm.RestoreInput{Image: img, Existing: scan.Existing, SeedNode: c.NodeID, OffsetGap: c.RestoreOffsetGap, Generation: generation}
	for _, f := range scan.Footers {
		for _, e := range f.Entries {
			in.Blocks = append(in.Blocks, fsm.RestoreBlock{Topic: e.Topic, TopicID: e.TopicID, Partition: e.Partition,
				Ref: partition.SegmentRefOf(f.Key, e, f.LastModified.UnixMilli())})
		}
	}
	for _, f := range scan.Unreadable {
		in.Unreadable = append(in.Unreadable, f.Key)
	}
	return in
}

// plantRestore writes the planned image as the first Raft snapshot of
// c.DataDir and adopts the Postgres database for the new cluster.
func plantRestore(ctx context.Context, c *agentCmd, db *pgsync.DB, plan *fsm.Image, rep *fsm.RestoreReport) error {
	plan.LastApplied += fsm.RestoreIndexGap
	rep.SeedIndex = plan.LastApplied
	var snap bytes.Buffer
	if err := fsm.WriteImageSnapshot(&snap, plan); err != nil {
		return fmt.Errorf("restore: the reconciled state is inconsistent (a bug; nothing was written): %w", err)
	}
	peer := net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.PeerPort))
	var err error
	rep.ClusterID, err = cluster.SeedRestoredState(cluster.SeedConfig{
		DataDir: c.DataDir, NodeID: c.NodeID, PeerAddr: peer, Snapshot: snap.Bytes(), Index: plan.LastApplied,
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := db.AdoptCluster(ctx, rep.ClusterID); err != nil {
		return fmt.Errorf("restore: the state is planted in %s, but Postgres could not be handed to the new cluster (checkpoints will be refused until it is): %w", c.DataDir, err)
	}
	return nil
}

func mkdirAll(dir string) string {
	_ = os.MkdirAll(dir, 0o750) // lockDataDir reports a failure
	return dir
}
