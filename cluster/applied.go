package cluster

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// appliedSignal wakes the goroutines waiting for this node's FSM to reach
// an index (waitApplied: a forwarded command's own apply, read-index
// reads) right after each apply, instead of their polling it.
type appliedSignal struct {
	mu sync.Mutex
	ch chan struct{}
	// index is the FSM's applied index as of the last wake: a lock-free
	// lower bound of what the state machine has applied.
	index atomic.Uint64
}

func newAppliedSignal() *appliedSignal { return &appliedSignal{ch: make(chan struct{})} }

// next returns a channel closed at the next apply or restore.
func (s *appliedSignal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// last is the applied index as of the last apply or restore (a lower
// bound: the state machine may be further).
func (s *appliedSignal) last() uint64 { return s.index.Load() }

// wake records the applied index and wakes the waiters.
func (s *appliedSignal) wake(index uint64) {
	s.index.Store(index)
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// signalingFSM is the FSM handed to Raft: the node's state machine, with
// the signal woken after every apply and restore.
type signalingFSM struct {
	StateMachine
	applied *appliedSignal
}

func (f signalingFSM) Apply(l *raft.Log) interface{} {
	defer f.wake()
	return f.StateMachine.Apply(l)
}

func (f signalingFSM) Restore(rc io.ReadCloser) error {
	defer f.wake()
	return f.StateMachine.Restore(rc)
}

// wake runs on Raft's FSM goroutine right after an apply, so reading the
// applied index does not wait behind another apply.
func (f signalingFSM) wake() { f.applied.wake(f.LastApplied()) }

// signalingBatchingFSM keeps the state machine's batch apply visible to
// Raft (raft.BatchingFSM).
type signalingBatchingFSM struct {
	signalingFSM
	batch raft.BatchingFSM
}

func (f signalingBatchingFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	defer f.wake()
	return f.batch.ApplyBatch(logs)
}

// withAppliedSignal wraps sm so that every apply wakes s.
func withAppliedSignal(sm StateMachine, s *appliedSignal) raft.FSM {
	f := signalingFSM{StateMachine: sm, applied: s}
	if b, ok := sm.(raft.BatchingFSM); ok {
		return signalingBatchingFSM{signalingFSM: f, batch: b}
	}
	return f
}
