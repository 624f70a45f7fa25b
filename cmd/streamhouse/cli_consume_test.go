package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
)

// tsBase is the first timestamp of the flushed records of the timestamp
// tests (2023-11-14T22:13:20Z); record i of them is tsBase + 10*i.
const tsBase int64 = 1_700_000_000_000

// The offset for a timestamp, through the client (gRPC ListOffsets), REST
// and consume --from, over flushed and unflushed records.
func TestOffsetForTimestampAgainstAgent(t *testing.T) {
	agentBinary(t)
	a, server := startClientAgent(t, func(c *agentCmd) { c.SegmentMaxBytes = 64 << 10; c.SegmentMaxAgeMs = 3600000 })
	base := "http://" + a.http.Addr()
	c := dialAgent(t, server)
	fillTimestamped(t, c)
	ctx := ctxFor(t)
	for _, tc := range []struct {
		ts   int64
		want int64
	}{
		{0, 0},
		{tsBase, 0},
		{tsBase + 15, 2},
		{tsBase + 990, 99},
		{tsBase + 991, 100}, // past the flushed records: the store answers
		{time.Now().Add(-150 * time.Minute).UnixMilli(), 101},
		{time.Now().Add(time.Hour).UnixMilli(), 103}, // nothing that recent: the high watermark
	} {
		offs, err := c.ListOffsets(ctx, "ts", tc.ts, 0)
		if err != nil || len(offs) != 1 || offs[0].Offset != tc.want || offs[0].HighWatermark != 103 || offs[0].LowWatermark != 0 {
			t.Errorf("ListOffsets at %d: %+v %v, want offset %d", tc.ts, offs, err, tc.want)
		}
		var body transport.OffsetsResponse
		if code := call(t, "GET", fmt.Sprintf("%s/api/v1/topics/ts/partitions/0/offsets?timestamp=%d", base, tc.ts), nil, &body); code != 200 ||
			body.Offset != tc.want || body.HighWatermark != 103 || body.Timestamp == nil || *body.Timestamp != tc.ts {
			t.Errorf("REST offsets at %d: %d %+v, want offset %d", tc.ts, code, body, tc.want)
		}
	}
	// Every partition; earliest and latest.
	if offs, err := c.ListOffsets(ctx, "ts", tsBase+15); err != nil || len(offs) != 2 || offs[0].Offset != 2 || offs[1].Partition != 1 || offs[1].Offset != 0 {
		t.Errorf("ListOffsets of every partition: %+v %v", offs, err)
	}
	if offs, err := c.ListOffsets(ctx, "ts", client.TimestampLatest, 0); err != nil || offs[0].Offset != 103 {
		t.Errorf("latest: %+v %v", offs, err)
	}
	if offs, err := c.ListOffsets(ctx, "ts", client.TimestampEarliest, 0); err != nil || offs[0].Offset != 0 {
		t.Errorf("earliest: %+v %v", offs, err)
	}
	var body transport.OffsetsResponse
	if code := call(t, "GET", base+"/api/v1/topics/ts/partitions/0/offsets?timestamp=latest", nil, &body); code != 200 || body.Offset != 103 || body.Timestamp != nil {
		t.Errorf("REST latest: %d %+v", code, body)
	}
	// Bad requests.
	_, err := c.ListOffsets(ctx, "missing", 0)
	wantCode(t, "unknown topic", err, codes.NotFound, "")
	_, err = c.ListOffsets(ctx, "ts", 0, 7)
	wantCode(t, "unknown partition", err, codes.NotFound, "")
	_, err = c.ListOffsets(ctx, "ts", -3)
	wantCode(t, "timestamp -3", err, codes.InvalidArgument, "")
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/v1/topics/ts/partitions/0/offsets", 400},
		{"/api/v1/topics/ts/partitions/0/offsets?timestamp=abc", 400},
		{"/api/v1/topics/ts/partitions/0/offsets?timestamp=-5", 400},
		{"/api/v1/topics/ts/partitions/0/offsets?timestamp=0&ofset=2", 400},
		{"/api/v1/topics/ts/partitions/x/offsets?timestamp=0", 400},
		{"/api/v1/topics/ts/partitions/9/offsets?timestamp=0", 404},
		{"/api/v1/topics/missing/partitions/0/offsets?timestamp=0", 404},
	} {
		var e apiError
		if code := call(t, "GET", base+tc.path, nil, &e); code != tc.code || e.Error.Message == "" {
			t.Errorf("GET %s: %d %+v, want %d with a message", tc.path, code, e, tc.code)
		}
	}

	// consume --from: an RFC 3339 time, @ms, durations ago (with and
	// without "=").
	rfc := time.UnixMilli(tsBase + 990).UTC().Format(time.RFC3339Nano)
	for _, tc := range []struct {
		from  []string
		first int64
		n     int
	}{
		{[]string{"--from", rfc}, 99, 4},
		{[]string{"--from", "@" + strconv.FormatInt(tsBase+15, 10)}, 2, 101},
		{[]string{"--from=-1h"}, 102, 1},
		{[]string{"--from", "-150m"}, 101, 2},
	} {
		recs := consumeCLI(t, server, append([]string{"ts", "-P", "0", "-o", "json"}, tc.from...)...)
		if len(recs) != tc.n || recs[0].Offset != tc.first || recs[len(recs)-1].Offset != 102 {
			t.Errorf("consume %v: %d records from %v, want %d from offset %d", tc.from, len(recs), recs[0].Offset, tc.n, tc.first)
		}
	}
}

// fillTimestamped fills partition 0 of a new topic "ts" (2 partitions)
// with 100 records of 1 KiB stamped tsBase + 10*i, waits until they are
// flushed (the agent rolls segments at 64 KiB, never on age), then adds
// three small unflushed ones stamped now-3h, now-2h and now (by the agent).
func fillTimestamped(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := ctxFor(t)
	if _, err := c.CreateTopic(ctx, "ts", 2, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{})
	var recs []client.Record
	for i := range 100 {
		recs = append(recs, client.Record{Value: []byte(strings.Repeat("x", 1024)), Timestamp: tsBase + 10*int64(i)}.ToPartition(0))
	}
	if _, err := p.Produce(ctx, "ts", recs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first 100 records flushed", func() bool {
		_, ps, err := c.DescribeTopic(ctx, "ts")
		return err == nil && ps[0].FlushedOffset == 100
	})
	now := time.Now()
	if _, err := p.Produce(ctx, "ts",
		client.Record{Value: []byte("3h"), Timestamp: now.Add(-3 * time.Hour).UnixMilli()}.ToPartition(0),
		client.Record{Value: []byte("2h"), Timestamp: now.Add(-2 * time.Hour).UnixMilli()}.ToPartition(0),
		client.Record{Value: []byte("now")}.ToPartition(0),
	); err != nil {
		t.Fatal(err)
	}
	if _, ps, err := c.DescribeTopic(ctx, "ts"); err != nil || ps[0].FlushedOffset != 100 || ps[0].HighWatermark != 103 {
		t.Fatalf("want 100 flushed and 3 unflushed records: %+v %v", ps, err)
	}
}

// TestCLIConsumeOutputAndExitCodes runs consume against an agent: the
// table stays aligned over several fetched batches of two partitions,
// --format prints exactly the template, the past-the-end rule holds with
// and without --follow, and every command exits 2 for a bad command line
// and 1 for a runtime error.
func TestCLIConsumeOutputAndExitCodes(t *testing.T) {
	agentBinary(t)
	_, server := startClientAgent(t, nil)
	c := dialAgent(t, server)
	ctx := ctxFor(t)
	if _, err := c.CreateTopic(ctx, "tbl", 2, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{})
	var recs []client.Record
	for i := range 2500 { // three fetches of at most 1000 records
		r := client.Record{Key: []byte(strings.Repeat("k", i%40)), Value: []byte(fmt.Sprintf("v%d", i)), Timestamp: tsBase + int64(i)}
		if i%7 == 0 {
			r.Headers = []client.Header{{Key: "n", Value: []byte(strconv.Itoa(i))}}
		}
		recs = append(recs, r.ToPartition(0))
	}
	for i := range 5 {
		recs = append(recs, client.Record{Key: []byte{byte('a' + i)}, Value: []byte(fmt.Sprintf("p1-%d", i)), Timestamp: tsBase + int64(i),
			Headers: []client.Header{{Key: "h", Value: []byte("x")}, {Key: "i", Value: []byte(strconv.Itoa(i))}}}.ToPartition(1))
	}
	if _, err := p.Produce(ctx, "tbl", recs...); err != nil {
		t.Fatal(err)
	}

	table := mustCLI(t, server, nil, "consume", "tbl", "-P", "0", "-P", "1")
	checkAligned(t, table)
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 2506 || !strings.Contains(lines[0], "HEADERS") {
		t.Fatalf("table: %d lines, header %q", len(lines), lines[0])
	}
	format := mustCLI(t, server, nil, "consume", "tbl", "-P", "1", "--format", `%p %o %k %v %h %T %d\n`)
	var want strings.Builder
	for i := range 5 {
		fmt.Fprintf(&want, "1 %d %c p1-%d h=x,i=%d %d %s\n", i, 'a'+i, i, i, tsBase+int64(i),
			time.UnixMilli(tsBase+int64(i)).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	if format != want.String() {
		t.Fatalf("--format printed:\n%s\nwant:\n%s", format, want.String())
	}

	// Past the end: an offset beyond the high watermark (5) is out of
	// range with or without --follow; at it, nothing is printed (exit 0)
	// or, with --follow, the next record is awaited.
	for _, follow := range []bool{false, true} {
		args := []string{"consume", "tbl", "-P", "1", "--from", "6"}
		if follow {
			args = append(args, "--follow")
		}
		out, errOut, code := runCLI(t, server, nil, args...)
		if code != 1 || !strings.Contains(errOut, "out of range") || !strings.Contains(errOut, "0 (low watermark) through 5 (high watermark") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and the valid range", args, code, out, errOut)
		}
	}
	if out, errOut, code := runCLI(t, server, nil, "consume", "tbl", "-P", "1", "--from", "5"); code != 0 || out != "" {
		t.Errorf("--from the high watermark: exit %d, stdout %q, stderr %q; want 0 and nothing", code, out, errOut)
	}
	followFromEnd(t, server, p)

	exitCodeTable(t, server)
}

// followFromEnd starts consume --follow at partition 1's high watermark
// (5), produces one record, sees it printed, and interrupts: exit 0.
func followFromEnd(t *testing.T, server string, p *client.Producer) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), "consume", "tbl", "-P", "1", "--from", "5", "--follow", "--format", `%o %v\n`)
	cmd.Env = append(os.Environ(), "STREAMHOUSE_GRPC="+server)
	var out, errOut testkit.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	if _, err := p.Produce(ctxFor(t), "tbl", client.Record{Value: []byte("late")}.ToPartition(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the new record printed by --follow", func() bool { return out.String() == "5 late\n" })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("--follow after Ctrl-C: %v (stderr %q)", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("--follow did not exit after SIGINT")
	}
}

// exitCodeTable: each command line's exit code and a piece of its stderr.
func exitCodeTable(t *testing.T, server string) {
	t.Helper()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		// Bad command lines: 2.
		{[]string{"consume", "tbl", "--from", "abc"}, 2, "--from \"abc\": want earliest"},
		{[]string{"consume", "tbl", "--from=-1x"}, 2, "--from"},
		{[]string{"consume", "tbl", "--format", "%x"}, 2, "unknown verb %x"},
		{[]string{"consume", "tbl", "--format", "%v", "-o", "json"}, 2, "cannot be used together"},
		{[]string{"consume", "tbl", "-o", "yaml"}, 2, "--output"},
		{[]string{"consume", "tbl", "--max=-1"}, 2, "--max"},
		{[]string{"consume", "tbl", "-P", "x"}, 2, "--partition"},
		{[]string{"consume"}, 2, "<topic>"},
		{[]string{"produce", "tbl", "x", "-H", "novalue"}, 2, "--header \"novalue\": want key=value"},
		{[]string{"produce", "tbl", "x", "--key", "k", "--key-separator", ":"}, 2, "cannot be used together"},
		{[]string{"produce", "tbl", "x", "-P", "abc"}, 2, "--partition"},
		{[]string{"topic", "create", "x", "-p", "abc"}, 2, "--partitions"},
		{[]string{"topic", "create", "x", "--compression", "gzip"}, 2, "--compression"},
		{[]string{"group", "reset", "g", "--topic", "tbl", "--to", "offset"}, 2, "needs --offset"},
		{[]string{"group", "reset", "g", "--topic", "tbl", "--to", "timestamp", "--timestamp", "soon"}, 2, "--timestamp"},
		{[]string{"no-such-command"}, 2, "unexpected argument"},
		{[]string{"apikey", "create", "--name", "bad name"}, 2, "name"},
		// Runtime errors: 1.
		{[]string{"consume", "missing"}, 1, "not found"},
		{[]string{"consume", "tbl", "-P", "7"}, 1, "does not exist"},
		{[]string{"consume", "tbl", "-P", "1", "--from", "99"}, 1, "out of range"},
		{[]string{"produce", "missing", "x"}, 1, "not found"},
		{[]string{"produce", "tbl", "x", "-P", "9"}, 1, "partition 9 does not exist"},
		{[]string{"topic", "describe", "missing"}, 1, "not found"},
		{[]string{"topic", "create", "tbl"}, 1, "already exists"},
		{[]string{"group", "describe", "missing"}, 1, "not found"},
		{[]string{"topic", "list", "--server", "127.0.0.1:1", "--timeout", "2s"}, 1, "cannot reach"},
		// Success.
		{[]string{"topic", "list"}, 0, ""},
		{[]string{"consume", "tbl", "-P", "1", "--max", "1"}, 0, "consumed 1 record(s)"},
	} {
		_, errOut, code := runCLI(t, server, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("streamhouse %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.stderr)
		}
	}
}
