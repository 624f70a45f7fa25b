package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTopicAlterAndAddPartitions drives `topic alter` and `topic
// add-partitions` against a real agent: the altered configs are what the
// agent then enforces (max.message.bytes on produce, retention.ms in the
// janitor), a new partition takes records that a plain consumer and a
// consumer group read, and bad input exits 2 (command line) or 1 (agent).
func TestTopicAlterAndAddPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; run without -short")
	}
	agentBinary(t)
	_, server := startClientAgent(t, func(c *agentCmd) { c.RetentionCheckMs = 100 })
	mustCLI(t, server, nil, "topic", "create", "alt", "-p", "2")

	var tj topicJSON
	out := mustCLI(t, server, nil, "topic", "alter", "alt", "--retention", "1h", "--set", "compression.type=lz4", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tj); err != nil {
		t.Fatalf("alter -o json: %v\n%s", err, out)
	}
	if tj.Configs["retention.ms"] != "3600000" || tj.Configs["compression.type"] != "lz4" || tj.RetentionMs != 3600000 ||
		!slices.Contains(tj.Defaults, "cleanup.policy") || slices.Contains(tj.Defaults, "retention.ms") {
		t.Fatalf("after alter: %+v", tj)
	}
	for _, bad := range [][]string{
		{"topic", "alter", "alt", "--set", "cleanup.policy=compact"},
		{"topic", "alter", "alt", "--set", "retention.ms"},
		{"topic", "alter", "alt"},
		{"topic", "add-partitions", "alt"},
	} {
		if _, errOut, code := runCLI(t, server, nil, bad...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d (%q), want 2 with a message", bad, code, errOut)
		}
	}

	// max.message.bytes is enforced by the agent from the next produce on.
	mustCLI(t, server, nil, "topic", "alter", "alt", "--max-message-bytes", "50")
	if _, errOut, code := runCLI(t, server, nil, "produce", "alt", "-P", "0", strings.Repeat("x", 80)); code != 1 || !strings.Contains(errOut, "max.message.bytes") {
		t.Fatalf("an 80-byte record under max.message.bytes=50: exit %d, %q", code, errOut)
	}

	// Add partitions: the new ones have leaders, take records and are read.
	var detail topicDetail
	out = mustCLI(t, server, nil, "topic", "add-partitions", "alt", "--count", "4", "-o", "json")
	if err := json.Unmarshal([]byte(out), &detail); err != nil {
		t.Fatalf("add-partitions -o json: %v\n%s", err, out)
	}
	if detail.Topic.Partitions != 4 || len(detail.Partitions) != 4 || detail.Partitions[3].Leader == "" {
		t.Fatalf("after add-partitions: %+v", detail)
	}
	if _, errOut, code := runCLI(t, server, nil, "topic", "add-partitions", "alt", "--count", "3"); code != 1 || !strings.Contains(errOut, "only be raised") {
		t.Fatalf("lowering the count: exit %d, %q", code, errOut)
	}
	mustCLI(t, server, nil, "produce", "alt", "-P", "3", "in-new-partition")
	if recs := consumeCLI(t, server, "alt", "-P", "3", "-o", "json"); len(recs) != 1 || recs[0].Value != "in-new-partition" {
		t.Fatalf("partition 3 holds %+v", recs)
	}
	if recs := consumeCLI(t, server, "alt", "-g", "g-new", "-o", "json"); len(recs) != 1 || recs[0].Partition != 3 {
		t.Fatalf("a group over the whole topic read %+v", recs)
	}
	if out := mustCLI(t, server, nil, "topic", "add-partitions", "alt", "--add", "1"); !strings.Contains(out, "now has 5 partitions") {
		t.Fatalf("add-partitions --add 1 printed %q", out)
	}
	desc := mustCLI(t, server, nil, "topic", "describe", "alt")
	if !strings.Contains(desc, "CONFIG") || !strings.Contains(desc, "max.message.bytes  50") {
		t.Fatalf("describe does not show the configs:\n%s", desc)
	}

	// Retention: once the record is flushed, retention.ms=1 expires it.
	c := dialAgent(t, server)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(t, 20*time.Second, "partition 3 flushed", func() bool {
		_, ps, err := c.DescribeTopic(ctx, "alt")
		return err == nil && ps[3].FlushedOffset == 1
	})
	mustCLI(t, server, nil, "topic", "alter", "alt", "--retention", "1ms")
	waitFor(t, 20*time.Second, "retention trims partition 3", func() bool {
		_, ps, err := c.DescribeTopic(ctx, "alt")
		return err == nil && ps[3].LowWatermark == 1
	})
}
