package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport"
)

// TestRestartAfterOrphanGraceKeepsCommittedSegments is issue item 2 as it
// was reproduced: one agent with the local object store produces, is
// killed, and starts again "two hours later" (its clock shifted by the
// test hook, ORPHAN_GRACE_MS 1 s). The janitor must collect a real orphan
// (an expired upload) and nothing committed: every record stays readable.
func TestRestartAfterOrphanGraceKeepsCommittedSegments(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	dir := t.TempDir()
	clockFile := filepath.Join(dir, "clock-offset")
	a := newSoloAgent(t, "gc-1", dir, "SEGMENT_MAX_AGE_MS=50", "LOG_LEVEL=info",
		"ORPHAN_GRACE_MS=1000", "RETENTION_CHECK_MS=50", testClockOffsetEnv+"="+clockFile)
	p := a.start(t)
	defer func() { p.kill(t) }()
	createTopic(t, p.base, "gc", 2)
	const batches, per = 40, 25
	for i := range batches {
		recs := make([]map[string]any, per)
		for j := range recs {
			recs[j] = map[string]any{"partition": (i + j) % 2, "value": fmt.Sprintf("v%d-%d", i, j)}
		}
		if code := call(t, "POST", p.base+"/api/v1/produce/batch", map[string]any{"topic": "gc", "records": recs}, nil); code != 200 {
			t.Fatalf("produce: %d", code)
		}
	}
	waitFor(t, 30*time.Second, "every record flushed into committed segments", func() bool {
		var pr transport.PartitionsResponse
		if code, err := tryCall("GET", p.base+"/api/v1/topics/gc/partitions", nil, &pr); err != nil || code != 200 {
			return false
		}
		total := int64(0)
		for _, x := range pr.Partitions {
			if x.FlushedOffset != x.HighWatermark {
				return false
			}
			total += x.FlushedOffset
		}
		return total == batches*per
	})
	p.kill(t)

	// Two hours later, with an expired upload left in the store.
	if err := os.WriteFile(clockFile, []byte("2h"), 0o644); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, "objects", "segments", "2020", "01", "01", "gc_1-1-0000000000000000-cb1.seg")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("never committed"), 0o644); err != nil {
		t.Fatal(err)
	}
	p = a.start(t)
	waitFor(t, 30*time.Second, "the janitor collected the expired upload", func() bool {
		_, err := os.Stat(orphan)
		return os.IsNotExist(err)
	})
	n := 0
	for part := int32(0); part < 2; part++ {
		for i, r := range consumeAll(t, p.base, "gc", part) {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: offset %d at position %d", part, r.Offset, i)
			}
			n++
		}
	}
	if n != batches*per {
		t.Fatalf("read %d records after the restart, want %d", n, batches*per)
	}
}
