package partition

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// beforeCommitProposer runs hook just before a CommitSegment is applied:
// the window between an object's upload and its commit.
type beforeCommitProposer struct {
	*directProposer
	hook func()
}

func (p *beforeCommitProposer) Propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if c, err := fsm.Decode(cmd); err == nil && c.Type() == fsm.CmdCommitSegment && p.hook != nil {
		h := p.hook
		p.hook = nil
		h()
	}
	return p.directProposer.Propose(ctx, cmd)
}

// janitorBeforeCommit makes the next commit first tick the cluster clock to
// clockMs and run a janitor pass, in the window after its object's upload.
func (e *env) janitorBeforeCommit(clockMs int64) {
	j := e.janitor(e.fsm, true)
	e.flush.proposer = &beforeCommitProposer{directProposer: e.prop, hook: func() { e.runJanitor(j, clockMs) }}
}

type memSnapSink struct{ bytes.Buffer }

func (*memSnapSink) ID() string    { return "test" }
func (*memSnapSink) Cancel() error { return nil }
func (*memSnapSink) Close() error  { return nil }

// snapshotFSM returns a new FSM restored from f's current state, without
// a sink (the records stay in e.store): an agent that restarted from this
// snapshot and has not applied the rest of its log yet.
func snapshotFSM(t *testing.T, f *fsm.FSM) *fsm.FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf memSnapSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := fsm.New(nil)
	if err := g.Restore(io.NopCloser(&buf.Buffer)); err != nil {
		t.Fatal(err)
	}
	return g
}

// replay applies the proposer's log entries after the FSM's last applied
// index: the restarted agent catching up.
func replay(f *fsm.FSM, p *directProposer) {
	for i := f.LastApplied() + 1; i <= p.index; i++ {
		f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: p.log[i-1]})
	}
}

// TestRestartedLeaderKeepsObjectsItsLogStillCommits reproduces issue item
// 2 (a): an agent stopped for longer than the orphan grace restarts; its
// state machine is its last snapshot and the CommitSegment of an object is
// still in the unapplied log. The janitor must not delete that object:
// not before the leader's barrier applied the log, and not even on the
// stale state, whose cluster clock has not passed the object's commit-by
// time whatever the wall clock says.
func TestRestartedLeaderKeepsObjectsItsLogStillCommits(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	e.tick(time.Now().UnixMilli())
	e.produce("t", 0, "a", "b", "c")
	stale := snapshotFSM(t, e.fsm) // the snapshot before the flush
	e.flushAll()
	if !e.fsm.ObjectReferenced("obj-1") {
		t.Fatal("setup: obj-1 not committed")
	}

	// Restart "two hours later" (the grace is a second).
	for _, ready := range []bool{false, true} {
		j := e.janitor(stale, ready)
		e.runJanitor(j, 0)
		if _, ok := e.segs.objects["obj-1"]; !ok {
			t.Fatalf("the janitor of a restarted agent (barrier applied: %v) deleted an object whose commit is still in its log", ready)
		}
	}
	// The barrier applies the log; the new leader's clock ticks.
	replay(stale, e.prop)
	e.tick(time.Now().Add(2 * time.Hour).UnixMilli())
	replay(stale, e.prop)
	j := e.janitor(stale, true)
	e.runJanitor(j, 0)
	if _, ok := e.segs.objects["obj-1"]; !ok || !stale.ObjectReferenced("obj-1") {
		t.Fatal("a committed object was deleted after the restart")
	}
	e.wantRecords("t", 0, 3)
}

// TestLeaderClockAheadNeverDeletesAnUploadItsCommitReferences: issue item
// 2 (b)/(c): an object between upload and commit while the leader's clock
// jumps far ahead and the janitor runs, so its commit lands late. The
// object is deleted, but then its commit is refused and the records, still
// in the WAL, are flushed again: every record stays readable.
func TestLeaderClockAheadNeverDeletesAnUploadItsCommitReferences(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	e.tick(time.Now().UnixMilli())
	e.produce("t", 0, "a", "b", "c")
	e.janitorBeforeCommit(time.Now().Add(2 * time.Hour).UnixMilli())
	if _, err := e.flush.FlushOnce(ctx, true); !errors.Is(err, fsm.ErrUploadExpired) {
		t.Fatalf("late commit: %v", err)
	}
	if _, ok := e.segs.objects["obj-1"]; ok {
		t.Fatal("setup: the expired upload was not collected")
	}
	e.flushAll()
	e.wantRecords("t", 0, 3)
}

// TestJanitorInTheUploadWindowKeepsTheObject: the janitor runs between an
// upload and its commit while the clock is within the commit window: the
// object is kept and the commit applies.
func TestJanitorInTheUploadWindowKeepsTheObject(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	e.topic("t", 1)
	e.tick(1_000_000)
	e.produce("t", 0, "a")
	e.janitorBeforeCommit(1_000_000 + time.Hour.Milliseconds()) // exactly the commit-by time
	if n, err := e.flush.FlushOnce(ctx, true); err != nil || n != 1 {
		t.Fatalf("commit in the window: %d %v", n, err)
	}
	e.wantRecords("t", 0, 1)
}

// TestFlushBeforeTheClockStartsHasNoCommitBy: until the cluster clock
// starts (agents of an older version may still be members) a commit has
// no commit-by bound and its object is never an orphan candidate; once it
// ticks, uploads carry one.
func TestFlushBeforeTheClockStartsHasNoCommitBy(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	e.produce("t", 0, "a")
	e.flushAll()
	if cb := e.segs.commitBy["obj-1"]; cb != 0 {
		t.Fatalf("commit-by before the clock started = %d", cb)
	}
	if v := e.prop.log[len(e.prop.log)-1][1]; v != 1 {
		t.Fatalf("commit payload version %d before the clock started, want 1", v)
	}
	e.tick(50_000)
	e.produce("t", 0, "b")
	e.flushAll()
	if cb := e.segs.commitBy["obj-2"]; cb != 50_000+time.Hour.Milliseconds() {
		t.Fatalf("commit-by after the clock started = %d", cb)
	}
}

// TestInitProducerPayloadFollowsTheClock: until the cluster clock starts,
// InitProducer is written as payload version 1 (what older agents decode);
// afterwards as version 2 (expiry by the cluster clock).
func TestInitProducerPayloadFollowsTheClock(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	ctx := context.Background()
	for _, tc := range []struct {
		tick    int64
		version byte
	}{{0, 1}, {50_000, 2}} {
		if tc.tick > 0 {
			e.tick(tc.tick)
		}
		if _, err := e.prod.InitProducer(ctx, 0, ""); err != nil {
			t.Fatal(err)
		}
		last := e.prop.log[len(e.prop.log)-1]
		if fsm.CommandType(last[0]) != fsm.CmdInitProducer || last[1] != tc.version {
			t.Fatalf("clock %d: InitProducer payload version %d, want %d", tc.tick, last[1], tc.version)
		}
	}
}
