package cluster

import (
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
	err := write()
	if err == nil {
		return nil
	}
	s.log.Error("cannot persist raft state; this agent waits (neither votes nor acknowledges) and retries until the write succeeds (free disk space)",
		"key", key, "err", err)
	d := s.min
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.haltCh:
			t.Stop()
			if err = write(); err == nil {
				return nil
			}
			s.log.Error("shutting down with raft state not persisted", "key", key, "err", err)
			runtime.Goexit()
		}
		if err = write(); err == nil {
			s.log.Info("raft state persisted after retrying", "key", key, "attempts", attempt)
			return nil
		}
		d = min(2*d, s.max)
	}
}
