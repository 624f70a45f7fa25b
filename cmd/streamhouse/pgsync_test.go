package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/transport"
)

func openDB(t *testing.T, url string) *pgsync.DB {
	t.Helper()
	db, err := pgsync.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// waitCheckpointed waits until Postgres holds a checkpoint at or above the
// agent's current commit index.
func waitCheckpointed(t *testing.T, db *pgsync.DB, base string) {
	t.Helper()
	var st transport.ClusterStatus
	call(t, "GET", base+"/api/v1/cluster", nil, &st)
	waitFor(t, 30*time.Second, fmt.Sprintf("a checkpoint at raft index >= %d", st.CommitIndex), func() bool {
		info, err := db.LatestInfo(context.Background())
		return err == nil && info.RaftIndex >= st.CommitIndex
	})
}

// TestPostgresOutageNeverStallsProduce: with Postgres down, produce and
// consume keep working, checkpoint failures and lag are visible in the
// metrics, and checkpoints resume once Postgres is back.
func TestPostgresOutageNeverStallsProduce(t *testing.T) {
	pg := pgtest.Start(t)
	url := pg.NewDatabase(t)
	c := testConfig(t, t.TempDir())
	c.DatabaseURL, c.CheckpointIntervalMs = url, 200
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	db := openDB(t, url)

	createTopic(t, base, "pg", 2)
	waitCheckpointed(t, db, base)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	failuresBefore := metricValue(scrape(t, base), "streamhouse_checkpoint_failures_total")
	for i := 0; i < 300; i++ {
		if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "pg", "value": fmt.Sprint(i)}, nil); code != 200 {
			t.Fatalf("produce %d during the Postgres outage: %d", i, code)
		}
	}
	total := len(consumeAll(t, base, "pg", 0)) + len(consumeAll(t, base, "pg", 1))
	if total != 300 {
		t.Fatalf("consumed %d of 300 records during the outage", total)
	}
	waitFor(t, 30*time.Second, "checkpoint failures and growing lag", func() bool {
		m := scrape(t, base)
		return metricValue(m, "streamhouse_checkpoint_failures_total") > failuresBefore &&
			metricValue(m, "streamhouse_checkpoint_lag_seconds") >= 1
	})
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	waitCheckpointed(t, db, base)
	waitFor(t, 30*time.Second, "lag back under a second", func() bool {
		return metricValue(scrape(t, base), "streamhouse_checkpoint_lag_seconds") < 1
	})
}

// TestRestoreCommandRebuildsFromPostgresAndObjects: data checkpointed to
// Postgres, then more data flushed while Postgres was down (only the
// objects know it); `streamhouse restore` into an empty data dir rebuilds
// both, reports them, refuses a second run, and the agent then serves every
// record at its offset, the group's offsets, and continues past the gap.
func TestRestoreCommandRebuildsFromPostgresAndObjects(t *testing.T) {
	pg := pgtest.Start(t)
	url := pg.NewDatabase(t)
	objects := t.TempDir()
	c := testConfig(t, t.TempDir())
	c.DatabaseURL, c.CheckpointIntervalMs, c.ObjectStoreDir = url, 200, objects
	a, base := startTestAgent(t, c)
	db := openDB(t, url)
	createTopic(t, base, "r", 2)
	led := newAckLedger()
	produce := func(prefix string, n int) {
		for i := 0; i < n; i += 50 {
			vals := make([]string, 50)
			for j := range vals {
				vals[j] = fmt.Sprintf("%s-%d", prefix, i+j)
			}
			if code, err := led.produce(base, "r", vals); err != nil || code != 200 {
				t.Fatalf("produce: %d %v", code, err)
			}
		}
	}
	produce("a", 1000)
	if code := call(t, "POST", base+"/api/v1/consumer-groups/g/commit", map[string]any{"topic": "r", "partition": 1, "offset": 10}, nil); code != 200 {
		t.Fatalf("commit: %d", code)
	}
	waitFor(t, 30*time.Second, "flushed", func() bool { return allFlushed(t, base, "r") })
	waitCheckpointed(t, db, base)
	// Postgres goes away; more data is flushed that only the objects record.
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	produce("b", 500)
	waitFor(t, 30*time.Second, "flushed", func() bool { return allFlushed(t, base, "r") })
	var before transport.PartitionsResponse
	call(t, "GET", base+"/api/v1/topics/r/partitions", nil, &before)
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}

	restored := t.TempDir()
	env := []string{"DATA_DIR=" + restored, "OBJECT_STORE_DIR=" + objects, "DATABASE_URL=" + url, "NODE_ID=restored-1",
		"BIND_ADDR=127.0.0.1", "PEER_PORT=" + strconv.Itoa(c.PeerPort), "LOG_LEVEL=warn"}
	run := func() (string, string, int) {
		return runBinary(t, append(os.Environ(), env...), nil, "restore", "--output", "json")
	}
	out, stderr, code := run()
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, stderr)
	}
	var rep fsm.RestoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Topics != 1 || rep.Partitions != 2 || rep.Groups != 1 || rep.SegmentsFromPG == 0 || rep.SegmentsFromS3 == 0 || rep.ClusterID == "" {
		t.Fatalf("report = %+v", rep)
	}
	if _, stderr, code := run(); code == 0 || !strings.Contains(stderr, "already holds Raft state") {
		t.Fatalf("second restore into the same dir: exit %d, stderr %q", code, stderr)
	}

	c2 := testConfig(t, restored)
	c2.NodeID, c2.PeerPort, c2.ObjectStoreDir, c2.DatabaseURL, c2.CheckpointIntervalMs = "restored-1", c.PeerPort, objects, url, 200
	a2, base2 := startTestAgent(t, c2)
	defer a2.Close(context.Background())
	byPos := map[acked]string{}
	for p := int32(0); p < 2; p++ {
		for _, r := range consumeAll(t, base2, "r", p) {
			byPos[acked{p, r.Offset}] = r.Value
		}
	}
	for v, at := range led.acks {
		if byPos[at] != v {
			t.Fatalf("%q at %d/%d reads back as %q after restore", v, at.partition, at.offset, byPos[at])
		}
	}
	var gd groupBody
	if code := call(t, "GET", base2+"/api/v1/consumer-groups/g", nil, &gd); code != 200 || len(gd.Partitions) != 1 || gd.Partitions[0].Offset != 10 {
		t.Fatalf("group after restore: %d %+v", code, gd)
	}
	var r produceResp
	if code := call(t, "POST", base2+"/api/v1/produce", map[string]any{"topic": "r", "partition": 0, "value": "new"}, &r); code != 200 {
		t.Fatalf("produce after restore: %d", code)
	}
	if want := before.Partitions[0].HighWatermark + c.RestoreOffsetGap; r.Offset != want {
		t.Fatalf("first new offset %d, want %d (high watermark %d + gap %d)", r.Offset, want, before.Partitions[0].HighWatermark, c.RestoreOffsetGap)
	}
	// The restored cluster checkpoints under its new identity.
	waitCheckpointed(t, db, base2)
}

// TestAgentStartsWhilePostgresIsDown: Postgres down at startup does not
// keep the agent from serving; it connects and checkpoints once Postgres is
// back.
func TestAgentStartsWhilePostgresIsDown(t *testing.T) {
	pg := pgtest.Start(t)
	url := pg.NewDatabase(t)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, t.TempDir())
	c.DatabaseURL, c.CheckpointIntervalMs = url, 200
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	createTopic(t, base, "early", 1)
	if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "early", "value": "v"}, nil); code != 200 {
		t.Fatalf("produce with Postgres down: %d", code)
	}
	if v := metricValue(scrape(t, base), "streamhouse_checkpoint_db_connected"); v != 0 {
		t.Fatalf("db_connected = %v while Postgres is down", v)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, url)
	waitCheckpointed(t, db, base)
	if v := metricValue(scrape(t, base), "streamhouse_checkpoint_db_connected"); v != 1 {
		t.Fatalf("db_connected = %v after Postgres came back", v)
	}
}

func TestMalformedDatabaseURLIsAConfigError(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.DatabaseURL = "mysql://nope"
	if a, err := startAgent(context.Background(), c); err == nil {
		a.Close(context.Background())
		t.Fatal("agent started with a mysql:// DATABASE_URL")
	} else if !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("error does not name DATABASE_URL: %v", err)
	}
}
