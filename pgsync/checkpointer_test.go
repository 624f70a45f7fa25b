package pgsync

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
)

// harness runs one Checkpointer against db with a fake source and clock.
type harness struct {
	c     *Checkpointer
	src   *fakeSource
	clock *fakeClock
	reg   *prometheus.Registry
	stop  func()
}

func startCheckpointer(t *testing.T, db *DB, nodeID string, tweak func(*CheckpointerConfig)) *harness {
	t.Helper()
	h := &harness{src: &fakeSource{}, clock: newFakeClock(), reg: prometheus.NewRegistry()}
	cfg := CheckpointerConfig{
		DB: db, Source: h.src, Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, MaxBackoff: 50 * time.Millisecond,
		ClusterID: cluster, NodeID: nodeID, Registerer: h.reg, Clock: h.clock.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := NewCheckpointer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	h.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancellation")
		}
	}
	t.Cleanup(h.stop)
	return h
}

// stuckCheckpointer runs a Checkpointer with the given attempt timeout
// until it has written the fixture (index 100), then holds the guard row
// locked, so writes hang, and offers the state at index 150. release (also
// run at cleanup) ends the lock.
func stuckCheckpointer(t *testing.T, timeout time.Duration) (h *harness, db *DB, release func()) {
	t.Helper()
	db = openDB(t)
	h = startCheckpointer(t, db, node, func(c *CheckpointerConfig) { c.Timeout = timeout })
	img := fixture(t)
	h.src.set(img, true)
	waitIndex(t, db, 100)
	ctx := ctxT(t)
	blocker, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release = func() { rollback(blocker) }
	t.Cleanup(release)
	if _, err := blocker.Exec(ctx, "SELECT 1 FROM streamhouse_checkpoint_guard FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	h.src.set(withIndex(img, 150), true)
	return h, db, release
}

func (h *harness) metric(t testing.TB, name string) float64 {
	t.Helper()
	return testkit.Metric(t, h.reg, name)
}

func waitIndex(t testing.TB, db *DB, index uint64) Info {
	t.Helper()
	var info Info
	waitFor(t, 20*time.Second, "checkpoint at index "+strconv.FormatUint(index, 10), func() bool {
		var err error
		info, err = db.LatestInfo(context.Background())
		return err == nil && info.RaftIndex == index
	})
	return info
}

func TestCheckpointerNotLeader(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	h := startCheckpointer(t, db, node, nil)
	h.src.set(fixture(t), false)
	h.src.waitCalls(t, 5)
	if _, err := db.LatestInfo(ctxT(t)); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("a follower checkpointed: %v", err)
	}
	for name, want := range map[string]float64{
		"streamhouse_checkpoint_lag_seconds":      0,
		"streamhouse_checkpoints_total":           0,
		"streamhouse_checkpoint_failures_total":   0,
		"streamhouse_checkpoint_duration_seconds": 0,
		"streamhouse_checkpoint_raft_index":       0,
	} {
		if got := h.metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if _, err := h.c.CheckpointNow(ctxT(t)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("CheckpointNow on a follower: err = %v, want ErrNotLeader", err)
	}
}

func TestCheckpointerLeader(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	h := startCheckpointer(t, db, node, nil)
	img := fixture(t)
	h.src.set(img, true)
	info := waitIndex(t, db, 100)
	if info.NodeID != node || info.ClusterID != cluster || info.Segments != 5 {
		t.Fatalf("info = %+v", info)
	}
	waitFor(t, 10*time.Second, "Last to report the checkpoint", func() bool { return h.c.Last().RaftIndex == 100 })

	// Unchanged state: no further writes, still success, lag stays 0 as
	// time passes.
	h.clock.Advance(time.Hour)
	h.src.waitCalls(t, 5)
	if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_checkpoints"); n != 1 {
		t.Fatalf("%d checkpoints written for one state, want 1", n)
	}
	if got := h.metric(t, "streamhouse_checkpoints_total"); got != 1 {
		t.Fatalf("checkpoints_total = %v, want 1", got)
	}
	if got := h.metric(t, "streamhouse_checkpoint_lag_seconds"); got != 0 {
		t.Fatalf("lag = %v with the state checkpointed, want 0", got)
	}

	// New state: written incrementally.
	img2 := withIndex(img, 130)
	appendSegments(&img2.Partitions[2], 2, "seg/x")
	h.src.set(img2, true)
	info = waitIndex(t, db, 130)
	if info.SegmentsWritten != 2 {
		t.Fatalf("SegmentsWritten = %d, want 2", info.SegmentsWritten)
	}
	waitFor(t, 10*time.Second, "metrics", func() bool {
		return h.metric(t, "streamhouse_checkpoints_total") == 2 && h.metric(t, "streamhouse_checkpoint_raft_index") == 130
	})
	if got := h.metric(t, "streamhouse_checkpoint_duration_seconds"); got < 2 {
		t.Fatalf("duration histogram has %v samples, want >= 2", got)
	}
	if got := h.metric(t, "streamhouse_checkpoint_failures_total"); got != 0 {
		t.Fatalf("failures = %v", got)
	}
	assertLatest(t, db, img2)

	// Run stops promptly and resets the lag.
	h.stop()
	if got := h.metric(t, "streamhouse_checkpoint_lag_seconds"); got != 0 {
		t.Fatalf("lag after Run returned = %v", got)
	}
}

// TestCheckpointerOutage stops PostgreSQL under a leader: attempts fail,
// the failure counter rises, the lag grows with the (fake) clock; after a
// restart a checkpoint succeeds and the lag drops.
func TestCheckpointerOutage(t *testing.T) {
	t.Parallel()
	own := pgtest.Start(t) // stopped below: not the shared server
	db := openDB(t, own)
	h := startCheckpointer(t, db, node, func(c *CheckpointerConfig) { c.Timeout = 2 * time.Second })
	img := fixture(t)
	h.src.set(img, true)
	waitIndex(t, db, 100)

	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	img2 := withIndex(img, 140)
	appendSegments(&img2.Partitions[1], 1, "seg/y")
	h.src.set(img2, true)
	h.clock.Advance(100 * time.Second)
	waitFor(t, 20*time.Second, "failures and a 100s lag", func() bool {
		return h.metric(t, "streamhouse_checkpoint_failures_total") >= 3 && h.metric(t, "streamhouse_checkpoint_lag_seconds") == 100
	})
	h.clock.Advance(100 * time.Second)
	waitFor(t, 20*time.Second, "the lag to grow to 200s", func() bool {
		return h.metric(t, "streamhouse_checkpoint_lag_seconds") == 200
	})
	failures := h.metric(t, "streamhouse_checkpoint_failures_total")
	waitFor(t, 20*time.Second, "more failures", func() bool {
		return h.metric(t, "streamhouse_checkpoint_failures_total") > failures
	})
	if h.c.Last().RaftIndex != 100 {
		t.Fatalf("Last = %d during the outage, want 100", h.c.Last().RaftIndex)
	}
	// Status (cluster health) reports the outage: leader, failing, lagging.
	if st := h.c.Status(); !st.Leader || st.ConsecutiveFailures < 3 || st.LastError == "" || st.Lag != 200*time.Second || st.Last.RaftIndex != 100 {
		t.Fatalf("Status during the outage = %+v", st)
	}

	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	waitIndex(t, db, 140)
	waitFor(t, 20*time.Second, "the lag to drop to 0", func() bool {
		return h.metric(t, "streamhouse_checkpoint_lag_seconds") == 0
	})
	if got := h.metric(t, "streamhouse_checkpoints_total"); got != 2 {
		t.Fatalf("checkpoints_total = %v, want 2", got)
	}
	if st := h.c.Status(); !st.Leader || st.ConsecutiveFailures != 0 || st.LastError != "" || st.Lag != 0 || st.Last.RaftIndex != 140 {
		t.Fatalf("Status after the outage = %+v", st)
	}
	assertLatest(t, db, img2)
}

// TestCheckpointerSlowDatabase holds the guard row locked so that writes
// hang: attempts time out (failures), the lag gauge keeps being updated
// while an attempt is stuck, and writes resume when the lock goes.
func TestCheckpointerSlowDatabase(t *testing.T) {
	t.Parallel()
	h, db, release := stuckCheckpointer(t, 300*time.Millisecond)
	ctx := ctxT(t)
	h.clock.Advance(42 * time.Second)
	waitFor(t, 20*time.Second, "timeouts and a 42s lag", func() bool {
		return h.metric(t, "streamhouse_checkpoint_failures_total") >= 2 && h.metric(t, "streamhouse_checkpoint_lag_seconds") == 42
	})
	if info, err := db.LatestInfo(ctx); err != nil || info.RaftIndex != 100 {
		t.Fatalf("LatestInfo = %+v, %v", info, err)
	}
	release()
	waitIndex(t, db, 150)
	waitFor(t, 10*time.Second, "lag 0", func() bool { return h.metric(t, "streamhouse_checkpoint_lag_seconds") == 0 })
}

// TestCheckpointerLagUpdatedDuringHungAttempt: with a long Timeout an
// attempt stays stuck, and the lag is still updated every Interval.
func TestCheckpointerLagUpdatedDuringHungAttempt(t *testing.T) {
	t.Parallel()
	h, db, release := stuckCheckpointer(t, time.Minute)
	calls := h.src.numCalls()
	waitFor(t, 10*time.Second, "an attempt to start", func() bool { return h.src.numCalls() > calls })
	for _, lag := range []float64{10, 20, 30} {
		h.clock.Advance(10 * time.Second)
		waitFor(t, 10*time.Second, "the lag to follow the clock", func() bool {
			return h.metric(t, "streamhouse_checkpoint_lag_seconds") == lag
		})
	}
	if got := h.src.numCalls(); got != calls+1 {
		t.Fatalf("%d attempts started while one was stuck, want 1", got-calls)
	}
	if got := h.metric(t, "streamhouse_checkpoint_failures_total"); got != 0 {
		t.Fatalf("failures = %v before the timeout", got)
	}
	release()
	waitIndex(t, db, 150)
}

// TestCheckpointerHandover: the old leader checkpoints, a new leader whose
// state is behind is rejected by the guard without failing, then continues
// above the old leader's index; the deposed leader, still believing it
// leads, cannot make the checkpoint regress.
func TestCheckpointerHandover(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	a := startCheckpointer(t, db, "node-a", nil)
	b := startCheckpointer(t, db, "node-b", nil)
	img := fixture(t)
	a.src.set(img, true)
	b.src.set(nil, false)
	if info := waitIndex(t, db, 100); info.NodeID != "node-a" {
		t.Fatalf("written by %s", info.NodeID)
	}

	// Leadership moves to b, whose state is behind (index 90).
	a.src.set(nil, false)
	behind := withIndex(img, 90)
	b.src.set(behind, true)
	b.src.waitCalls(t, 5)
	if info, err := db.LatestInfo(ctxT(t)); err != nil || info.RaftIndex != 100 {
		t.Fatalf("LatestInfo = %+v, %v", info, err)
	}
	if got := b.metric(t, "streamhouse_checkpoint_failures_total"); got != 0 {
		t.Fatalf("stale-guard rejections counted as %v failures", got)
	}
	if got := b.metric(t, "streamhouse_checkpoint_lag_seconds"); got != 0 {
		t.Fatalf("b lag = %v", got)
	}
	if _, err := b.c.CheckpointNow(ctxT(t)); !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("CheckpointNow behind the guard: err = %v, want ErrStaleCheckpoint", err)
	}

	// b catches up and goes further: it continues where a stopped.
	ahead := withIndex(img, 160)
	appendSegments(&ahead.Partitions[0], 2, "seg/b")
	b.src.set(ahead, true)
	info := waitIndex(t, db, 160)
	if info.NodeID != "node-b" || info.SegmentsWritten != 2 {
		t.Fatalf("info = %+v, want node-b writing 2 new segments", info)
	}

	// a, deposed but still believing it leads, has an older state.
	a.src.set(withIndex(img, 120), true)
	a.src.waitCalls(t, 5)
	if got := a.metric(t, "streamhouse_checkpoint_failures_total"); got != 0 {
		t.Fatalf("a failures = %v", got)
	}
	history := queryInts(t, db, "SELECT raft_index FROM streamhouse_checkpoints ORDER BY id")
	if len(history) != 2 || history[0] != 100 || history[1] != 160 {
		t.Fatalf("history = %v, want [100 160]", history)
	}
	assertLatest(t, db, ahead)
}

func TestCheckpointNow(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	src := &fakeSource{}
	c, err := NewCheckpointer(CheckpointerConfig{DB: db, Source: src, ClusterID: cluster, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	img := fixture(t)
	src.set(img, true)
	info, err := c.CheckpointNow(ctx)
	if err != nil || info.RaftIndex != 100 {
		t.Fatalf("CheckpointNow = %+v, %v", info, err)
	}
	again, err := c.CheckpointNow(ctx)
	if err != nil || again != info {
		t.Fatalf("unchanged CheckpointNow = %+v, %v; want the last checkpoint %+v", again, err, info)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM streamhouse_checkpoints"); n != 1 {
		t.Fatalf("%d history rows, want 1", n)
	}
	if c.Last() != info {
		t.Fatalf("Last = %+v", c.Last())
	}
	// A context that is already done makes no attempt.
	done, cancel := context.WithCancel(ctx)
	cancel()
	src.set(withIndex(img, 101), true)
	if _, err := c.CheckpointNow(done); err == nil {
		t.Fatal("CheckpointNow with a cancelled context succeeded")
	}
	if info, _ := db.LatestInfo(ctx); info.RaftIndex != 100 {
		t.Fatalf("latest = %d", info.RaftIndex)
	}
}

func TestCheckpointerSurvivesPanickingSource(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	h := startCheckpointer(t, db, node, nil)
	h.src.set(fixture(t), true)
	h.src.setPanics(true)
	waitFor(t, 10*time.Second, "panics counted as failures", func() bool {
		return h.metric(t, "streamhouse_checkpoint_failures_total") >= 2
	})
	h.src.setPanics(false)
	waitIndex(t, db, 100)
}

func TestCheckpointerClusterMismatchIsAFailure(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	if err := db.AdoptCluster(ctxT(t), "someone-else"); err != nil {
		t.Fatal(err)
	}
	h := startCheckpointer(t, db, node, nil)
	h.src.set(fixture(t), true)
	waitFor(t, 10*time.Second, "a failure", func() bool { return h.metric(t, "streamhouse_checkpoint_failures_total") >= 1 })
	h.clock.Advance(time.Minute) // after leadership began: the lag counts from then
	waitFor(t, 10*time.Second, "failures and lag", func() bool {
		return h.metric(t, "streamhouse_checkpoint_failures_total") >= 2 && h.metric(t, "streamhouse_checkpoint_lag_seconds") == 60
	})
	_, err := h.c.CheckpointNow(ctxT(t))
	if !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("err = %v, want ErrClusterMismatch", err)
	}
}

func TestNewCheckpointerConfig(t *testing.T) {
	db := openDB(t)
	src := &fakeSource{}
	for name, cfg := range map[string]CheckpointerConfig{
		"no DB":            {Source: src, ClusterID: "c", NodeID: "n"},
		"no source":        {DB: db, ClusterID: "c", NodeID: "n"},
		"no cluster":       {DB: db, Source: src, NodeID: "n"},
		"no node":          {DB: db, Source: src, ClusterID: "c"},
		"negative timeout": {DB: db, Source: src, ClusterID: "c", NodeID: "n", Timeout: -1},
	} {
		if _, err := NewCheckpointer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := NewCheckpointer(CheckpointerConfig{DB: db, Source: src, ClusterID: "c", NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Interval != DefaultInterval || c.cfg.Timeout != DefaultTimeout || c.cfg.MaxBackoff != DefaultMaxBackoff || c.cfg.Clock == nil {
		t.Fatalf("defaults not applied: %+v", c.cfg)
	}
	// The collectors are registered with the given registry.
	reg := prometheus.NewRegistry()
	c1, err := NewCheckpointer(CheckpointerConfig{DB: db, Source: src, ClusterID: "c", NodeID: "n", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c1.m.failures.Inc()
	if got := testkit.Metric(t, reg, "streamhouse_checkpoint_failures_total"); got != 1 {
		t.Fatalf("registered failures counter = %v, want 1", got)
	}
}

func TestRunTwiceReturns(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	h := startCheckpointer(t, db, node, nil)
	h.src.set(&fsm.Image{LastApplied: 5}, true)
	waitIndex(t, db, 5)
	done := make(chan struct{})
	go func() {
		h.c.Run(context.Background()) // already running: returns at once
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a second Run did not return")
	}
}
