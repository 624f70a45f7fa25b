package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrHalted: Halt was called while Apply waited for local storage. The FSM
// then applies nothing more and refuses to snapshot (its state is behind
// the index Raft handed it); a restart replays the log.
var ErrHalted = errors.New("fsm: halted while waiting for local storage; restart to replay the log")

// StallPolicy says how Apply waits when the Sink cannot store a committed
// batch (typically ENOSPC). Apply never skips the entry and never panics
// for it: it retries the same entry after Min, doubling up to Max, until
// the Sink takes it or Halt is called.
type StallPolicy struct {
	Min, Max time.Duration // defaults 10 ms and 1 s
	Logger   *slog.Logger
}

// StallStatus describes an Apply that is waiting for local storage.
type StallStatus struct {
	Index    uint64 // Raft index of the entry that cannot be stored
	Attempts int    // failed attempts so far
	Err      error  // the Sink's last error
}

// String is the reason /ready gives.
func (s StallStatus) String() string {
	return fmt.Sprintf("cannot store committed raft entry %d locally after %d attempts (%v); applying is stopped and retried until it succeeds",
		s.Index, s.Attempts, s.Err)
}

// stallState is the FSM's retry state; its lock is a leaf.
type stallState struct {
	mu      sync.Mutex
	policy  StallPolicy
	current *StallStatus
	halted  bool
	haltCh  chan struct{}
	kick    chan struct{}
	notify  chan struct{} // signalled on the first failed attempt of a stall
}

func newStallState() *stallState {
	return &stallState{policy: StallPolicy{Min: 10 * time.Millisecond, Max: time.Second, Logger: slog.New(slog.DiscardHandler)},
		haltCh: make(chan struct{}), kick: make(chan struct{}, 1), notify: make(chan struct{}, 1)}
}

// SetStallPolicy replaces the retry policy. Call before Raft starts.
func (f *FSM) SetStallPolicy(p StallPolicy) {
	if p.Min <= 0 {
		p.Min = 10 * time.Millisecond
	}
	if p.Max < p.Min {
		p.Max = p.Min
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	f.stall.mu.Lock()
	f.stall.policy = p
	f.stall.mu.Unlock()
}

// Stalled reports whether Apply is waiting for local storage, and why.
func (f *FSM) Stalled() (StallStatus, bool) {
	f.stall.mu.Lock()
	defer f.stall.mu.Unlock()
	if f.stall.current == nil {
		return StallStatus{}, false
	}
	return *f.stall.current, true
}

// StallNotify is signalled (capacity 1, never blocking Apply) when Apply
// starts waiting for local storage, at its first failed attempt, so a
// watcher can react at once instead of polling Stalled.
func (f *FSM) StallNotify() <-chan struct{} { return f.stall.notify }

// RetryNow makes a waiting Apply retry at once (e.g. when disk space was
// freed) instead of at the end of its backoff.
func (f *FSM) RetryNow() {
	select {
	case f.stall.kick <- struct{}{}:
	default:
	}
}

// Halt unblocks an Apply that waits for local storage, so Raft can shut
// down. It is idempotent. If an entry was left unapplied, the FSM halts:
// later entries are not applied and Snapshot/Restore fail with ErrHalted.
func (f *FSM) Halt() {
	f.stall.mu.Lock()
	defer f.stall.mu.Unlock()
	select {
	case <-f.stall.haltCh:
	default:
		close(f.stall.haltCh)
	}
}

func (f *FSM) isHalted() bool {
	f.stall.mu.Lock()
	defer f.stall.mu.Unlock()
	return f.stall.halted
}

// waitRetry records that the entry at index could not be stored and waits
// before the next attempt. It returns false when Halt was called: the entry
// stays unapplied and the FSM is halted.
func (f *FSM) waitRetry(index uint64, attempt int, err error) bool {
	st := f.stall
	st.mu.Lock()
	st.current = &StallStatus{Index: index, Attempts: attempt, Err: err}
	p := st.policy
	st.mu.Unlock()
	if attempt == 1 {
		select {
		case st.notify <- struct{}{}:
		default:
		}
		p.Logger.Error("cannot store a committed batch locally; applying stops and retries until it succeeds (free disk space)",
			"index", index, "err", err)
	}
	d := p.Min << min(attempt-1, 20)
	if d > p.Max || d <= 0 {
		d = p.Max
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-st.kick:
		return true
	case <-st.haltCh:
		st.mu.Lock()
		st.halted = true
		st.mu.Unlock()
		p.Logger.Error("halted with a committed entry unapplied; a restart replays it", "index", index)
		return false
	}
}

// resumed clears the stall after the entry at index was stored.
func (f *FSM) resumed(index uint64, attempts int) {
	st := f.stall
	st.mu.Lock()
	st.current = nil
	p := st.policy
	st.mu.Unlock()
	p.Logger.Info("committed batch stored after retrying; applying resumes", "index", index, "failed_attempts", attempts)
}

// haltedResult answers an entry a halted FSM did not apply: it is committed
// (so it will be applied here after a restart, and by the other agents), so
// its outcome is unknown to a proposer.
func haltedResult(index uint64) *Result {
	return &Result{Code: CodeNotApplied, Index: index, Message: "agent halted before applying the entry"}
}

// sinkError marks a Sink failure inside applyOne: the entry changed
// nothing and must be retried.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }
