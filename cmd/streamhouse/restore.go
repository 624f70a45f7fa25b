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
// the footer scan.
func runRestore(ctx context.Context, c *agentCmd, log *slog.Logger, progress io.Writer) (restoreReport, error) {
	start := time.Now()
	if hasRaftState(c.DataDir) {
		return restoreReport{}, fmt.Errorf("DATA_DIR %s already holds Raft state: restore only into an empty data dir", c.DataDir)
	}
	lock, err := lockDataDir(mkdirAll(c.DataDir))
	if err != nil {
		return restoreReport{}, err
	}
	defer lock.release()

	db, err := pgsync.Open(ctx, c.DatabaseURL, log)
	if err != nil {
		return restoreReport{}, fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	img, info, err := db.LoadLatest(ctx)
	switch {
	case errors.Is(err, pgsync.ErrNoCheckpoint):
		log.Warn("Postgres holds no checkpoint: restoring from the bucket alone (consumer groups and producer state are lost)")
		img = &fsm.Image{}
	case err != nil:
		return restoreReport{}, fmt.Errorf("restore: load checkpoint: %w", err)
	}

	a := &agent{cfg: c, log: log, registry: prometheus.NewRegistry()}
	if err := a.openObjectStore(ctx); err != nil {
		return restoreReport{}, err
	}
	if err := a.objects.Check(ctx); err != nil {
		return restoreReport{}, fmt.Errorf("restore: object store: %w", err)
	}
	objs, err := a.objects.List(ctx, s3seg.SegmentKeyPrefix)
	if err != nil {
		return restoreReport{}, fmt.Errorf("restore: list segment objects: %w", err)
	}
	existing := make(map[string]bool, len(objs))
	for _, o := range objs {
		existing[o.Key] = true
	}
	referenced := map[string]bool{}
	for _, p := range img.Partitions {
		for _, s := range p.Segments {
			referenced[s.ObjectKey] = true
		}
	}
	var scan []s3seg.ObjectInfo
	for _, o := range objs {
		if !referenced[o.Key] {
			scan = append(scan, o)
		}
	}
	footers, unreadable := readFooters(ctx, a.objects, scan, progress)
	if err := ctx.Err(); err != nil {
		return restoreReport{}, err
	}

	plan, rep := planRestore(img, existing, footers, c.NodeID, c.RestoreOffsetGap)
	rep.ObjectsScanned = len(scan)
	rep.Unreadable = unreadable
	if info.RaftIndex > 0 {
		rep.CheckpointTakenAt = info.TakenAt.UTC().Format(time.RFC3339)
		rep.CheckpointAge = time.Since(info.TakenAt).Round(time.Second).String()
	}
	plan.LastApplied += restoreIndexGap
	rep.SeedIndex = plan.LastApplied
	var snap bytes.Buffer
	if err := fsm.WriteImageSnapshot(&snap, plan); err != nil {
		return restoreReport{}, fmt.Errorf("restore: the reconciled state is inconsistent (a bug; nothing was written): %w", err)
	}
	peer := net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.PeerPort))
	rep.ClusterID, err = cluster.SeedRestoredState(cluster.SeedConfig{
		DataDir: c.DataDir, NodeID: c.NodeID, PeerAddr: peer, Snapshot: snap.Bytes(), Index: plan.LastApplied,
	})
	if err != nil {
		return restoreReport{}, fmt.Errorf("restore: %w", err)
	}
	if err := db.AdoptCluster(ctx, rep.ClusterID); err != nil {
		return restoreReport{}, fmt.Errorf("restore: the state is planted in %s, but Postgres could not be handed to the new cluster (checkpoints will be refused until it is): %w", c.DataDir, err)
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	log.Info("restore complete", "topics", rep.Topics, "partitions", rep.Partitions,
		"segments_from_postgres", rep.SegmentsFromPG, "segments_from_s3", rep.SegmentsFromS3, "lost_offsets", rep.LostOffsets,
		"seed_index", rep.SeedIndex, "cluster", rep.ClusterID, "took", rep.Duration)
	return rep, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func mkdirAll(dir string) string {
	_ = os.MkdirAll(dir, 0o750) // lockDataDir reports a failure
	return dir
}

// readFooters fetches the footers of objs with a few parallel ranged GETs.
// Objects that are not readable segments are listed, not fatal: they are
// skipped (and the orphan collector deletes them later).
func readFooters(ctx context.Context, store s3seg.ObjectStore, objs []s3seg.ObjectInfo, progress io.Writer) ([]objectFooter, []string) {
	var bar *progressbar.ProgressBar
	if progress != nil && len(objs) > 0 {
		bar = progressbar.NewOptions(len(objs), progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("reading segment footers"), progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	var (
		mu         sync.Mutex
		footers    []objectFooter
		unreadable []string
		wg         sync.WaitGroup
	)
	work := make(chan s3seg.ObjectInfo)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				f, err := readFooter(ctx, store, o)
				mu.Lock()
				if err != nil {
					unreadable = append(unreadable, o.Key+": "+err.Error())
				} else {
					footers = append(footers, f)
				}
				if bar != nil {
					_ = bar.Add(1)
				}
				mu.Unlock()
			}
		}()
	}
	for _, o := range objs {
		select {
		case work <- o:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if bar != nil {
		_ = bar.Finish()
	}
	return footers, unreadable
}

func readFooter(ctx context.Context, store s3seg.ObjectStore, o s3seg.ObjectInfo) (objectFooter, error) {
	want := min(o.Size, 64<<10)
	for attempt := 0; attempt < 2; attempt++ {
		if want <= 0 {
			return objectFooter{}, errors.New("empty object")
		}
		tail, err := store.GetRange(ctx, o.Key, o.Size-want, want)
		if err != nil {
			return objectFooter{}, err
		}
		f, err := s3seg.DecodeFooterTail(tail, o.Size)
		var short *s3seg.ShortTailError
		if errors.As(err, &short) {
			want = short.Need
			continue
		}
		if err != nil {
			return objectFooter{}, err
		}
		return objectFooter{Key: o.Key, LastModified: o.LastModified, Entries: f.Entries}, nil
	}
	return objectFooter{}, errors.New("footer larger than announced")
}

func printRestoreReport(w io.Writer, rep restoreReport, output string) error {
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
	fmt.Fprintf(w, "Safety margin: %d further offsets skipped per partition (records acknowledged after the checkpoint leave no evidence).\n\n", rep.OffsetGap)
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
