package cluster

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Raft must still see the state machine's batch apply through the
// wrapper, and every apply must wake the waiters.
func TestAppliedSignalWrapsTheStateMachine(t *testing.T) {
	s := newAppliedSignal()
	wrapped := withAppliedSignal(fsm.New(nil), s)
	b, ok := wrapped.(raft.BatchingFSM)
	if !ok {
		t.Fatal("the wrapper hides the state machine's ApplyBatch from Raft")
	}
	next := s.next()
	b.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: fsm.Encode(&fsm.DeleteTopic{Name: "none"})}})
	select {
	case <-next:
	default:
		t.Fatal("an apply did not wake the waiters")
	}
	next = s.next()
	wrapped.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: fsm.Encode(&fsm.DeleteTopic{Name: "none"})})
	select {
	case <-next:
	default:
		t.Fatal("a single apply did not wake the waiters")
	}
	if got := s.last(); got != 2 {
		t.Fatalf("applied index after two applies: %d, want 2", got)
	}
}
