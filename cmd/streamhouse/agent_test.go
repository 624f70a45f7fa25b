package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// testConfig is an agent configuration on free loopback ports in a temp dir.
func testConfig(t testing.TB, dir string) *agentCmd {
	c := &agentCmd{
		HTTPPort: freePort(t), GRPCPort: freePort(t), PeerPort: freePort(t), GossipPort: freePort(t), DataDir: dir, NodeID: "agent-1",
		DeadAgentTimeout: 30 * time.Second, PartitionFailover: 3 * time.Second,
		BindAddr: "127.0.0.1", WALEnabled: true, WALSegmentBytes: 64 << 20, BatchSize: 1000, BatchTimeoutMs: 2,
		SegmentMaxBytes: 8 << 20, SegmentMaxAgeMs: 200, MaxRecordBytes: 1 << 20,
		MaxUnflushedBytes: 256 << 20, SegmentCacheSize: 16 << 20, LogLevel: "warn", LogFormat: "text",
		S3Region: "us-east-1", S3TimeoutMs: 2000, RetentionCheckMs: 30000, OrphanGraceMs: 3600000,
		CheckpointIntervalMs: 5000, RestoreOffsetGap: 1000000, GRPCMaxStreams: 1000, MaxUnflushedRecs: 1000000, RestoreReadRetryMs: 120000,
		KafkaPartitions: 1,
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func startTestAgent(t testing.TB, c *agentCmd) (*agent, string) {
	t.Helper()
	a, err := startAgent(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.http.Addr()
	waitFor(t, 20*time.Second, "agent ready", func() bool {
		code, err := tryCall("GET", base+"/ready", nil, nil)
		return err == nil && code == 200
	})
	return a, base
}

func TestAgentEndToEnd(t *testing.T) {
	c := testConfig(t, t.TempDir())
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	for _, p := range []string{"/health", "/live", "/ready"} {
		if code := call(t, "GET", base+p, nil, nil); code != 200 {
			t.Fatalf("%s = %d", p, code)
		}
	}
	createTopic(t, base, "orders", 3)
	// Explicit partition, keyed, null key vs empty key, headers.
	var r1, r2, r3 produceResp
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "orders", "partition": 2, "value": "explicit", "headers": map[string]string{"h": "v"}}, &r1)
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "orders", "key": "user-42", "value": "keyed"}, &r2)
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "orders", "key": "", "partition": 2, "value": "empty-key"}, &r3)
	if r1.Partition != 2 || r1.Offset != 0 || r3.Partition != 2 || r3.Offset != 1 {
		t.Fatalf("offsets: %+v %+v", r1, r3)
	}
	// Kafka's partitioner (pinned to Kafka's own test vectors in package
	// partition): murmur2("user-42") positive mod 3.
	if want := fsm.KeyPartition([]byte("user-42"), 3); r2.Partition != want {
		t.Fatalf("keyed record on partition %d, Kafka would pick %d", r2.Partition, want)
	}
	var br batchResp
	code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": "orders", "records": []map[string]any{
		{"partition": 2, "value": "b0"}, {"partition": 2, "value": "b1"}, {"partition": 2, "value": "b2"},
	}}, &br)
	if code != 200 || len(br.Offsets) != 3 || br.Offsets[0].Offset != 2 || br.Offsets[2].Offset != 4 {
		t.Fatalf("batch: %d %+v", code, br)
	}
	recs := consumeAll(t, base, "orders", 2)
	if len(recs) != 5 {
		t.Fatalf("consumed %d records: %+v", len(recs), recs)
	}
	if recs[0].Value != "explicit" || recs[0].Key != nil || recs[0].Headers["h"] != "v" {
		t.Fatalf("record 0 = %+v", recs[0])
	}
	if recs[1].Key == nil || *recs[1].Key != "" || recs[1].Value != "empty-key" {
		t.Fatalf("empty key not preserved: %+v", recs[1])
	}
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("offset %d at position %d", r.Offset, i)
		}
	}

	// Segments: wait for a flush, then a fresh read of flushed offsets comes
	// from the segment object.
	var parts transport.PartitionsResponse
	waitFor(t, 10*time.Second, "partition 2 flushed", func() bool {
		call(t, "GET", base+"/api/v1/topics/orders/partitions", nil, &parts)
		return parts.Partitions[2].FlushedOffset == 5
	})
	if got := consumeAll(t, base, "orders", 2); len(got) != 5 || got[3].Value != "b1" {
		t.Fatalf("after flush: %+v", got)
	}
	metrics := scrape(t, base)
	for _, m := range []string{
		"streamhouse_messages_produced_total 6", "streamhouse_segment_writes_total",
		"streamhouse_messages_consumed_total", "streamhouse_wal_entries", "streamhouse_active_connections",
		"streamhouse_s3_request_duration_seconds_bucket",
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	if v := metricValue(metrics, "streamhouse_segment_writes_total"); v < 1 {
		t.Errorf("segment writes = %v", v)
	}
	if v := metricValue(metrics, "streamhouse_messages_consumed_total"); v < 10 {
		t.Errorf("consumed = %v, want >= 10", v)
	}
}

func TestLongPollWakesOnProduce(t *testing.T) {
	a, base := startTestAgent(t, testConfig(t, t.TempDir()))
	defer a.Close(context.Background())
	call(t, "POST", base+"/api/v1/topics", map[string]any{"name": "lp", "partitions": 1}, nil)
	got := make(chan consumeResp, 1)
	go func() {
		var r consumeResp
		call(t, "GET", base+"/api/v1/consume?topic=lp&partition=0&offset=0&wait_ms=20000", nil, &r)
		got <- r
	}()
	// The poller is parked (no data yet); produce wakes it well before 20 s.
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "lp", "value": "wake"}, nil)
	select {
	case r := <-got:
		if len(r.Records) != 1 || r.Records[0].Value != "wake" {
			t.Fatalf("long poll returned %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long poll did not wake on produce")
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.MaxRecordBytes = 1000
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	call(t, "POST", base+"/api/v1/topics", map[string]any{"name": "t", "partitions": 2}, nil)
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "t", "partition": 0, "value": "x"}, nil)
	big := strings.Repeat("x", 2000)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed json", "POST", "/api/v1/topics", `{"name":`, 400, "bad_request"},
		{"bad topic name", "POST", "/api/v1/topics", map[string]any{"name": "a/b", "partitions": 1}, 400, "bad_request"},
		{"zero partitions", "POST", "/api/v1/topics", map[string]any{"name": "z", "partitions": 0}, 400, "bad_request"},
		{"too many partitions", "POST", "/api/v1/topics", map[string]any{"name": "z", "partitions": 100000}, 400, "bad_request"},
		{"duplicate topic", "POST", "/api/v1/topics", map[string]any{"name": "t", "partitions": 1}, 409, "topic_exists"},
		{"unknown topic get", "GET", "/api/v1/topics/nope", nil, 404, "not_found"},
		{"unknown topic delete", "DELETE", "/api/v1/topics/nope", nil, 404, "not_found"},
		{"produce unknown topic", "POST", "/api/v1/produce", map[string]any{"topic": "nope", "value": "x"}, 404, "not_found"},
		{"produce bad partition", "POST", "/api/v1/produce", map[string]any{"topic": "t", "partition": 9, "value": "x"}, 400, "bad_request"},
		{"produce oversize", "POST", "/api/v1/produce", map[string]any{"topic": "t", "value": big}, 413, "record_too_large"},
		{"produce bad base64", "POST", "/api/v1/produce", map[string]any{"topic": "t", "value": "!!", "value_encoding": "base64"}, 400, "bad_request"},
		{"produce malformed", "POST", "/api/v1/produce", `{"topic":"t","value":}`, 400, "bad_request"},
		{"batch empty", "POST", "/api/v1/produce/batch", map[string]any{"topic": "t", "records": []any{}}, 400, "bad_request"},
		{"consume negative offset", "GET", "/api/v1/consume?topic=t&partition=0&offset=-1", nil, 400, "bad_request"},
		{"consume past end", "GET", "/api/v1/consume?topic=t&partition=0&offset=5", nil, 416, "offset_out_of_range"},
		{"consume bad offset", "GET", "/api/v1/consume?topic=t&partition=0&offset=abc", nil, 400, "bad_request"},
		{"consume unknown topic", "GET", "/api/v1/consume?topic=nope&partition=0&offset=0", nil, 404, "not_found"},
		{"consume unknown partition", "GET", "/api/v1/consume?topic=t&partition=7&offset=0", nil, 404, "not_found"},
	}
	for _, tc := range cases {
		var e apiError
		status := call(t, tc.method, base+tc.path, tc.body, &e)
		if status != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s: got %d %q %q, want %d %q", tc.name, status, e.Error.Code, e.Error.Message, tc.status, tc.code)
		}
	}
	var e apiError
	call(t, "GET", base+"/api/v1/consume?topic=t&partition=0&offset=5", nil, &e)
	if !strings.Contains(e.Error.Message, "0") || !strings.Contains(e.Error.Message, "1") {
		t.Errorf("out-of-range message does not name the range: %q", e.Error.Message)
	}
	// The agent still serves after all of that.
	var r produceResp
	if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "t", "partition": 0, "value": "still-alive"}, &r); code != 200 || r.Offset != 1 {
		t.Fatalf("agent no longer serving: %d %+v", code, r)
	}
	if v := metricValue(scrape(t, base), `streamhouse_errors_total{kind="bad_request"}`); v < 5 {
		t.Errorf("errors_total{bad_request} = %v", v)
	}
}

func scrape(t testing.TB, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return sb.String()
}

// metricValue returns the value of the first sample line starting with name
// (name may include labels); -1 if absent.
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, name+" "), "%g", &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func TestSecondAgentOnSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	a, _ := startTestAgent(t, testConfig(t, dir))
	defer a.Close(context.Background())
	_, err := startAgent(context.Background(), testConfig(t, dir))
	if err == nil || !strings.Contains(err.Error(), "in use by another streamhouse agent") {
		t.Fatalf("second agent on the same DATA_DIR: %v", err)
	}
}

func TestInvalidConfigNamesTheVariable(t *testing.T) {
	cases := map[string][]string{
		"HTTP_PORT":                   {"HTTP_PORT=abc"},
		"BATCH_SIZE":                  {"BATCH_SIZE=0"},
		"WAL_ENABLED":                 {"WAL_ENABLED=maybe"},
		"LOG_LEVEL":                   {"LOG_LEVEL=loud"},
		"SEGMENT_MAX_AGE_MS":          {"SEGMENT_MAX_AGE_MS=-5"},
		"MAX_PARTITIONS":              {"MAX_PARTITIONS=-1"},
		"S3_ENDPOINT":                 {"S3_ENDPOINT=not a url", "S3_BUCKET=b"},
		"AWS_SECRET_ACCESS_KEY":       {"AWS_ACCESS_KEY_ID=x"},
		"GRPC_MAX_CONCURRENT_STREAMS": {"GRPC_MAX_CONCURRENT_STREAMS=0"},
		"KEY_PRODUCE_BYTES_PER_SEC":   {"KEY_PRODUCE_BYTES_PER_SEC=-1"},
		"KEY_MUTATIONS_PER_SEC":       {"KEY_MUTATIONS_PER_SEC=NaN"},
	}
	for name, env := range cases {
		cmd := exec.Command(agentBinary(t), "agent")
		cmd.Env = append(os.Environ(), append(env, "DATA_DIR="+t.TempDir())...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%s: agent did not exit non-zero: %v\n%s", name, err, out)
			continue
		}
		if !strings.Contains(string(out), name) {
			t.Errorf("%s: message does not name the variable: %s", name, out)
		}
	}
}

func TestPprofServedOnlyWhenConfigured(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.PprofAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	resp, err := http.Get("http://" + c.PprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pprof goroutine profile: %d", resp.StatusCode)
	}
	// Not on the public REST port.
	if code := call(t, "GET", base+"/debug/pprof/", nil, nil); code != 404 {
		t.Fatalf("pprof on the REST port: %d", code)
	}
}

// TestHelpDoesNotRunTheCommand: --help prints usage and exits 0 without
// running the command (an agent would block here forever).
func TestHelpDoesNotRunTheCommand(t *testing.T) {
	done := make(chan int, 1)
	go func() { done <- run([]string{"agent", "--help", "--data-dir", t.TempDir()}) }()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("agent --help exited %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent --help started an agent")
	}
}
