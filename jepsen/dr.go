package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
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
	rng := rand.New(rand.NewPCG(r.seed, 0xd1))
	rep := &DRReport{Moment: moment, FlushedBefore: map[int32]int64{}, AckedBefore: map[int32]int64{}}
	opts := checker.Options{FlushedBefore: rep.FlushedBefore, AllowedGaps: map[int32][]checker.Range{}}
	load := time.Duration(8+rng.IntN(max(int(r.duration/time.Second)/2, 5))) * time.Second
	rep.LoadBefore = load.Seconds()
	// Sample the flushed offsets (FSM state: the segment is in the bucket
	// and committed) until the disaster; the last sample is a lower bound
	// of what was flushed at the disaster.
	extras := startDRExtras(ctx, moment, r.seed, c, log)
	defer extras.atDisaster()
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	flushed := map[int32]int64{}
	go func() {
		defer close(sampleDone)
		for {
			for i := range c.Agents {
				qctx, cancel := context.WithTimeout(ctx, time.Second)
				st, err := wl.Partitions(qctx, i)
				cancel()
				if err != nil {
					continue
				}
				for p, s := range st {
					flushed[p] = max(flushed[p], s[2])
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	if moment == "pg-down" {
		time.Sleep(load - 5*time.Second)
		inv := rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: "stop postgres"})
		err := c.PG.Stop()
		rec.Complete(inv, history.OK, func(o *history.Op) {
			if err != nil {
				o.Err = err.Error()
			}
		})
		time.Sleep(5 * time.Second)
	} else {
		time.Sleep(load)
	}
	// The disaster.
	close(stopSampling)
	<-sampleDone
	extras.atDisaster()
	for p, f := range flushed {
		rep.FlushedBefore[p] = f
	}
	inv := rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FDisaster, Value: "kill every agent and delete every data dir"})
	for i := range c.Agents {
		c.Kill(i)
	}
	var wipeErr error
	for i := range c.Agents {
		if err := c.Wipe(i); err != nil {
			wipeErr = err
		}
	}
	rec.Complete(inv, history.OK, nil)
	if wipeErr != nil {
		return rep, opts, wipeErr
	}
	var checkpointIndex uint64
	if moment == drTopicChurn {
		var err error
		if checkpointIndex, err = latestCheckpoint(ctx, c); err != nil {
			return rep, opts, fmt.Errorf("the checkpoint at the disaster: %w", err)
		}
	}
	for _, op := range rec.Ops() {
		if op.F == history.FSend && op.Type == history.OK {
			rep.AckedBefore[op.P] = max(rep.AckedBefore[op.P], op.O+1)
		}
	}
	var parts []string
	for p := int32(0); p < int32(len(rep.FlushedBefore)); p++ {
		parts = append(parts, fmt.Sprintf("p%d: flushed >= %d of %d acked", p, rep.FlushedBefore[p], rep.AckedBefore[p]))
	}
	rep.RecoveryPoint = strings.Join(parts, ", ")
	time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond) // the cluster stays dead a moment
	if !c.PG.Running() {
		inv := rec.Invoke(history.Op{Process: history.NemesisProcess, F: history.FNemesis, Value: "start postgres"})
		err := c.PG.Restart()
		rec.Complete(inv, history.OK, nil)
		if err != nil {
			return rep, opts, err
		}
	}

	// Restore on n1, start it alone, then n2 and n3 join it.
	restoreStart := time.Now()
	restoreAt := time.Since(rec.Start())
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := extras.beforeRestore(c, r.seed); err != nil {
		return rep, opts, err
	}
	out, err := c.RunRestore(rctx, 0)
	extras.afterRestore(c, rep)
	if err != nil {
		return rep, opts, err
	}
	rep.Restore = json.RawMessage(out)
	var rr restoreReport
	if err := json.Unmarshal(out, &rr); err != nil {
		return rep, opts, fmt.Errorf("restore report: %w: %s", err, out)
	}
	for _, p := range rr.PerPartition {
		if p.Topic == "jepsen" && p.ResumeAt > p.RecoveredTo {
			opts.AllowedGaps[p.Partition] = append(opts.AllowedGaps[p.Partition], checker.Range{From: p.RecoveredTo, To: p.ResumeAt})
		}
	}
	c.SetEnv(0, "BOOTSTRAP_EXPECT=0", "JOIN=")
	if err := c.Launch(0); err != nil {
		return rep, opts, err
	}
	if err := c.WaitReady(rctx, 0); err != nil {
		return rep, opts, fmt.Errorf("restored agent not ready: %w", err)
	}
	// Restore time: until the workload's first acknowledgement after the
	// restore began.
	for time.Since(restoreStart) < 90*time.Second {
		if wl.LastAck().After(restoreStart) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the workload
	}
	rep.RestoreSeconds = time.Since(restoreStart).Seconds()
	log.Info("restored", "after", restoreAt, "restore_seconds", rep.RestoreSeconds)
	gossip1 := c.GossipAddr(0)
	for i := 1; i < len(c.Agents); i++ {
		c.SetEnv(i, "BOOTSTRAP_EXPECT=0", "JOIN="+gossip1)
		if err := c.Launch(i); err != nil {
			return rep, opts, err
		}
	}
	for time.Since(restoreStart) < 2*time.Minute {
		if st, err := c.Status(0); err == nil && len(st.Voters) == len(c.Agents) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster
	}
	if err := extras.check(rctx, c, checkpointIndex, rep); err != nil {
		return rep, opts, err
	}
	// Load continues on the restored cluster.
	time.Sleep(10 * time.Second)
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		_ = os.WriteFile(c.Agents[0].LogPath+".dr.json", b, 0o644)
	}
	return rep, opts, nil
}
