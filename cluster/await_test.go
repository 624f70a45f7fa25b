package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestCloseWhileLeaderBarrierInFlight: a single voter elects itself at
// once and its leader loop issues its barrier at once, so closing it right
// after it leads often catches the barrier in flight. hashicorp/raft drops
// a batch still queued for its FSM goroutine when it shuts down without
// answering its future; Close must return all the same (it hung within a
// few iterations before await).
func TestCloseWhileLeaderBarrierInFlight(t *testing.T) {
	c := newTestCluster(t)
	for i := range 20 {
		a := c.start("a", "", nil)
		waitFor(t, deadline, "a leads", a.node.IsLeader)
		c.mu.Lock()
		a.down = true // closed here, not by the cluster's cleanup
		c.mu.Unlock()
		closed := make(chan error, 1)
		go func() {
			err := a.node.Close()
			_ = a.mux.Close()
			closed <- err
		}()
		var err error
		waitFor(t, deadline, fmt.Sprintf("Close to return (iteration %d)", i), func() bool {
			select {
			case err = <-closed:
				return true
			default:
				return false
			}
		})
		if err != nil {
			t.Fatalf("iteration %d: Close: %v", i, err)
		}
	}
}

// gateFSM is a raft.FSM whose Apply blocks while its gate is closed.
type gateFSM struct {
	gate    chan struct{}
	entered chan struct{}
}

func (g *gateFSM) Apply(*raft.Log) any {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return nil
}
func (g *gateFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (g *gateFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

// soloRaft starts an in-memory single-voter Raft over fsm and waits until
// it leads; it is shut down when the test ends.
func soloRaft(t *testing.T, f raft.FSM) *raft.Raft {
	t.Helper()
	rc := raft.DefaultConfig()
	rc.LocalID = "solo"
	rc.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	rc.HeartbeatTimeout, rc.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	rc.LeaderLeaseTimeout, rc.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
	rc.BatchApplyCh = true
	addr, tr := raft.NewInmemTransport("solo")
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(rc, f, store, store, raft.NewInmemSnapshotStore(), tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "solo", Address: addr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, deadline, "solo raft leads", func() bool { return r.State() == raft.Leader })
	return r
}

// TestRaftFuturesTakeAStopChannel pins what await relies on in the
// hashicorp/raft version in go.mod: every future cluster waits for has a
// settable ShutdownCh, and closing it ends Error() on a future Raft has not
// answered. If an upgrade renames the field this fails (await would then
// fall back to a helper goroutine per wait, which a dropped future leaks).
func TestRaftFuturesTakeAStopChannel(t *testing.T) {
	g := &gateFSM{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	close(g.gate)
	r := soloRaft(t, g)
	kinds := []struct {
		name string
		f    func() raft.Future
	}{
		{"Apply", func() raft.Future { return r.Apply([]byte("x"), time.Second) }},
		{"Barrier", func() raft.Future { return r.Barrier(time.Second) }},
		{"VerifyLeader", func() raft.Future { return r.VerifyLeader() }},
		{"AddNonvoter", func() raft.Future { return r.AddNonvoter("other", "nowhere", 0, time.Second) }},
		{"AddVoter", func() raft.Future { return r.AddVoter("solo", "solo", 0, time.Second) }},
		{"RemoveServer", func() raft.Future { return r.RemoveServer("other", 0, time.Second) }},
		{"LeadershipTransfer", func() raft.Future { return r.LeadershipTransfer() }},
		{"Snapshot", func() raft.Future { return r.Snapshot() }},
		{"BootstrapCluster", func() raft.Future {
			return r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "solo", Address: "solo"}}})
		}},
	}
	for _, k := range kinds {
		f := k.f()
		if !setFutureStop(f, make(chan struct{})) {
			t.Errorf("%s: future %T has no settable nil %s", k.name, f, raftFutureStopField)
		}
		_ = f.Error() // answered by Raft as usual (LeadershipTransfer fails: no other voter)
	}

	// A future Raft has not answered: the FSM holds the first entry.
	g2 := &gateFSM{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	r2 := soloRaft(t, g2)
	first := r2.Apply([]byte("held"), time.Second)
	<-g2.entered
	second := r2.Apply([]byte("queued"), time.Second)
	stop := make(chan struct{})
	if !setFutureStop(second, stop) {
		t.Fatalf("Apply future %T has no settable nil %s", second, raftFutureStopField)
	}
	close(stop)
	if err := second.Error(); !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("Error() after the stop channel closed = %v, want %v", err, raft.ErrRaftShutdown)
	}
	close(g2.gate)
	if err := first.Error(); err != nil {
		t.Fatalf("held apply: %v", err)
	}
}

// unansweredFuture is a future without a ShutdownCh, answered only when
// the test sends on it.
type unansweredFuture chan error

func (u unansweredFuture) Error() error { return <-u }

// TestAwaitEndsOnContextAndOnRaftShutdown: await returns ctx's error when
// ctx ends and raft.ErrRaftShutdown once the node's Raft is down, both for
// a real Raft future nobody answers (held by a blocked FSM) and for a
// future without the stop field (the fallback); it returns the answer of
// a future that is answered. An Apply cut either way is an unknown
// outcome, never "not written".
func TestAwaitEndsOnContextAndOnRaftShutdown(t *testing.T) {
	g := &gateFSM{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	r := soloRaft(t, g)
	held := r.Apply([]byte("held"), time.Second)
	<-g.entered
	n := New(Config{}, nil)

	ctx, cancel := context.WithCancel(context.Background())
	queued := r.Apply([]byte("queued"), time.Second)
	cancel()
	err := n.await(ctx, queued)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("await with a cancelled ctx = %v, want context.Canceled", err)
	}
	if got := translateApplyErr(err); !errors.Is(got, fsm.ErrOutcomeUnknown) {
		t.Fatalf("apply cut by ctx: %v, want fsm.ErrOutcomeUnknown", got)
	}

	fallback := make(unansweredFuture, 1)
	fctx, fcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer fcancel()
	if err := n.await(fctx, fallback); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fallback await with an expired ctx = %v, want context.DeadlineExceeded", err)
	}

	down := make(chan error, 2)
	queued2 := r.Apply([]byte("queued2"), time.Second)
	go func() { down <- n.await(context.Background(), queued2) }()
	go func() { down <- n.await(context.Background(), fallback) }()
	n.markRaftDown()
	for range 2 {
		err := <-down
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("await after raft shut down = %v, want %v", err, raft.ErrRaftShutdown)
		}
		if got := translateApplyErr(err); !errors.Is(got, fsm.ErrOutcomeUnknown) {
			t.Fatalf("apply cut by shutdown: %v, want fsm.ErrOutcomeUnknown", got)
		}
	}
	fallback <- nil // ends the fallback's helper goroutines (goleak)
	fallback <- nil

	close(g.gate)
	live := New(Config{}, nil)
	if err := live.await(context.Background(), held); err != nil {
		t.Fatalf("await of an answered apply: %v", err)
	}
	if err := live.await(context.Background(), r.Apply([]byte("after"), time.Second)); err != nil {
		t.Fatalf("await of a later apply: %v", err)
	}
}
