package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// recordAll appends results with b's flags changed by each step.
func recordAll(t *testing.T, path string, steps ...func(*benchCmd) loadgen.Result) {
	t.Helper()
	for _, step := range steps {
		b := &benchCmd{RecordFile: path, Protocol: "grpc"}
		if err := b.record(step(b)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBenchSummaryGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	point := func(rate int64, achieved, p50, p99, p999 float64) func(*benchCmd) loadgen.Result {
		return func(b *benchCmd) loadgen.Result {
			b.Label, b.Sweep = "1 topic / 100 partitions / 100 B, rate sweep", []int64{rate}
			return loadgen.Result{Protocol: "grpc", Partitions: 100, RecordSize: 100, Batch: 100, Concurrency: 64,
				TargetRate: rate, RecordsPerSec: achieved, AckP50Ms: p50, AckP99Ms: p99, AckP999Ms: p999, AckMaxMs: p999 * 1.5,
				AgentsPeakRSSMiB: []float64{201, 188, 190}}
		}
	}
	recordAll(t, path,
		func(b *benchCmd) loadgen.Result {
			b.Label = "1 topic / 16 partitions / 100 B, 50 per request"
			return loadgen.Result{Protocol: "grpc", Partitions: 16, Batch: 50, TargetRate: 20000, RecordsPerSec: 19998.7,
				AckP50Ms: 3.21, AckP99Ms: 9.87, AckP999Ms: 24.4, AckMaxMs: 31, E2EP50Ms: 4, E2EP99Ms: 12,
				S3PutsPerGiB: 210, AgentPeakRSSMiB: 201, AgentsPeakRSSMiB: []float64{201, 188, 190}}
		},
		func(b *benchCmd) loadgen.Result {
			b.Label = "single agent, REST, saturated"
			return loadgen.Result{Protocol: "rest", Partitions: 8, Batch: 1000, RecordsPerSec: 218615, AckP50Ms: 35.1,
				AckP99Ms: 80.8, AckP999Ms: 95, AckMaxMs: 120, ConsumeRecsSec: 458888, AgentPeakRSSMiB: 267, Errors: 2}
		},
		point(10000, 9999, 1.5, 6.2, 11), point(100000, 99870, 4.8, 21.3, 40.1), point(400000, 310000, 180, 950, 1400),
	)
	var out bytes.Buffer
	chart := filepath.Join(t.TempDir(), "curves.txt")
	if err := summarizeBench(&out, path, chart); err != nil {
		t.Fatal(err)
	}
	golden(t, "bench_summary.golden", out.Bytes())
	drawn, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bench_chart.golden", drawn)
	if err := summarizeBench(&out, filepath.Join(t.TempDir(), "missing"), ""); err == nil {
		t.Fatal("summarizing a missing file succeeded")
	}
}

func TestBenchCompareGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "compare.jsonl")
	row := func(system, label string, rate int64, achieved, p99 float64) func(*benchCmd) loadgen.Result {
		return func(b *benchCmd) loadgen.Result {
			b.Label = label
			return loadgen.Result{System: system, Protocol: "p", Batch: 100, TargetRate: rate, RecordsPerSec: achieved,
				AckP50Ms: p99 / 4, AckP99Ms: p99, AckP999Ms: p99 * 2, AckMaxMs: p99 * 3}
		}
	}
	const sat, fixed = "100 B, 100 per request, saturated", "100 B, 100 per request, fixed rate"
	recordAll(t, path,
		row("streamhouse", sat, 0, 320000, 40), row("streamhouse", fixed, 20000, 20000, 8),
		func(b *benchCmd) loadgen.Result { b.Label = "no system"; return loadgen.Result{RecordsPerSec: 1} },
		row("nats (sync 2 min)", sat, 0, 53000, 120), row("nats (sync 2 min)", fixed, 20000, 19990, 12),
		row("nats (sync always)", sat, 0, 1300, 2500),
	)
	var out bytes.Buffer
	if err := compareBench(&out, path); err != nil {
		t.Fatal(err)
	}
	golden(t, "bench_compare.golden", out.Bytes())
}

func TestBenchWritesTheNATSClusterConfigs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	b := &benchCmd{NATS: natsFlags{WriteConfig: dir, Nodes: 3, Port: 14222, SyncInterval: "always"}}
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	for i, port := range []string{"14222", "14223", "14224"} {
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if conf := string(data); !strings.Contains(conf, "listen: 127.0.0.1:"+port) || !strings.Contains(conf, `sync_interval: "always"`) ||
			!strings.Contains(conf, filepath.Join(dir, "data")) {
			t.Fatalf("n%d.conf:\n%s", i+1, conf)
		}
	}
	b.NATS.Nodes = 0
	if err := b.Run(); err == nil {
		t.Fatal("a cluster of no nodes was written")
	}
}

func TestBenchSweepNeedsADuration(t *testing.T) {
	b := &benchCmd{Batch: 1, Concurrency: 1, Partitions: 1, Sweep: []int64{1000}}
	if err := b.Run(); err == nil || !strings.Contains(err.Error(), "--sweep needs --duration") {
		t.Fatalf("err = %v", err)
	}
}

func TestBenchWarmupNeedsAFixedRate(t *testing.T) {
	for _, b := range []*benchCmd{
		{Batch: 1, Concurrency: 1, Partitions: 1, Warmup: time.Second},                        // saturated
		{Batch: 1, Concurrency: 1, Partitions: 1, Warmup: -time.Second, Rate: 1000},           // negative
		{Batch: 1, Concurrency: 1, Partitions: 1, Warmup: -time.Second, Sweep: []int64{1000}}, // negative
	} {
		if err := b.Run(); err == nil || !strings.Contains(err.Error(), "--warmup needs a fixed rate") {
			t.Fatalf("warm-up %v, rate %d, sweep %v: err = %v", b.Warmup, b.Rate, b.Sweep, err)
		}
	}
	for _, b := range []*benchCmd{
		{Batch: 1, Concurrency: 1, Partitions: 1, Warmup: time.Second, Rate: 1000, Produce: true, Consume: true}, // read-back on
		{Batch: 1, Concurrency: 1, Partitions: 1, Warmup: time.Second, Rate: 1000},                               // nothing produced
	} {
		if err := b.Run(); err == nil || !strings.Contains(err.Error(), "--warmup needs --no-consume") {
			t.Fatalf("produce %v, consume %v: err = %v", b.Produce, b.Consume, err)
		}
	}
}
