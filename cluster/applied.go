package cluster

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// appliedSignal wakes the goroutines waiting for this node's FSM to reach
// an index (waitApplied: a forwarded command's own apply, read-index
// reads) right after each apply, instead of their polling it.
type appliedSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newAppliedSignal() *appliedSignal { return &appliedSignal{ch: make(chan struct{})} }

// next returns a channel closed at the next apply or restore.
func (s *appliedSignal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *appliedSignal) wake() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// signalingFSM is the FSM handed to Raft: the node's state machine, with
// the signal woken after every apply and restore.
type signalingFSM struct {
	raft.FSM
	applied *appliedSignal
}

func (f signalingFSM) Apply(l *raft.Log) interface{} {
	defer f.applied.wake()
	return f.FSM.Apply(l)
}

func (f signalingFSM) Restore(rc io.ReadCloser) error {
	defer f.applied.wake()
	return f.FSM.Restore(rc)
}

// signalingBatchingFSM keeps the state machine's batch apply visible to
// Raft (raft.BatchingFSM).
type signalingBatchingFSM struct {
	signalingFSM
	batch raft.BatchingFSM
}

func (f signalingBatchingFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	defer f.applied.wake()
	return f.batch.ApplyBatch(logs)
}

// withAppliedSignal wraps sm so that every apply wakes s.
func withAppliedSignal(sm raft.FSM, s *appliedSignal) raft.FSM {
	f := signalingFSM{FSM: sm, applied: s}
	if b, ok := sm.(raft.BatchingFSM); ok {
		return signalingBatchingFSM{signalingFSM: f, batch: b}
	}
	return f
}
