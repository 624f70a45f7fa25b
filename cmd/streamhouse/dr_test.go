package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/transport"
)

// TestDisasterRecoveryDrill is the DR procedure end to end: three agents on
// MinIO checkpointing to a real PostgreSQL, producers and a consumer group;
// after a flush and a checkpoint, a last burst of records, then every agent
// is SIGKILLed and its data dir deleted. New agents restore from Postgres +
// the bucket. Every acknowledged record at or below the flushed offset must
// be readable at the same offset with the same value, the group's offsets
// must be back, and new records must never take an acknowledged offset.
func TestDisasterRecoveryDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process DR drill; run without -short")
	}
	pg := pgtest.Start(t)
	dbURL := pg.NewDatabase(t)
	c := startProcCluster(t, 3, "DATABASE_URL="+dbURL, "CHECKPOINT_INTERVAL_MS=300")
	waitFor(t, 30*time.Second, "3 voters", func() bool {
		st, ok := c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	const parts = 4
	createTopic(t, c.base(0), "dr", parts)

	// Followers apply the topic a moment after the agent that created it.
	waitFor(t, 30*time.Second, "the topic on every agent", func() bool {
		for i := range c.procs {
			if code, err := tryCall("GET", c.base(i)+"/api/v1/topics/dr", nil, nil); err != nil || code != 200 {
				return false
			}
		}
		return true
	})

	// Phase 1: load through a follower, and a consumer group committing.
	var g loadGen
	g.run(t, c.base(1), "dr", 4, 20)
	waitFor(t, 60*time.Second, "5000 acknowledged records", func() bool { return g.led.n.Load() >= 5000 })
	g.halt()
	var pr transport.PartitionsResponse
	call(t, "GET", c.base(0)+"/api/v1/topics/dr/partitions", nil, &pr)
	committed := map[int32]int64{}
	for _, p := range pr.Partitions {
		committed[p.Partition] = p.HighWatermark / 2
		body := map[string]any{"topic": "dr", "partition": p.Partition, "offset": committed[p.Partition]}
		if code := call(t, "POST", c.base(2)+"/api/v1/consumer-groups/drill/commit", body, nil); code != 200 {
			t.Fatalf("commit: %d", code)
		}
	}
	waitFor(t, 60*time.Second, "everything flushed", func() bool { return allFlushed(t, c.base(0), "dr") })
	flushedAt := time.Now()
	var st transport.ClusterStatus
	call(t, "GET", c.base(0)+"/api/v1/cluster", nil, &st)
	db, err := pgsync.Open(context.Background(), dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, 60*time.Second, "a checkpoint covering the flush", func() bool {
		info, err := db.LatestInfo(context.Background())
		return err == nil && info.RaftIndex >= st.CommitIndex
	})
	phase1 := g.led.acks

	// Phase 2: a last burst, acknowledged but perhaps never flushed.
	late := newAckLedger()
	for i := 0; i < 20; i++ {
		vals := make([]string, 10)
		for j := range vals {
			vals[j] = fmt.Sprintf("late-%d-%d", i, j)
		}
		if code, err := late.produce(c.base(0), "dr", vals); err != nil || code != 200 {
			t.Fatalf("late produce: %d %v", code, err)
		}
	}
	phase2 := late.acks

	// The disaster: every agent and every disk.
	disaster := time.Now()
	for i := range c.procs {
		c.procs[i].kill(t)
		c.procs[i] = nil
		if err := os.RemoveAll(filepath.Join(c.dir, "node-"+strconv.Itoa(i+1))); err != nil {
			t.Fatal(err)
		}
	}

	// Recovery: node-1 restores (RESTORE_FROM_POSTGRES) and leads; the
	// others join it as new agents.
	restoreStart := time.Now()
	c.env[0] = append(c.env[0], "RESTORE_FROM_POSTGRES=true", "BOOTSTRAP_EXPECT=0", "JOIN=")
	c.procs[0] = c.launch(0)
	produceWorks := func() bool {
		code, err := tryCall("POST", c.base(0)+"/api/v1/produce", map[string]any{"topic": "dr", "partition": 0, "value": "probe"}, nil)
		return err == nil && code == 200
	}
	waitFor(t, 60*time.Second, "produce after restore", produceWorks)
	restoreTime := time.Since(restoreStart)
	var gossip1 string
	for _, e := range c.env[0] {
		if v, ok := strings.CutPrefix(e, "GOSSIP_PORT="); ok {
			gossip1 = "127.0.0.1:" + v
		}
	}
	for i := 1; i < 3; i++ {
		c.env[i] = append(c.env[i], "BOOTSTRAP_EXPECT=0", "JOIN="+gossip1)
		c.procs[i] = c.launch(i)
	}
	waitFor(t, 60*time.Second, "3 voters after restore", func() bool {
		st, ok := c.status(0)
		return ok && len(st.Voters) == 3
	})

	// Every phase-1 record (all flushed) is back at its offset; phase-2
	// records are either back at their offset or lost, never different.
	byPos := map[acked]string{}
	maxAcked := map[int32]int64{}
	for p := int32(0); p < parts; p++ {
		for _, r := range consumeAll(t, c.base(2), "dr", p) {
			byPos[acked{p, r.Offset}] = r.Value
		}
	}
	for v, a := range phase1 {
		if byPos[a] != v {
			t.Fatalf("flushed record %q at %d/%d reads back as %q", v, a.partition, a.offset, byPos[a])
		}
		maxAcked[a.partition] = max(maxAcked[a.partition], a.offset)
	}
	recovered := 0
	for v, a := range phase2 {
		got, ok := byPos[a]
		if ok && got != v {
			t.Fatalf("late record %q at %d/%d reads back as %q", v, a.partition, a.offset, got)
		}
		if ok {
			recovered++
		}
		maxAcked[a.partition] = max(maxAcked[a.partition], a.offset)
	}
	var gd groupBody
	if code := call(t, "GET", c.base(1)+"/api/v1/consumer-groups/drill", nil, &gd); code != 200 || len(gd.Partitions) != parts {
		t.Fatalf("group after restore: %d %+v", code, gd)
	}
	for _, p := range gd.Partitions {
		if p.Offset != committed[p.Partition] {
			t.Fatalf("group offset of partition %d restored as %d, committed %d", p.Partition, p.Offset, committed[p.Partition])
		}
	}
	// New records never take an acknowledged offset.
	for i := 0; i < 40; i++ {
		var r produceResp
		if code := call(t, "POST", c.base(i%3)+"/api/v1/produce", map[string]any{"topic": "dr", "key": fmt.Sprint("new-", i), "value": "new"}, &r); code != 200 {
			t.Fatalf("produce after restore: %d", code)
		}
		if r.Offset <= maxAcked[r.Partition] {
			t.Fatalf("new record got offset %d/%d, at or below the acknowledged %d: offset reused", r.Partition, r.Offset, maxAcked[r.Partition])
		}
	}
	t.Logf("DR drill: %d flushed records all recovered; %d of %d records acknowledged after the last flush recovered (recovery point: the flush %v before the disaster); restore to first produce took %v",
		len(phase1), recovered, len(phase2), disaster.Sub(flushedAt).Round(time.Millisecond), restoreTime.Round(time.Millisecond))
}
