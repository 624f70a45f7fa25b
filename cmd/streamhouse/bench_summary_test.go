package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

func TestBenchRecordAndSummarize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	b := &benchCmd{RecordFile: path, Label: "single agent, gRPC", Protocol: "grpc"}
	if err := b.record(loadgen.Result{Protocol: "grpc", Partitions: 8, RecordsPerSec: 421390, AckP50Ms: 16.5, AckP99Ms: 57.3}); err != nil {
		t.Fatal(err)
	}
	b.Label = "3 agents, fixed rate"
	if err := b.record(loadgen.Result{Protocol: "rest", Partitions: 64, TargetRate: 30000, RecordsPerSec: 29969, Errors: 2}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := summarizeBench(&out, path); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "single agent, gRPC") || !strings.Contains(lines[1], "421390") ||
		!strings.Contains(lines[1], "16.5 / 57.3") || !strings.Contains(lines[2], "30000") {
		t.Fatalf("summary:\n%s", out.String())
	}
	if err := summarizeBench(&out, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("summarizing a missing file succeeded")
	}
}
