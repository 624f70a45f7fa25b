package fsm

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// fullSink is a memSink that fails with ENOSPC while full is set.
type fullSink struct {
	mu sync.Mutex
	memSink
	full     bool
	failures int
}

func (s *fullSink) setFull(v bool) {
	s.mu.Lock()
	s.full = v
	s.mu.Unlock()
}

func (s *fullSink) Materialize(b []*AppendedBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		s.failures++
		return syscall.ENOSPC
	}
	return s.memSink.Materialize(b)
}

func (s *fullSink) stored() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, b := range s.batches {
		out = append(out, b.Index)
	}
	return out
}

func logOf(index uint64, c Command) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: Encode(c)}
}

func newFullSinkFSM(t *testing.T) (*FSM, *fullSink) {
	s := &fullSink{full: true}
	f := New(s)
	f.SetStallPolicy(StallPolicy{Min: time.Millisecond, Max: time.Millisecond})
	t.Cleanup(f.Halt)
	return f, s
}

// A batch the Sink cannot store stops applying at that entry (nothing of it
// applied, entries before it applied and visible), is retried, and is
// stored exactly once when space returns.
func TestApplyStallsOnFullSinkAndRetriesTheSameEntry(t *testing.T) {
	f, sink := newFullSinkFSM(t)
	changed := f.Changed()
	logs := []*raft.Log{
		logOf(1, &CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}),
		logOf(2, appendCmd(1, 0, 1, "a", "b")),
		logOf(3, appendCmd(1, 0, 1, "c")),
	}
	done := make(chan []interface{}, 1)
	go func() { done <- f.ApplyBatch(logs) }()
	testkit.WaitFor(t, 10*time.Second, "a stall at index 2", func() bool {
		st, ok := f.Stalled()
		return ok && st.Index == 2 && st.Attempts >= 3 && errors.Is(st.Err, syscall.ENOSPC)
	})
	select {
	case <-f.StallNotify(): // signalled once, at the first failed attempt
	default:
		t.Fatal("the stall was not signalled on StallNotify")
	}
	select {
	case <-changed: // the topic created before the stall is announced
	case <-time.After(10 * time.Second):
		t.Fatal("metadata change before the stall was not notified")
	}
	if _, ok := f.Topic("t"); !ok {
		t.Fatal("topic created before the stalled entry is not visible")
	}
	if p, _ := f.Partition(1, 0); p.NextOffset != 0 || f.LastApplied() != 1 {
		t.Fatalf("while stalled: next offset %d, last applied %d; want 0 and 1", p.NextOffset, f.LastApplied())
	}
	sink.setFull(false)
	f.RetryNow()
	var out []interface{}
	select {
	case out = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("apply did not resume after space returned")
	}
	r2, r3 := out[1].(*Result), out[2].(*Result)
	if r2.Err() != nil || r2.BaseOffset != 0 || r2.Count != 2 || r3.BaseOffset != 2 || r3.Index != 3 {
		t.Fatalf("results %+v %+v", r2, r3)
	}
	if got := sink.stored(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("stored batches %v, want [2 3]", got)
	}
	if _, ok := f.Stalled(); ok || f.LastApplied() != 3 {
		t.Fatalf("after resume: stalled=%v last applied %d", ok, f.LastApplied())
	}
}

// Halt releases a stalled Apply (so Raft can shut down) without claiming the
// entry was applied, and the FSM then refuses to snapshot.
func TestHaltReleasesStalledApply(t *testing.T) {
	f, sink := newFullSinkFSM(t)
	f.Apply(logOf(1, &CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}))
	done := make(chan interface{}, 1)
	go func() { done <- f.Apply(logOf(2, appendCmd(1, 0, 1, "a"))) }()
	testkit.WaitFor(t, 10*time.Second, "a stall", func() bool { _, ok := f.Stalled(); return ok })
	f.Halt()
	var res *Result
	select {
	case out := <-done:
		res = out.(*Result)
	case <-time.After(10 * time.Second):
		t.Fatal("Halt did not release the stalled apply")
	}
	if !errors.Is(res.Err(), ErrOutcomeUnknown) || res.Index != 2 {
		t.Fatalf("halted result %+v (%v), want outcome unknown at index 2", res, res.Err())
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrHalted) {
		t.Fatalf("snapshot of a halted FSM: %v, want ErrHalted", err)
	}
	sink.setFull(false)
	if r := f.Apply(logOf(3, appendCmd(1, 0, 1, "b"))).(*Result); !errors.Is(r.Err(), ErrOutcomeUnknown) {
		t.Fatalf("apply after halt: %+v", r)
	}
	if got := sink.stored(); len(got) != 0 || f.LastApplied() != 1 {
		t.Fatalf("after halt: stored %v, last applied %d", got, f.LastApplied())
	}
}
