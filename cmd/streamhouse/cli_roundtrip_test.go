package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// runCLI runs the streamhouse binary against the agent's gRPC address and
// returns stdout, stderr and the exit code.
func runCLI(t *testing.T, server string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return runBinary(t, append(os.Environ(), "STREAMHOUSE_GRPC="+server), stdin, args...)
}

// mustCLI runs the binary and fails the test unless it exits 0.
func mustCLI(t *testing.T, server string, stdin io.Reader, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, server, stdin, args...)
	if code != 0 {
		t.Fatalf("streamhouse %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func describeGroupCLI(t *testing.T, server, group string) groupBody {
	t.Helper()
	var g groupBody
	if err := json.Unmarshal([]byte(mustCLI(t, server, nil, "group", "describe", group, "-o", "json")), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func consumeCLI(t *testing.T, server string, args ...string) []recordJSON {
	t.Helper()
	out := mustCLI(t, server, nil, append([]string{"consume"}, args...)...)
	var recs []recordJSON
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recordJSON
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume output line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestCLIRoundTrip drives the CLI binary against an in-process agent:
// 100,000 keyed stdin lines through `produce`, back through `consume` as a
// group, lag through `group describe`, and the other commands.
func TestCLIRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and moves 100,000 records; run without -short")
	}
	agentBinary(t) // build first, outside the timings below
	_, server := startClientAgent(t, nil)

	out := mustCLI(t, server, nil, "topic", "create", "rt", "--partitions", "4")
	if !strings.Contains(out, "created topic rt (4 partitions") {
		t.Fatalf("topic create printed %q", out)
	}

	// 100,000 lines "k<i%1000> v<i>": keys repeat, so per-key order is
	// checked below.
	const n = 100000
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "k%d v%d\n", i%1000, i)
	}
	start := time.Now()
	out, errOut, code := runCLI(t, server, &in, "produce", "rt", "--key-separator", " ", "--progress", "-o", "json")
	if code != 0 {
		t.Fatalf("produce: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("produce of %d lines: %v", n, time.Since(start))
	var sum produceSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("produce summary %q: %v", out, err)
	}
	if sum.Records != n || sum.Failed != 0 || len(sum.Partitions) != 4 || sum.ProducerID == 0 {
		t.Fatalf("produce summary: %+v", sum)
	}
	if !strings.Contains(errOut, "producing to rt") {
		t.Fatalf("--progress drew no progress bar on stderr: %q", errOut)
	}

	start = time.Now()
	recs := consumeCLI(t, server, "rt", "--group", "g1", "--output", "json")
	t.Logf("consume of %d records: %v", len(recs), time.Since(start))
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	seen := make([]bool, n)
	lastOffset := map[int32]int64{}
	lastValueOfKey := map[string]int{}
	for _, r := range recs {
		if r.Key == nil || r.Topic != "rt" {
			t.Fatalf("record %+v", r)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(r.Value, "v"))
		if err != nil || *r.Key != fmt.Sprintf("k%d", i%1000) {
			t.Fatalf("record key %q value %q: the key separator split it wrong", *r.Key, r.Value)
		}
		if seen[i] {
			t.Fatalf("value %d consumed twice", i)
		}
		seen[i] = true
		if want := fsm.KeyPartition([]byte(*r.Key), 4); r.Partition != want {
			t.Fatalf("key %s on partition %d, the agent's partitioner says %d", *r.Key, r.Partition, want)
		}
		if last, ok := lastOffset[r.Partition]; ok && r.Offset <= last {
			t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, last)
		}
		lastOffset[r.Partition] = r.Offset
		if last, ok := lastValueOfKey[*r.Key]; ok && i <= last {
			t.Fatalf("key %s: value %d after %d (out of order)", *r.Key, i, last)
		}
		lastValueOfKey[*r.Key] = i
	}

	g := describeGroupCLI(t, server, "g1")
	if g.TotalLag != 0 || len(g.Partitions) != 4 {
		t.Fatalf("group after consuming everything: %+v", g)
	}
	for _, p := range g.Partitions {
		if p.Offset != p.HighWatermark || p.Lag != 0 {
			t.Fatalf("partition %d: offset %d high watermark %d", p.Partition, p.Offset, p.HighWatermark)
		}
	}

	var more bytes.Buffer
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&more, "late-%d\n", i)
	}
	mustCLI(t, server, &more, "produce", "rt")
	if g := describeGroupCLI(t, server, "g1"); g.TotalLag != 10 {
		t.Fatalf("lag after 10 more records: %d, want 10", g.TotalLag)
	}
	// The group resumes where it stopped: exactly the 10 new records.
	late := consumeCLI(t, server, "rt", "-g", "g1", "-o", "json")
	if len(late) != 10 {
		t.Fatalf("resumed group read %d records, want the 10 new ones", len(late))
	}
	for _, r := range late {
		if !strings.HasPrefix(r.Value, "late-") || r.Key != nil {
			t.Fatalf("resumed group read %+v", r)
		}
	}
	if g := describeGroupCLI(t, server, "g1"); g.TotalLag != 0 {
		t.Fatalf("lag after resuming: %d", g.TotalLag)
	}

	// Values from arguments, a fixed key, explicit partition, headers; --max.
	out = mustCLI(t, server, nil, "produce", "rt", "a", "b", "--key", "K", "--partition", "3", "-H", "h1=x=y", "-H", "h2=z")
	if !strings.Contains(out, "produced 2 records to rt") {
		t.Fatalf("produce summary %q", out)
	}
	last := consumeCLI(t, server, "rt", "-P", "3", "--from", strconv.FormatInt(lastOffset[3]+1, 10), "-o", "json")
	var fromArgs []recordJSON
	for _, r := range last {
		if r.Value == "a" || r.Value == "b" {
			fromArgs = append(fromArgs, r)
		}
	}
	if len(fromArgs) != 2 || *fromArgs[0].Key != "K" || fromArgs[0].Partition != 3 || len(fromArgs[0].Headers) != 2 ||
		fromArgs[0].Headers[0].Value != "x=y" || fromArgs[1].Value != "b" {
		t.Fatalf("records from arguments: %+v", fromArgs)
	}
	if got := consumeCLI(t, server, "rt", "--max", "7", "-o", "json"); len(got) != 7 {
		t.Fatalf("--max 7 printed %d records", len(got))
	}
	// At the high watermark without --follow: nothing to print, not even
	// the table's header.
	if table := mustCLI(t, server, nil, "consume", "rt", "-P", "3", "--from", "latest"); table != "" {
		t.Fatalf("table output %q", table)
	}
	if table := mustCLI(t, server, nil, "consume", "rt", "-P", "3", "--max", "1"); !strings.HasPrefix(table, "PARTITION") {
		t.Fatalf("table output %q", table)
	}

	// Listing, reset, delete.
	var topics []topicJSON
	if err := json.Unmarshal([]byte(mustCLI(t, server, nil, "topic", "list", "-o", "json")), &topics); err != nil || len(topics) != 1 || topics[0].Partitions != 4 {
		t.Fatalf("topic list: %+v %v", topics, err)
	}
	if out := mustCLI(t, server, nil, "topic", "describe", "rt"); !strings.Contains(out, "PARTITION") || !strings.Contains(out, "agent-1") {
		t.Fatalf("topic describe: %q", out)
	}
	var groups []groupSummaryJSON
	if err := json.Unmarshal([]byte(mustCLI(t, server, nil, "group", "list", "-o", "json")), &groups); err != nil || len(groups) != 1 || groups[0].Group != "g1" {
		t.Fatalf("group list: %+v %v", groups, err)
	}
	var reset groupBody
	if err := json.Unmarshal([]byte(mustCLI(t, server, nil, "group", "reset", "g1", "--topic", "rt", "--to", "earliest", "-o", "json")), &reset); err != nil ||
		reset.TotalLag != n+10+2 {
		t.Fatalf("reset to earliest: %+v %v", reset, err)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, server, nil, "group", "reset", "g1", "--topic", "rt", "--to", "offset", "--offset", "5", "-P", "0", "-o", "json")), &reset); err != nil ||
		reset.Partitions[0].Offset != 5 {
		t.Fatalf("reset partition 0 to offset 5: %+v %v", reset, err)
	}
	mustCLI(t, server, nil, "group", "delete", "g1")

	// Bad input: a clear one-line error and a non-zero exit.
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"topic", "describe", "missing"}, "", "not found"},
		{[]string{"topic", "create", "rt", "--partitions", "2"}, "", "already exists"},
		{[]string{"topic", "create", "bad/name"}, "", "invalid argument"},
		{[]string{"consume", "missing"}, "", "not found"},
		{[]string{"produce", "missing", "x"}, "", "not found"},
		{[]string{"produce", "rt", "x", "--partition", "9"}, "", "partition 9 does not exist"},
		{[]string{"produce", "rt", "--key-separator", ":"}, "k:v\nno-separator\n", "no key separator"},
		{[]string{"group", "describe", "g1"}, "", "not found"},
		{[]string{"group", "reset", "g1", "--topic", "rt", "--to", "offset"}, "", "needs --offset"},
		{[]string{"consume", "rt", "--from", "soon"}, "", "--from"},
		{[]string{"topic", "list", "--server", "127.0.0.1:1", "--timeout", "2s"}, "", "cannot reach"},
	} {
		out, errOut, code := runCLI(t, server, strings.NewReader(tc.stdin), tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("streamhouse %s: exit %d, stderr %q (stdout %q); want a non-zero exit and one line with %q",
				strings.Join(tc.args, " "), code, errOut, out, tc.want)
		}
	}

	mustCLI(t, server, nil, "topic", "delete", "rt")
	if _, errOut, code := runCLI(t, server, nil, "topic", "describe", "rt"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("describe after delete: %d %q", code, errOut)
	}
}
