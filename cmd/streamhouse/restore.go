package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/fsm"
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
		_ = writeJSON(os.Stdout, map[string]any{"error": "segment objects stayed unreadable; nothing was written",
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
	return err == nil && !cluster.SeedUnfinished(dataDir) // a restore cut short is redone
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
		return writeJSON(w, rep)
	}
	fmt.Fprintf(w, "Restore complete in %s. New cluster %s, Raft resumes at index %d.\n", rep.Duration, rep.ClusterID, rep.SeedIndex)
	if rep.CheckpointIndex > 0 {
		fmt.Fprintf(w, "Checkpoint: Raft index %d, taken %s (%s before the restore).\n", rep.CheckpointIndex, rep.CheckpointTakenAt, rep.CheckpointAge)
	} else {
		fmt.Fprintln(w, "Checkpoint: none in Postgres; restored from the bucket alone.")
	}
	fmt.Fprintf(w, "Topics %d (recreated from S3: %s; with partitions added after the checkpoint: %s), partitions %d, consumer groups %d; idempotent producers dropped %d (their clients start new producer ids).\n",
		rep.Topics, orDash(strings.Join(rep.TopicsFromS3, ", ")), orDash(strings.Join(rep.TopicsGrown, ", ")), rep.Partitions, rep.Groups, rep.ProducersDropped)
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
