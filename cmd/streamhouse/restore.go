package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/s3seg"
)

// restoreCmd is `streamhouse restore`: it plants the restored state in an
// empty DATA_DIR, then exits; start the agent on that DATA_DIR afterwards
// (or run the agent with RESTORE_FROM_POSTGRES=true, which does both).
type restoreCmd struct {
	agentCmd `embed:""`
	Output   string `name:"output" short:"o" default:"table" enum:"table,json" help:"Report format: table or json."`
}

func (c *restoreCmd) Run() error {
	if err := c.agentCmd.validate(); err != nil {
		return fmt.Errorf("configuration error: %w", err)
	}
	if c.DatabaseURL == "" {
		return errors.New("DATABASE_URL is required: the restore reads the latest checkpoint from PostgreSQL")
	}
	ctx, stop := signalContext()
	defer stop()
	progress := io.Writer(os.Stderr)
	rep, err := runRestore(ctx, &c.agentCmd, c.logger(), progress)
	var ue *unreadableError
	if errors.As(err, &ue) && c.Output == "json" {
		// Scripts get the objects as data, too.
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"error": "segment objects stayed unreadable; nothing was written",
			"objects_unreadable": failureStrings(ue.failures)})
	}
	if err != nil {
		return err
	}
	return printRestoreReport(os.Stdout, rep, c.Output)
}

// hasRaftState reports whether dataDir already holds an agent's Raft state.
func hasRaftState(dataDir string) bool {
	_, err := os.Stat(dataDir + "/raft/raft.db")
	return err == nil
}

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

// unreadableError fails a restore that could not read some objects and was
// not allowed to restore without them.
type unreadableError struct{ failures []s3seg.ReadFailure }

func (e *unreadableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restore: %d segment objects stayed unreadable; nothing was written. They may hold flushed, acknowledged records: "+
		"fix the object store and run the restore again, or pass --allow-unreadable (RESTORE_ALLOW_UNREADABLE=true) to restore without them "+
		"(their offsets become gaps; the objects are kept, never deleted):", len(e.failures))
	for _, f := range e.failures {
		b.WriteString("\n  unreadable: " + f.String())
	}
	return b.String()
}

func failureStrings(fs []s3seg.ReadFailure) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func mkdirAll(dir string) string {
	_ = os.MkdirAll(dir, 0o750) // lockDataDir reports a failure
	return dir
}

// progressBar draws a bar on w (nil: none) for the footer scan: start gets
// the number of objects to read, done is called after each.
func progressBar(w io.Writer) (start func(n int), done func()) {
	if w == nil {
		return nil, nil
	}
	var (
		mu    sync.Mutex
		bar   *progressbar.ProgressBar
		total int
		read  int
	)
	start = func(n int) {
		mu.Lock()
		defer mu.Unlock()
		if total = n; n > 0 {
			bar = progressbar.NewOptions(n, progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription("reading segment footers"), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
	}
	done = func() {
		mu.Lock()
		defer mu.Unlock()
		if bar == nil {
			return
		}
		_ = bar.Add(1)
		if read++; read == total {
			_ = bar.Finish()
		}
	}
	return start, done
}

func joinIDs(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ", ")
}

func printRestoreReport(w io.Writer, rep fsm.RestoreReport, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "Restore complete in %s. New cluster %s, Raft resumes at index %d.\n", rep.Duration, rep.ClusterID, rep.SeedIndex)
	if rep.CheckpointIndex > 0 {
		fmt.Fprintf(w, "Checkpoint: Raft index %d, taken %s (%s before the restore).\n", rep.CheckpointIndex, rep.CheckpointTakenAt, rep.CheckpointAge)
	} else {
		fmt.Fprintln(w, "Checkpoint: none in Postgres; restored from the bucket alone.")
	}
	fmt.Fprintf(w, "Topics %d (recreated from S3: %s), partitions %d, consumer groups %d, producers %d.\n",
		rep.Topics, orDash(strings.Join(rep.TopicsFromS3, ", ")), rep.Partitions, rep.Groups, rep.Producers)
	fmt.Fprintf(w, "Segments: %d from Postgres, %d reconciled from S3, %d missing on S3; %d objects scanned, %d blocks skipped (overlapping or uncommitted), %d unreadable.\n",
		rep.SegmentsFromPG, rep.SegmentsFromS3, rep.SegmentsMissing, rep.ObjectsScanned, rep.BlocksSkipped, len(rep.Unreadable))
	fmt.Fprintf(w, "Estimated loss: %d offsets were acknowledged but never flushed; they are skipped, never reused.\n", rep.LostOffsets)
	fmt.Fprintf(w, "Safety margin: %d further offsets skipped per partition after the evidence; bound used: %s.\n", rep.OffsetGap, rep.OffsetGapSource)
	fmt.Fprintf(w, "Deleted topics: %d topic IDs the checkpoint knows were deleted skipped (%s); %d objects stay queued for deletion.\n",
		len(rep.DeletedTopicIDs), orDash(joinIDs(rep.DeletedTopicIDs)), rep.PendingDeletes)
	fmt.Fprintf(w, "Producer IDs: generation %d (new IDs never equal one the old cluster issued).\n", rep.ProducerGen)
	if rep.AllowUnreadable {
		fmt.Fprintf(w, "UNREADABLE: %d objects could not be read and were skipped because --allow-unreadable was given; offsets only they held are gaps. The objects are kept (never deleted).\n",
			len(rep.Unreadable))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tREADABLE\tRESUME AT\tLOST\tFROM PG\tFROM S3\tLAST FLUSHED RECORD")
	for _, p := range rep.PerPartition {
		readable := "none"
		if p.RecoveredTo > p.LowWatermark {
			readable = fmt.Sprintf("%d-%d", p.LowWatermark, p.RecoveredTo-1)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Topic, p.Partition, readable, p.ResumeAt,
			p.LostOffsets, p.FromPostgres, p.FromS3, orDash(p.LastFlushedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, u := range rep.Unreadable {
		fmt.Fprintln(w, "unreadable:", u)
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	return nil
}
