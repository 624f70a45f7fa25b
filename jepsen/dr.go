package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/checker"
	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/jepsen/workload"
)

// DR drill moments: when the disaster strikes relative to the flush and
// checkpoint machinery.
var drMoments = []string{"mid-flush", "mid-checkpoint", "pg-down", "pg-lagging", drS3ReadFaults, drTopicChurn}

// drEnv tunes the agents for a moment.
func drEnv(moment string) []string {
	env := []string{"RESTORE_OFFSET_GAP=100000"}
	switch moment {
	case "mid-flush":
		// Segments roll every 100 ms: a flush is nearly always in flight.
		env = append(env, "SEGMENT_MAX_AGE_MS=100", "CHECKPOINT_INTERVAL_MS=1000")
	case "mid-checkpoint":
		// Checkpoints back to back.
		env = append(env, "CHECKPOINT_INTERVAL_MS=100")
	case "pg-lagging":
		// The last checkpoint is up to 15 s old at the disaster: the
		// restore must find the newer segments in the bucket.
		env = append(env, "CHECKPOINT_INTERVAL_MS=15000")
	case "pg-down":
		env = append(env, "CHECKPOINT_INTERVAL_MS=500")
	}
	return append(env, drExtraEnv(moment)...)
}

// DRReport is the outcome of a DR drill.
type DRReport struct {
	Moment             string          `json:"moment"`
	LoadBefore         float64         `json:"load_before_disaster_seconds"`
	FlushedBefore      map[int32]int64 `json:"flushed_before_disaster"` // last sampled flushed offset per partition
	AckedBefore        map[int32]int64 `json:"acked_before_disaster"`   // highest acknowledged offset + 1
	RecoveryPoint      string          `json:"recovery_point"`
	Restore            json.RawMessage `json:"restore_report,omitempty"`
	RestoreSeconds     float64         `json:"restore_seconds"` // restore start -> first acknowledged send
	LostFlushed        int             `json:"lost_at_or_below_flushed"`
	LostUnflushed      int             `json:"lost_above_flushed"`
	RecoveredUnflushed int             `json:"recovered_above_flushed"`
	OffsetReuse        int             `json:"offset_reuse"`
	// s3-read-faults: object reads the fault proxy failed during the restore.
	S3ReadsFailed int64 `json:"s3_reads_failed,omitempty"`
	// topic-churn: topics deleted (acknowledged) before the disaster, those
	// a checkpoint covered that came back (must be none), and those deleted
	// after the last checkpoint that came back (allowed: beyond the
	// recovery point).
	TopicsDeleted              int      `json:"topics_deleted,omitempty"`
	ResurrectedTopics          []string `json:"resurrected_topics,omitempty"`
	DeletedAfterCheckpointBack int      `json:"deleted_after_checkpoint_back,omitempty"`
}

type restoreReport struct {
	PerPartition []struct {
		Topic       string `json:"topic"`
		Partition   int32  `json:"partition"`
		RecoveredTo int64  `json:"recovered_to"`
		ResumeAt    int64  `json:"resume_at"`
	} `json:"partitions_restored"`
	CheckpointAge string `json:"checkpoint_age"`
}

// runDR is the procedure of cmd/streamhouse/dr_test.go under load: load
// for a seeded while, then (depending on the moment) the disaster — every
// agent SIGKILLed and its data dir deleted while producers and consumers
// keep going — then `streamhouse restore` on a fresh agent, which starts
// and is joined by two more fresh agents; load continues throughout.
func runDR(ctx context.Context, moment string, r runSpec, c *control.Cluster, wl *workload.Workload, rec *history.Recorder, log *slog.Logger) (*DRReport, checker.Options, error) {
	d := &drill{moment: moment, seed: r.seed, c: c, wl: wl, rec: rec, log: log, rng: rand.New(rand.NewPCG(r.seed, 0xd1)),
		rep: &DRReport{Moment: moment, FlushedBefore: map[int32]int64{}, AckedBefore: map[int32]int64{}}}
	d.opts = checker.Options{FlushedBefore: d.rep.FlushedBefore, AllowedGaps: map[int32][]checker.Range{}}
	load := time.Duration(8+d.rng.IntN(max(int(r.duration/time.Second)/2, 5))) * time.Second
	d.rep.LoadBefore = load.Seconds()
	d.extras = startDRExtras(ctx, moment, r.seed, c, log)
	defer d.extras.atDisaster()
	err := d.run(ctx, load)
	return d.rep, d.opts, err
}

// drill is one DR drill in progress.
type drill struct {
	moment string
	seed   uint64
	c      *control.Cluster
	wl     *workload.Workload
	rec    *history.Recorder
	log    *slog.Logger
	rng    *rand.Rand
	extras *drExtras
	rep    *DRReport
	opts   checker.Options
}

// run loads the cluster, strikes, restores and checks the restored
// cluster.
func (d *drill) run(ctx context.Context, load time.Duration) error {
	flushed := d.loadUntilDisaster(ctx, load)
	// The disaster.
	d.extras.atDisaster()
	for p, f := range flushed {
		d.rep.FlushedBefore[p] = f
	}
	if err := d.disaster(); err != nil {
		return err
	}
	var checkpointIndex uint64
	if d.moment == drTopicChurn {
		var err error
		if checkpointIndex, err = latestCheckpoint(ctx, d.c); err != nil {
			return fmt.Errorf("the checkpoint at the disaster: %w", err)
		}
	}
	ackedBefore(d.rec.Ops(), d.rep.AckedBefore)
	d.rep.RecoveryPoint = recoveryPoint(d.rep.FlushedBefore, d.rep.AckedBefore)
	time.Sleep(time.Duration(500+d.rng.IntN(2000)) * time.Millisecond) // the cluster stays dead a moment
	if err := d.restartPG(); err != nil {
		return err
	}

	// Restore on n1, start it alone, then n2 and n3 join it.
	restoreStart := time.Now()
	restoreAt := time.Since(d.rec.Start())
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := d.restore(rctx); err != nil {
		return err
	}
	if err := d.startRestored(rctx, restoreStart, restoreAt); err != nil {
		return err
	}
	if err := d.extras.check(rctx, d.c, checkpointIndex, d.rep); err != nil {
		return err
	}
	// Load continues on the restored cluster.
	time.Sleep(10 * time.Second)
	writeJSON(d.c.Agents[0].LogPath+".dr.json", d.rep)
	return nil
}

// loadUntilDisaster lets the load run (stopping PostgreSQL 5 s before the
// end for pg-down) while sampling the flushed offsets (FSM state: the
// segment is in the bucket and committed); the last sample, returned, is a
// lower bound of what was flushed at the disaster.
func (d *drill) loadUntilDisaster(ctx context.Context, load time.Duration) map[int32]int64 {
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	flushed := map[int32]int64{}
	go func() {
		defer close(sampleDone)
		for {
			d.sampleFlushed(ctx, flushed)
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	if d.moment == "pg-down" {
		time.Sleep(load - 5*time.Second)
		inv := d.rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: "stop postgres"})
		err := d.c.PG.Stop()
		d.rec.Complete(inv, history.OK, func(o *history.Op) {
			if err != nil {
				o.Err = err.Error()
			}
		})
		time.Sleep(5 * time.Second)
	} else {
		time.Sleep(load)
	}
	close(stopSampling)
	<-sampleDone
	return flushed
}

// sampleFlushed raises flushed to every agent's flushed offsets.
func (d *drill) sampleFlushed(ctx context.Context, flushed map[int32]int64) {
	for i := range d.c.Agents {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := d.wl.Partitions(qctx, i)
		cancel()
		if err != nil {
			continue
		}
		for p, s := range st {
			flushed[p] = max(flushed[p], s[2])
		}
	}
}

// disaster kills every agent and deletes every data dir.
func (d *drill) disaster() error {
	inv := d.rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster, Value: "kill every agent and delete every data dir"})
	for i := range d.c.Agents {
		d.c.Kill(i)
	}
	var wipeErr error
	for i := range d.c.Agents {
		if err := d.c.Wipe(i); err != nil {
			wipeErr = err
		}
	}
	d.rec.Complete(inv, history.OK, nil)
	return wipeErr
}

// ackedBefore raises acked[p] to the highest acknowledged offset + 1 of
// every partition in ops.
func ackedBefore(ops []history.Op, acked map[int32]int64) {
	for _, op := range ops {
		if op.F == history.FSend && op.Type == history.OK {
			acked[op.P] = max(acked[op.P], op.O+1)
		}
	}
}

// recoveryPoint describes, per partition 0..len(flushed)-1, the flushed
// and acknowledged offsets at the disaster.
func recoveryPoint(flushed, acked map[int32]int64) string {
	var parts []string
	for p := int32(0); p < int32(len(flushed)); p++ {
		parts = append(parts, fmt.Sprintf("p%d: flushed >= %d of %d acked", p, flushed[p], acked[p]))
	}
	return strings.Join(parts, ", ")
}

// restartPG starts PostgreSQL again if the drill stopped it.
func (d *drill) restartPG() error {
	if d.c.PG.Running() {
		return nil
	}
	inv := d.rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: "start postgres"})
	err := d.c.PG.Restart()
	d.rec.Complete(inv, history.OK, nil)
	return err
}

// restore runs `streamhouse restore` for agent 0 and allows the checker
// the offset gaps the restore reports.
func (d *drill) restore(ctx context.Context) error {
	if err := d.extras.beforeRestore(d.c, d.seed); err != nil {
		return err
	}
	out, err := d.c.RunRestore(ctx, 0)
	d.extras.afterRestore(d.c, d.rep)
	if err != nil {
		return err
	}
	d.rep.Restore = json.RawMessage(out)
	var rr restoreReport
	if err := json.Unmarshal(out, &rr); err != nil {
		return fmt.Errorf("restore report: %w: %s", err, out)
	}
	restoreGaps(rr, d.opts.AllowedGaps)
	return nil
}

// restoreGaps adds to gaps the offsets the restore skipped in the jepsen
// topic: [recovered_to, resume_at) of each partition.
func restoreGaps(rr restoreReport, gaps map[int32][]checker.Range) {
	for _, p := range rr.PerPartition {
		if p.Topic == "jepsen" && p.ResumeAt > p.RecoveredTo {
			gaps[p.Partition] = append(gaps[p.Partition], checker.Range{From: p.RecoveredTo, To: p.ResumeAt})
		}
	}
}

// startRestored starts the restored agent 0 alone, measures the restore
// time (until the workload's first acknowledgement after the restore
// began), then lets the other agents join it and waits (bounded) until
// they are voters.
func (d *drill) startRestored(ctx context.Context, restoreStart time.Time, restoreAt time.Duration) error {
	d.c.SetEnv(0, "BOOTSTRAP_EXPECT=0", "JOIN=")
	if err := d.c.Launch(0); err != nil {
		return err
	}
	if err := d.c.WaitReady(ctx, 0); err != nil {
		return fmt.Errorf("restored agent not ready: %w", err)
	}
	for time.Since(restoreStart) < 90*time.Second {
		if d.wl.LastAck().After(restoreStart) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the workload
	}
	d.rep.RestoreSeconds = time.Since(restoreStart).Seconds()
	d.log.Info("restored", "after", restoreAt, "restore_seconds", d.rep.RestoreSeconds)
	gossip1 := d.c.GossipAddr(0)
	for i := 1; i < len(d.c.Agents); i++ {
		d.c.SetEnv(i, "BOOTSTRAP_EXPECT=0", "JOIN="+gossip1)
		if err := d.c.Launch(i); err != nil {
			return err
		}
	}
	for time.Since(restoreStart) < 2*time.Minute {
		if st, err := d.c.Status(0); err == nil && len(st.Voters) == len(d.c.Agents) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster
	}
	return nil
}
