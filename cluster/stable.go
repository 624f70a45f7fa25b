package cluster

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// retryingStable wraps Raft's stable store (current term, vote) so a write
// that fails — a full disk — is retried instead of returned: hashicorp/raft
// panics when it cannot persist a new term ("failed to save current
// term"), which would turn a full disk into a crash. While the write is
// retried the Raft goroutine that called it waits, so this agent neither
// votes nor acknowledges anything — as if paused — and resumes once space
// is back; the term it was about to adopt is never forgotten, because
// nothing proceeds before it is durable.
//
// At shutdown (halt) a write still failing ends the calling goroutine with
// runtime.Goexit: returning the error would make Raft panic, and returning
// success would claim a term that is not durable. Raft's goroutines exit
// through their deferred bookkeeping, so Shutdown completes.
type retryingStable struct {
	raft.StableStore
	log      *slog.Logger
	min, max time.Duration

	once   sync.Once
	haltCh chan struct{}
}

func newRetryingStable(s raft.StableStore, log *slog.Logger) *retryingStable {
	return &retryingStable{StableStore: s, log: log, min: 10 * time.Millisecond, max: time.Second, haltCh: make(chan struct{})}
}

// halt makes writes still failing give up (see the type's comment).
func (s *retryingStable) halt() { s.once.Do(func() { close(s.haltCh) }) }

// Set implements raft.StableStore.
func (s *retryingStable) Set(key, val []byte) error {
	return s.retry(string(key), func() error { return s.StableStore.Set(key, val) })
}

// SetUint64 implements raft.StableStore.
func (s *retryingStable) SetUint64(key []byte, val uint64) error {
	return s.retry(string(key), func() error { return s.StableStore.SetUint64(key, val) })
}

func (s *retryingStable) retry(key string, write func() error) error {
	err := retryWrite(s.log, "raft state "+key, s.min, s.max, s.haltCh, write)
	if err != nil {
		s.log.Error("shutting down with raft state not persisted", "key", key, "err", err)
		runtime.Goexit()
	}
	return nil
}

// retryWrite runs write until it succeeds, waiting min doubling to max
// between attempts; once halt is closed it makes one last attempt and
// returns its error.
func retryWrite(log *slog.Logger, what string, minWait, maxWait time.Duration, halt <-chan struct{}, write func() error) error {
	err := write()
	if err == nil {
		return nil
	}
	log.Error("cannot persist "+what+"; this agent waits (neither votes nor acknowledges) and retries until the write succeeds (free disk space)", "err", err)
	d := minWait
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-halt:
			t.Stop()
			return write()
		}
		if err = write(); err == nil {
			log.Info("persisted "+what+" after retrying", "attempts", attempt)
			return nil
		}
		d = min(2*d, maxWait)
	}
}

// retryingLogs wraps the Raft log store so that a follower whose StoreLogs
// fails (a full disk) retries instead of answering the leader "failed".
// With hashicorp/raft v1.7's pipelined replication such an answer
// deadlocked replication to that follower (hashicorp/raft#612; the agent
// now replicates without the pipeline, see raftGate.AppendEntriesPipeline).
// Retrying makes a full disk look like a slow follower, which Raft handles. On the leader a failure is returned at
// once: Raft then steps down, which is what a leader that cannot write
// should do. Once halted (shutdown) the error is returned.
type retryingLogs struct {
	raft.LogStore
	log      *slog.Logger
	leader   func() bool
	min, max time.Duration
	haltCh   <-chan struct{}
}

// StoreLog implements raft.LogStore.
func (l *retryingLogs) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

// IsMonotonic implements raft.MonotonicLogStore for the wrapped store (the
// embedded interface does not carry the method along).
func (l *retryingLogs) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// DeleteRange implements raft.LogStore. A follower retries a deletion of
// the log's tail that failed (the clear after installing a snapshot, a
// conflicting suffix) like a write: Raft ignores a failed clear and goes on
// as if the log were empty. The store hides and records the range meanwhile
// (logtrust.go). A failed prefix compaction is returned: it loses nothing.
func (l *retryingLogs) DeleteRange(lo, hi uint64) error {
	err := l.LogStore.DeleteRange(lo, hi)
	if err == nil || l.leader() || !(errors.Is(err, errTailUntrusted) || errors.Is(err, errLogUnavailable)) {
		return err
	}
	return retryWrite(l.log, "raft log deletion", l.min, l.max, l.haltCh, func() error { return l.LogStore.DeleteRange(lo, hi) })
}

// StoreLogs implements raft.LogStore.
func (l *retryingLogs) StoreLogs(logs []*raft.Log) error {
	err := l.LogStore.StoreLogs(logs)
	if err == nil || l.leader() {
		return err
	}
	return retryWrite(l.log, "raft log entries", l.min, l.max, l.haltCh, func() error { return l.LogStore.StoreLogs(logs) })
}
