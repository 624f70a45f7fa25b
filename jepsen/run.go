package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/checker"
	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/jepsen/nemesis"
	"github.com/streamhouse/streamhouse/jepsen/workload"
)

// RunResult is one run's outcome (results.json).
type RunResult struct {
	Class      string          `json:"class"`
	Client     string          `json:"client,omitempty"` // workload client mode; "" in older results: grpc
	Seed       uint64          `json:"seed"`
	Dir        string          `json:"dir"`
	Net        string          `json:"net"`
	Agents     int             `json:"agents"`
	Duration   time.Duration   `json:"duration_ns"`
	Elapsed    time.Duration   `json:"elapsed_ns"`
	Ops        int             `json:"ops"`
	SendsOK    int             `json:"sends_ok"`
	SendsFail  int             `json:"sends_fail"`
	SendsInfo  int             `json:"sends_info"`
	Valid      bool            `json:"valid"`
	Anomalies  int             `json:"anomalies"`
	Counts     map[string]int  `json:"anomaly_counts"`
	Faults     int             `json:"faults"`
	Recoveries []float64       `json:"recovery_seconds"` // heal -> first acknowledged send, per fault
	Outages    []float64       `json:"outage_seconds"`   // per fault: longest time without acks from its start to 10 s after its heal
	MaxAckGap  float64         `json:"max_ack_gap_seconds"`
	FinalWait  float64         `json:"final_converge_seconds"`
	ReadResets int64           `json:"reader_resets,omitempty"` // assign-based readers replaced after an out-of-range answer
	ProcTail   ProcTail        `json:"producer_unacked_tail"`   // the producer with the most sends after its last acknowledgement
	Crashes    []string        `json:"agent_crashes,omitempty"`
	Errors     []string        `json:"errors,omitempty"`
	DR         *DRReport       `json:"dr,omitempty"`
	Events     []nemesis.Event `json:"events,omitempty"`
	Checker    checker.Result  `json:"checker"`
}

func workloadConfig(o options, r runSpec, log *slog.Logger) workload.Config {
	return workload.Config{Topic: "jepsen", Partitions: int32(o.partitions), Producers: 2, Rate: o.rate,
		Pollers: 1, GroupConsumers: 2, Group: "jepsen-group", Seed: r.seed, Log: log, Client: r.client}
}

// classLabel is a class's name in the reports: the class, and the client
// mode unless gRPC.
func classLabel(class, client string) string {
	if client == "" || client == workload.ClientGRPC {
		return class
	}
	return class + " (" + client + ")"
}

// watchCrashes reports agents that exit without the nemesis killing them.
func watchCrashes(ctx context.Context, c *control.Cluster, res *RunResult) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		seen := map[string]bool{}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			for _, id := range c.Exited() {
				if !seen[id] {
					seen[id] = true
					res.Crashes = append(res.Crashes, id)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func runOne(ctx context.Context, o options, r runSpec, bin, minio string, log *slog.Logger) (res RunResult) {
	spec := classes[r.class]
	res = RunResult{Class: r.class, Client: r.client, Seed: r.seed, Agents: o.agents, Duration: r.duration, Counts: map[string]int{}}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	dir := filepath.Join(o.out, r.name())
	res.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	log = log.With("run", filepath.Base(dir))
	rec, err := history.NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	env, smallDisk := clusterEnv(spec)
	c, err := control.Start(ctx, control.Config{Agents: o.agents, Mode: o.mode, Dir: dir, AgentBin: bin, MinIOBin: minio,
		Lossy: spec.lossy, Env: env, SmallDisk: smallDisk, Log: log})
	if err != nil {
		res.Errors = append(res.Errors, "cluster: "+err.Error())
		_ = rec.Close()
		return res
	}
	res.Net = c.Mode()
	log.Info("cluster up", "net", c.Mode(), "pg", c.PGURL, "minio", c.MinIO.Endpoint())
	defer closeCluster(c, &res, dir, o.keepData)
	stopWatch := watchCrashes(ctx, c, &res)

	wl, err := startWorkload(ctx, o, r, spec, c, rec, log)
	if err != nil {
		stopWatch()
		res.Errors = append(res.Errors, "setup: "+err.Error())
		_ = rec.Close()
		return res
	}
	opts := runFaults(ctx, spec, r, c, wl, rec, log, &res)
	wl.Stop()
	res.ReadResets = wl.ReaderResets()
	fctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	fr := wl.FinalRead(fctx, 90*time.Second)
	cancel()
	stopWatch()
	res.FinalWait = fr.Wait.Seconds()
	res.Errors = append(res.Errors, fr.Errors...)
	for _, id := range res.Crashes {
		res.Errors = append(res.Errors, fmt.Sprintf("agent %s exited by itself (see %s.log)", id, id))
	}
	if err := rec.Close(); err != nil {
		res.Errors = append(res.Errors, "history: "+err.Error())
	}
	res.check(rec.Ops(), opts, dir)
	writeJSON(filepath.Join(dir, "results.json"), res)
	return res
}

// startWorkload creates the test topic and starts the clients.
func startWorkload(ctx context.Context, o options, r runSpec, spec classSpec, c *control.Cluster, rec *history.Recorder, log *slog.Logger) (*workload.Workload, error) {
	wcfg := workloadConfig(o, r, log)
	wcfg.Rate = drWorkloadRate(spec.dr, wcfg.Rate)
	wl := workload.New(wcfg, c, rec)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := wl.Setup(sctx)
	cancel()
	if err != nil {
		return nil, err
	}
	wl.Start(ctx)
	return wl, nil
}

// clusterEnv is the agents' extra environment for a class, and the size
// of each agent's small filesystem (0: none).
func clusterEnv(spec classSpec) (env []string, smallDisk int64) {
	if spec.dr != "" {
		env = drEnv(spec.dr)
	}
	env = append(env, spec.env...)
	if spec.smallDisk {
		env, smallDisk = append(env, diskFullEnv()...), smallDiskBytes
	}
	return env, smallDisk
}

// closeCluster stops the cluster and, unless asked to keep them, deletes
// the data of a run that passed without errors.
func closeCluster(c *control.Cluster, res *RunResult, dir string, keepData bool) {
	c.Close()
	if res.Valid && len(res.Errors) == 0 && !keepData {
		for _, a := range c.Agents {
			_ = os.RemoveAll(filepath.Dir(a.DataDir))
		}
		_ = os.RemoveAll(filepath.Join(dir, "minio", "data"))
	}
}

// runFaults is the middle of a run, under load: the DR drill, or a warm
// up, the nemesis schedule and a healthy tail. It returns the checker's
// options (a drill's allowed gaps and flushed offsets).
func runFaults(ctx context.Context, spec classSpec, r runSpec, c *control.Cluster, wl *workload.Workload, rec *history.Recorder, log *slog.Logger, res *RunResult) checker.Options {
	if spec.dr != "" {
		dr, opts, err := runDR(ctx, spec.dr, r, c, wl, rec, log)
		res.DR = dr
		if err != nil {
			res.Errors = append(res.Errors, "dr: "+err.Error())
		}
		return opts
	}
	// Warm up, then faults, then a healthy tail.
	time.Sleep(3 * time.Second)
	nctx, cancel := context.WithTimeout(ctx, r.duration)
	hold := [2]time.Duration{3 * time.Second, 10 * time.Second}
	if spec.hold[1] > 0 {
		hold = spec.hold
	}
	nem := nemesis.New(nemesis.Config{Kinds: spec.kinds, Mixed: spec.mixed, Seed: r.seed,
		Quiet: [2]time.Duration{2 * time.Second, 5 * time.Second}, Hold: hold,
		Topic: "jepsen", MinFreeDisk: smallDiskMinFree, Log: log, OnPaused: wl.SetPaused}, c, rec)
	nem.Run(nctx)
	cancel()
	res.Events = nem.Events
	res.Faults = len(nem.Events)
	for _, ev := range nem.Events {
		if ev.Err != "" {
			res.Errors = append(res.Errors, fmt.Sprintf("nemesis %s %v: %s", ev.Kind, ev.Targets, ev.Err))
		}
	}
	time.Sleep(5 * time.Second)
	return checker.Options{}
}

// check runs the checker on the run's history (the options are kept in
// the run's directory, for -check) and fills in the verdict and the
// availability figures.
func (r *RunResult) check(ops []history.Op, opts checker.Options, dir string) {
	writeJSON(filepath.Join(dir, "checker-options.json"), opts)
	r.setVerdict(checker.Check(ops, opts))
	r.Ops = len(ops)
	r.SendsOK, r.SendsFail, r.SendsInfo = r.Checker.Stats.SendsOK, r.Checker.Stats.SendsFail, r.Checker.Stats.SendsInfo
	r.Recoveries, r.Outages, r.MaxAckGap = recoveries(ops, r.Events)
	r.ProcTail = producerTail(ops)
}

// ProcTail is the producer process with the most sends invoked after the
// last of its sends that was acknowledged: a producer that stops being
// acknowledged for good (a wedged client) while the others go on, which
// the run's unavailability figures, counting every producer's
// acknowledgements, do not show. A healthy producer's last sends are
// acknowledged when the clients stop: its tail is empty.
type ProcTail struct {
	Process  int     `json:"process"`
	Sends    int     `json:"sends"`
	LastAckS float64 `json:"last_acked_send_seconds"` // its invocation; -1: never acknowledged
}

func producerTail(ops []history.Op) ProcTail {
	invoked := map[int64]int64{} // send invocation index -> time
	lastOK := map[int]int64{}    // process -> invocation time of its last acknowledged send
	for _, op := range ops {
		switch {
		case op.F != history.FSend:
		case op.Type == history.Invoke:
			invoked[op.Index] = op.Time
		case op.Type == history.OK:
			lastOK[op.Process] = max(lastOK[op.Process], invoked[op.Inv])
		}
	}
	tails := map[int]int{}
	for _, op := range ops {
		if op.F != history.FSend || op.Type != history.Invoke {
			continue
		}
		if t, ok := lastOK[op.Process]; !ok || op.Time > t {
			tails[op.Process]++
		}
	}
	out := ProcTail{Process: -1}
	for proc, n := range tails {
		if n > out.Sends || (n == out.Sends && proc < out.Process) {
			out = ProcTail{Process: proc, Sends: n, LastAckS: -1}
			if t, ok := lastOK[proc]; ok {
				out.LastAckS = time.Duration(t).Seconds()
			}
		}
	}
	return out
}

// setVerdict takes the checker's result, with a DR drill's losses and its
// resurrected topics.
func (r *RunResult) setVerdict(cr checker.Result) {
	r.Checker, r.Valid, r.Anomalies, r.Counts = cr, cr.Valid, cr.Total(), cr.Counts
	if r.DR != nil {
		r.DR.LostFlushed = cr.Counts[checker.LostWrite]
		r.DR.LostUnflushed = cr.Stats.LostUnflushed
		r.DR.RecoveredUnflushed = cr.Stats.Recovered
		r.DR.OffsetReuse = cr.Counts[checker.OffsetReuse]
		r.countResurrected()
	}
}

// writeJSON writes v, indented, to path (best effort: a report).
func writeJSON(path string, v any) {
	if b, err := json.MarshalIndent(v, "", "  "); err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
}

// recoveries: for each healed fault, seconds from the heal to the first
// acknowledged send completing after it; and the longest gap between
// consecutive acknowledgements.
func recoveries(ops []history.Op, events []nemesis.Event) ([]float64, []float64, float64) {
	var acks []int64
	for _, op := range ops {
		if op.F == history.FSend && op.Type == history.OK {
			acks = append(acks, op.Time)
		}
	}
	var out, outages []float64
	for _, ev := range events {
		i := sort.Search(len(acks), func(i int) bool { return acks[i] > int64(ev.Healed) })
		if i < len(acks) {
			out = append(out, time.Duration(acks[i]-int64(ev.Healed)).Seconds())
		}
		end := int64(ev.Healed + 10*time.Second)
		prev := int64(ev.Start)
		var worst int64
		for j := sort.Search(len(acks), func(j int) bool { return acks[j] > int64(ev.Start) }); j < len(acks) && prev < end; j++ {
			worst = max(worst, min(acks[j], end)-prev)
			prev = acks[j]
		}
		outages = append(outages, time.Duration(worst).Seconds())
	}
	var gap int64
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i]-acks[i-1])
	}
	return out, outages, time.Duration(gap).Seconds()
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

type classRow struct {
	Class        string         `json:"class"`
	Runs         int            `json:"runs"`
	Ops          int            `json:"operations"`
	Acked        int            `json:"acked_sends"`
	Faults       int            `json:"faults"`
	Anomalies    int            `json:"anomalies"`
	Errors       int            `json:"runs_with_errors"`
	RecP50       float64        `json:"unavailability_p50_seconds"`
	RecMax       float64        `json:"unavailability_max_seconds"`
	HealToAckMax float64        `json:"heal_to_ack_max_seconds"`
	MaxAckGap    float64        `json:"max_ack_gap_seconds"`
	RestoreMax   float64        `json:"restore_max_seconds,omitempty"`
	Kinds        map[string]int `json:"anomaly_kinds,omitempty"`
}

// writeResults writes results.json and summary.md for the whole matrix and
// returns the summary table.
func writeResults(out string, o options, results []RunResult, elapsed time.Duration) string {
	var b strings.Builder
	list := classTable(&b, classStatsOf(results))
	drTable(&b, results)
	summary := b.String()
	doc := struct {
		Profile string        `json:"profile,omitempty"`
		Class   string        `json:"class,omitempty"`
		Seed    uint64        `json:"first_seed"`
		Seeds   int           `json:"seeds"`
		Elapsed time.Duration `json:"elapsed_ns"`
		Classes []classRow    `json:"classes"`
		Runs    []RunResult   `json:"runs"`
	}{o.profile, o.class, o.seed, o.seeds, elapsed, list, results}
	writeJSON(filepath.Join(out, "results.json"), doc)
	_ = os.WriteFile(filepath.Join(out, "summary.md"), []byte(summary), 0o644)
	return summary
}

// classStats gathers the runs of one fault class.
type classStats struct {
	row       classRow
	outages   []float64 // per fault, and a drill's restore time
	healToAck []float64
}

// classStatsOf sums the runs per class, in the order the classes first
// appear.
func classStatsOf(results []RunResult) []*classStats {
	byClass := map[string]*classStats{}
	var order []*classStats
	for _, r := range results {
		label := classLabel(r.Class, r.Client)
		s := byClass[label]
		if s == nil {
			s = &classStats{row: classRow{Class: label}}
			byClass[label] = s
			order = append(order, s)
		}
		s.add(r)
	}
	return order
}

func (s *classStats) add(r RunResult) {
	row := &s.row
	row.Runs++
	row.Ops += r.Ops
	row.Acked += r.SendsOK
	row.Faults += r.Faults
	row.Anomalies += r.Anomalies
	for k, n := range r.Counts {
		if n > 0 {
			if row.Kinds == nil {
				row.Kinds = map[string]int{}
			}
			row.Kinds[k] += n
		}
	}
	if len(r.Errors) > 0 {
		row.Errors++
	}
	row.MaxAckGap = max(row.MaxAckGap, r.MaxAckGap)
	s.outages = append(s.outages, r.Outages...)
	s.healToAck = append(s.healToAck, r.Recoveries...)
	if r.DR != nil {
		s.outages = append(s.outages, r.DR.RestoreSeconds)
		row.RestoreMax = max(row.RestoreMax, r.DR.RestoreSeconds)
	}
}

// classTable writes the per-class table with a total line to b and
// returns the rows for results.json.
func classTable(b *strings.Builder, stats []*classStats) []classRow {
	fmt.Fprintf(b, "| fault class | runs | operations | acked sends | faults | anomalies | anomaly kinds | runs with errors | unavailability per fault p50 / max (s) | heal → ack max (s) | longest ack gap (s) |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	var list []classRow
	tot := classRow{Class: "**total**"}
	for _, s := range stats {
		row := &s.row
		row.RecP50, row.RecMax = quantile(s.outages, 0.5), quantile(s.outages, 1)
		row.HealToAckMax = quantile(s.healToAck, 1)
		list = append(list, *row)
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %d | %s | %d | %.1f / %.1f | %.1f | %.1f |\n", row.Class, row.Runs, row.Ops, row.Acked, row.Faults, row.Anomalies, kindsString(row.Kinds), row.Errors, row.RecP50, row.RecMax, row.HealToAckMax, row.MaxAckGap)
		tot.Runs += row.Runs
		tot.Ops += row.Ops
		tot.Acked += row.Acked
		tot.Faults += row.Faults
		tot.Anomalies += row.Anomalies
		tot.Errors += row.Errors
	}
	fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %d | | %d | | | |\n", tot.Class, tot.Runs, tot.Ops, tot.Acked, tot.Faults, tot.Anomalies, tot.Errors)
	return list
}

// drTable writes the DR drills' table to b, if there were drills.
func drTable(b *strings.Builder, results []RunResult) {
	var drs []string
	for _, r := range results {
		if r.DR != nil {
			drs = append(drs, fmt.Sprintf("| %s | %d | %s | %d | %d | %d | %d | %.1f |", classLabel(r.Class, r.Client), r.Seed, r.DR.RecoveryPoint, r.DR.LostFlushed, r.DR.LostUnflushed, r.DR.RecoveredUnflushed, r.DR.OffsetReuse, r.DR.RestoreSeconds))
		}
	}
	if len(drs) > 0 {
		fmt.Fprintf(b, "\n| DR drill | seed | recovery point | lost at/below flushed (must be 0) | lost above flushed | recovered above flushed | offset reuse (must be 0) | restore (s) |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
		b.WriteString(strings.Join(drs, "\n") + "\n")
	}
}

func kindsString(m map[string]int) string {
	var parts []string
	for _, k := range checker.AllKinds {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}
