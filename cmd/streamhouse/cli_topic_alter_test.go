package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport/client"
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

// TestTopicChangesInATwoAgentCluster: partitions added and configs changed
// through either agent (one of them forwards to the Raft leader) reach both
// agents' state; every new partition gets a leader and takes records.
func TestTopicChangesInATwoAgentCluster(t *testing.T) {
	dir := t.TempDir()
	gossip := []int{freePort(t), freePort(t)}
	var agents []*agent
	for i := range 2 {
		c := testConfig(t, filepath.Join(dir, strconv.Itoa(i)))
		c.NodeID, c.GossipPort, c.BootstrapExpect = "agent-"+strconv.Itoa(i), gossip[i], 2
		c.Join = "127.0.0.1:" + strconv.Itoa(gossip[1-i])
		a, err := startAgent(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close(context.Background())
		agents = append(agents, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var clients []*client.Client
	for _, a := range agents {
		cl := dialAgent(t, a.grpcAddr())
		defer cl.Close()
		clients = append(clients, cl)
	}
	waitFor(t, 60*time.Second, "the cluster creates a topic", func() bool {
		_, err := clients[0].CreateTopic(ctx, "two", 2, client.TopicConfig{})
		return err == nil
	})
	for i, count := range []int32{4, 6} {
		if _, _, err := clients[i].CreatePartitions(ctx, "two", count); err != nil {
			t.Fatalf("add partitions through agent %d: %v", i, err)
		}
	}
	if _, err := clients[1].AlterTopicConfig(ctx, "two", map[string]string{"retention.bytes": "1048576"}); err != nil {
		t.Fatalf("alter through agent 1: %v", err)
	}
	for i, a := range agents {
		waitFor(t, 30*time.Second, "agent "+strconv.Itoa(i)+" applies the changes", func() bool {
			tp, ok := a.fsm.Topic("two")
			if !ok || tp.Partitions != 6 || tp.Config.RetentionBytes != 1<<20 {
				return false
			}
			ps := a.fsm.Partitions(tp.ID)
			for _, p := range ps {
				if p.Leader != "agent-0" && p.Leader != "agent-1" {
					return false
				}
			}
			return len(ps) == 6
		})
	}
	p, err := clients[0].NewProducer(ctx, client.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	offs, err := p.Produce(ctx, "two", client.Record{Value: []byte("in-5")}.ToPartition(5))
	if err != nil || offs[0].Partition != 5 {
		t.Fatalf("produce to partition 5: %+v %v", offs, err)
	}
	res, err := clients[1].Fetch(ctx, client.FetchRequest{Topic: "two", Partition: 5, Offset: 0, MaxRecords: 10})
	if err != nil || len(res.Records) != 1 || string(res.Records[0].Value) != "in-5" {
		t.Fatalf("fetch partition 5 through agent 1: %+v %v", res, err)
	}
}

// TestConsumeFollowPicksUpAddedPartitions: `consume --follow --group` of
// every partition prints the records of a partition added while it runs
// (within the client's metadata refresh) and commits them for the group.
func TestConsumeFollowPicksUpAddedPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits for a metadata refresh; run without -short")
	}
	_, server := startClientAgent(t, nil)
	mustCLI(t, server, nil, "topic", "create", "follow", "-p", "1")
	var out testkit.SyncBuffer
	cmd := exec.Command(agentBinary(t), "consume", "follow", "-f", "-g", "fg", "-o", "json")
	cmd.Env = append(os.Environ(), "STREAMHOUSE_GRPC="+server)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	mustCLI(t, server, nil, "produce", "follow", "-P", "0", "first")
	waitFor(t, 20*time.Second, "the follower prints the first record", func() bool { return strings.Contains(out.String(), `"first"`) })
	mustCLI(t, server, nil, "topic", "add-partitions", "follow", "--count", "2")
	mustCLI(t, server, nil, "produce", "follow", "-P", "1", "in-added")
	waitFor(t, 60*time.Second, "the follower prints the added partition's record", func() bool {
		return strings.Contains(out.String(), `"in-added"`)
	})
	waitFor(t, 20*time.Second, "the group commits the added partition", func() bool {
		for _, p := range describeGroupCLI(t, server, "fg").Partitions {
			if p.Partition == 1 && p.Offset == 1 {
				return true
			}
		}
		return false
	})
}
