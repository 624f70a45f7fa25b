package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
	"github.com/streamhouse/streamhouse/transport"
)

// DR restores against a real MinIO and a real PostgreSQL, with a fault
// proxy (s3segtest.FaultProxy, a real HTTP proxy) in front of MinIO where
// reads must fail.

const restoreBucket = "dr-restore"

// produceFlushed runs one agent on MinIO (configured further by tune),
// creates topic with parts partitions, produces n acknowledged records into
// it and waits until they are all flushed. The agent keeps running.
func produceFlushed(t *testing.T, base, topic string, parts, n int) map[string]acked {
	t.Helper()
	createTopic(t, base, topic, parts)
	led := newAckLedger()
	for i := 0; i < n; i += 25 {
		var vals []string
		for j := i; j < min(i+25, n); j++ {
			vals = append(vals, fmt.Sprintf("%s-%d", topic, j))
		}
		if code, err := led.produce(base, topic, vals); err != nil || code != 200 {
			t.Fatalf("produce: %d %v", code, err)
		}
	}
	waitFor(t, 60*time.Second, topic+" flushed", func() bool { return allFlushed(t, base, topic) })
	return led.acks
}

// checkAllReadable fails unless every acknowledged record reads back at its
// offset.
func checkAllReadable(t *testing.T, base, topic string, parts int, acks map[string]acked) {
	t.Helper()
	byPos := map[acked]string{}
	for p := int32(0); p < int32(parts); p++ {
		for _, r := range consumeAll(t, base, topic, p) {
			byPos[acked{p, r.Offset}] = r.Value
		}
	}
	for v, a := range acks {
		if byPos[a] != v {
			t.Fatalf("flushed record %q at %d/%d reads back as %q after the restore", v, a.partition, a.offset, byPos[a])
		}
	}
}

// restoreConfig is a fresh agent configuration on the same bucket, for a
// restore from dbURL.
func restoreConfig(t *testing.T, m *s3segtest.MinIO, dbURL string) *agentCmd {
	c := s3Config(t, m, restoreBucket)
	c.DatabaseURL = dbURL
	return c
}

// Regression (issue: DR restore turns a transient S3 error into a
// permanent gap): every footer read fails 8 times, more than the S3
// client's own 5 attempts. The restore retries on and recovers every
// flushed record.
func TestRestoreRidesOutTransientS3Errors(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, restoreBucket)
	dbURL := pgtest.Start(t).NewDatabase(t)
	a, base := startTestAgent(t, s3Config(t, m, restoreBucket)) // no checkpoints: the bucket alone
	acks := produceFlushed(t, base, "t", 3, 300)
	a.Close(context.Background())

	proxy, err := s3segtest.NewFaultProxy(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.FailFirstReads(8)
	rc := restoreConfig(t, m, dbURL)
	rc.S3Endpoint = proxy.URL
	rep, err := runRestore(context.Background(), rc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("restore through transient S3 errors: %v", err)
	}
	if len(rep.Unreadable) != 0 || proxy.Failed() == 0 || rep.SegmentsFromS3 == 0 {
		t.Fatalf("unreadable %v, %d reads failed, %d segments from S3", rep.Unreadable, proxy.Failed(), rep.SegmentsFromS3)
	}
	rc.S3Endpoint = m.Endpoint
	a2, base2 := startTestAgent(t, rc)
	defer a2.Close(context.Background())
	checkAllReadable(t, base2, "t", 3, acks)
}

// An object that stays unreadable fails the restore, naming it, and nothing
// is planted; with --allow-unreadable the restore goes on, the report says
// so, and the object is kept: the orphan collector deletes a real orphan
// but not it.
func TestRestoreRefusesUnreadableObjectsUnlessAllowed(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, restoreBucket)
	dbURL := pgtest.Start(t).NewDatabase(t)
	a, base := startTestAgent(t, s3Config(t, m, restoreBucket))
	produceFlushed(t, base, "t", 2, 100)
	a.Close(context.Background())
	store := m.NewStore(t, restoreBucket)
	objs, err := store.List(context.Background(), s3seg.SegmentKeyPrefix)
	if err != nil || len(objs) == 0 {
		t.Fatalf("list: %v (%d objects)", err, len(objs))
	}
	bad := objs[0].Key

	proxy, err := s3segtest.NewFaultProxy(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.FailKey(bad)
	rc := restoreConfig(t, m, dbURL)
	rc.S3Endpoint, rc.RestoreReadRetryMs = proxy.URL, 1500
	_, err = runRestore(context.Background(), rc, slog.New(slog.DiscardHandler), nil)
	var ue *unreadableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("restore with %s unreadable: %v; want a failure naming it", bad, err)
	}
	if hasRaftState(rc.DataDir) {
		t.Fatal("a failed restore planted state")
	}

	rc.RestoreAllowUnreadable = true
	rep, err := runRestore(context.Background(), rc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.AllowUnreadable || len(rep.Unreadable) != 1 || !strings.HasPrefix(rep.Unreadable[0], bad+": ") {
		t.Fatalf("report: allowed %v, unreadable %v", rep.AllowUnreadable, rep.Unreadable)
	}
	var out strings.Builder
	if err := printRestoreReport(&out, rep, "table"); err != nil || !strings.Contains(out.String(), "--allow-unreadable") {
		t.Fatalf("the printed report does not say the override was used: %v\n%s", err, out.String())
	}
	// An orphan whose commit-by time (in its key) is long past: only such
	// objects are garbage (partition.OrphanDeletable).
	orphan := s3seg.SegmentKeyPrefix + "zz-orphan-cb1.seg"
	if err := store.Put(context.Background(), orphan, []byte("never committed")); err != nil {
		t.Fatal(err)
	}
	rc.S3Endpoint, rc.OrphanGraceMs, rc.RetentionCheckMs = m.Endpoint, 1, 100
	a2, _ := startTestAgent(t, rc)
	defer a2.Close(context.Background())
	waitFor(t, 30*time.Second, "the orphan collector deletes a real orphan", func() bool {
		_, err := store.Head(context.Background(), orphan)
		return errors.Is(err, s3seg.ErrNotFound)
	})
	if _, err := store.Head(context.Background(), bad); err != nil {
		t.Fatalf("the object the restore could not read was deleted: %v", err)
	}
	if !a2.fsm.ObjectReferenced(bad) {
		t.Fatal("the restored state does not protect the unreadable object")
	}
}

// Regression (issue: DR restore resurrects deleted topics): a topic deleted
// before the last checkpoint, whose objects were still queued for deletion,
// does not come back; its objects stay queued.
func TestRestoreKeepsDeletedTopicsDeleted(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, restoreBucket)
	dbURL := pgtest.Start(t).NewDatabase(t)
	c := s3Config(t, m, restoreBucket)
	c.DatabaseURL, c.CheckpointIntervalMs = dbURL, 200
	c.RetentionCheckMs = 3_600_000 // released objects are not deleted before the disaster
	a, base := startTestAgent(t, c)
	produceFlushed(t, base, "gone", 2, 100)
	acks := produceFlushed(t, base, "kept", 2, 100)
	if code := call(t, "DELETE", base+"/api/v1/topics/gone", nil, nil); code != 200 && code != 204 {
		t.Fatalf("delete topic: %d", code)
	}
	pending := a.fsm.PendingDeletes()
	if len(pending) == 0 {
		t.Fatal("deleting a topic queued no object")
	}
	var st transport.ClusterStatus
	call(t, "GET", base+"/api/v1/cluster", nil, &st)
	db, err := pgsync.Open(context.Background(), dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, 30*time.Second, "a checkpoint covering the delete", func() bool {
		info, err := db.LatestInfo(context.Background())
		return err == nil && info.RaftIndex >= st.CommitIndex
	})
	a.Close(context.Background())

	rc := restoreConfig(t, m, dbURL)
	rep, err := runRestore(context.Background(), rc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	a2, base2 := startTestAgent(t, rc)
	defer a2.Close(context.Background())
	if code := call(t, "GET", base2+"/api/v1/topics/gone", nil, nil); code != 404 {
		t.Fatalf("the deleted topic is back after the restore: GET answers %d (report: topics from S3 %v)", code, rep.TopicsFromS3)
	}
	if got := a2.fsm.PendingDeletes(); !slices.Equal(got, pending) {
		t.Fatalf("pending deletes after the restore %v, before %v", got, pending)
	}
	checkAllReadable(t, base2, "kept", 2, acks)
}

// TestRestoreCarriesAddedPartitionsAndConfig: partitions added to a topic
// and its altered configuration reach the Postgres checkpoint, and a DR
// restore brings back every flushed record of the old and the new
// partitions with the topic's configuration.
func TestRestoreCarriesAddedPartitionsAndConfig(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, restoreBucket)
	dbURL := pgtest.Start(t).NewDatabase(t)
	c := s3Config(t, m, restoreBucket)
	c.DatabaseURL, c.CheckpointIntervalMs = dbURL, 200
	a, base := startTestAgent(t, c)
	acks := produceFlushed(t, base, "grow", 2, 100)
	if code := call(t, "POST", base+"/api/v1/topics/grow/partitions", map[string]any{"count": 4}, nil); code != 200 {
		t.Fatalf("add partitions: %d", code)
	}
	if code := call(t, "PATCH", base+"/api/v1/topics/grow/config", map[string]any{"max.message.bytes": "4096", "retention.ms": "86400000"}, nil); code != 200 {
		t.Fatalf("alter config: %d", code)
	}
	led := newAckLedger()
	for i := 0; i < 100; i += 25 {
		var vals []string
		for j := i; j < i+25; j++ {
			vals = append(vals, fmt.Sprintf("grown-%d", j))
		}
		if code, err := led.produce(base, "grow", vals); err != nil || code != 200 {
			t.Fatalf("produce: %d %v", code, err)
		}
	}
	newParts := map[int32]bool{}
	for v, ack := range led.acks {
		acks[v] = ack
		newParts[ack.partition] = true
	}
	if !newParts[2] && !newParts[3] {
		t.Fatalf("100 keyed records all landed in the old partitions: %v", newParts)
	}
	waitFor(t, 60*time.Second, "grow flushed", func() bool { return allFlushed(t, base, "grow") })
	var st transport.ClusterStatus
	call(t, "GET", base+"/api/v1/cluster", nil, &st)
	db, err := pgsync.Open(context.Background(), dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, 30*time.Second, "a checkpoint covering the flushes", func() bool {
		info, err := db.LatestInfo(context.Background())
		return err == nil && info.RaftIndex >= st.CommitIndex
	})
	a.Close(context.Background())

	rc := restoreConfig(t, m, dbURL)
	if _, err := runRestore(context.Background(), rc, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatal(err)
	}
	a2, base2 := startTestAgent(t, rc)
	defer a2.Close(context.Background())
	var cfg transport.TopicConfigJSON
	if code := call(t, "GET", base2+"/api/v1/topics/grow/config", nil, &cfg); code != 200 ||
		cfg.Configs["max.message.bytes"] != "4096" || cfg.Configs["retention.ms"] != "86400000" {
		t.Fatalf("config after the restore: %d %+v", code, cfg)
	}
	checkAllReadable(t, base2, "grow", 4, acks)
}
