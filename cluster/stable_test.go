package cluster

import (
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fullStable is an in-memory stable store whose writes fail while full.
type fullStable struct {
	raft.StableStore
	mu    sync.Mutex
	full  bool
	tries int
}

func (s *fullStable) setFull(v bool) { s.mu.Lock(); s.full = v; s.mu.Unlock() }

func (s *fullStable) attempts() int { s.mu.Lock(); defer s.mu.Unlock(); return s.tries }

func (s *fullStable) SetUint64(k []byte, v uint64) error {
	s.mu.Lock()
	s.tries++
	full := s.full
	s.mu.Unlock()
	if full {
		return syscall.ENOSPC
	}
	return s.StableStore.SetUint64(k, v)
}

// hashicorp/raft panics when it cannot persist a term; the wrapper instead
// waits until the write succeeds, and at shutdown ends the calling
// goroutine without claiming success.
func TestRetryingStableWaitsForSpaceInsteadOfFailing(t *testing.T) {
	inner := &fullStable{StableStore: raft.NewInmemStore(), full: true}
	s := newRetryingStable(inner, slog.New(slog.DiscardHandler))
	s.min, s.max = time.Millisecond, time.Millisecond

	res := make(chan error, 1)
	go func() { res <- s.SetUint64([]byte("CurrentTerm"), 7) }()
	waitFor(t, 10*time.Second, "retries", func() bool { return inner.attempts() >= 3 })
	select {
	case err := <-res:
		t.Fatalf("SetUint64 returned %v while the disk was full", err)
	default:
	}
	inner.setFull(false)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if v, _ := inner.GetUint64([]byte("CurrentTerm")); v != 7 {
		t.Fatalf("term = %d", v)
	}

	inner.setFull(true)
	returned, exited := false, make(chan struct{})
	go func() {
		defer close(exited)
		_ = s.SetUint64([]byte("CurrentTerm"), 8)
		returned = true
	}()
	waitFor(t, 10*time.Second, "retries", func() bool { return inner.attempts() >= 8 })
	s.halt()
	<-exited
	if returned {
		t.Fatal("a write that never succeeded returned at shutdown")
	}
	if v, _ := inner.GetUint64([]byte("CurrentTerm")); v != 7 {
		t.Fatalf("term = %d after a failed write", v)
	}
}

// fullLogs is an in-memory log store whose writes fail while full.
type fullLogs struct {
	raft.LogStore
	mu    sync.Mutex
	full  bool
	tries int
}

func (s *fullLogs) setFull(v bool) { s.mu.Lock(); s.full = v; s.mu.Unlock() }

func (s *fullLogs) attempts() int { s.mu.Lock(); defer s.mu.Unlock(); return s.tries }

func (s *fullLogs) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	s.tries++
	full := s.full
	s.mu.Unlock()
	if full {
		return syscall.ENOSPC
	}
	return s.LogStore.StoreLogs(logs)
}

// A follower retries a failed log write (hashicorp/raft's pipeline would
// never send it another entry after a failure answer); a leader gets the
// error at once (Raft steps down).
func TestRetryingLogsRetryOnFollowersOnly(t *testing.T) {
	inner := &fullLogs{LogStore: raft.NewInmemStore(), full: true}
	var leader bool
	var mu sync.Mutex
	halt := make(chan struct{})
	l := &retryingLogs{LogStore: inner, log: slog.New(slog.DiscardHandler), min: time.Millisecond, max: time.Millisecond, haltCh: halt,
		leader: func() bool { mu.Lock(); defer mu.Unlock(); return leader }}

	res := make(chan error, 1)
	go func() { res <- l.StoreLogs([]*raft.Log{{Index: 1, Term: 1}}) }()
	waitFor(t, 10*time.Second, "retries", func() bool { return inner.attempts() >= 3 })
	select {
	case err := <-res:
		t.Fatalf("follower StoreLogs returned %v while the disk was full", err)
	default:
	}
	inner.setFull(false)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if last, _ := inner.LastIndex(); last != 1 {
		t.Fatalf("last index %d", last)
	}

	inner.setFull(true)
	mu.Lock()
	leader = true
	mu.Unlock()
	if err := l.StoreLog(&raft.Log{Index: 2, Term: 1}); err == nil {
		t.Fatal("leader StoreLog succeeded on a full disk")
	}
	mu.Lock()
	leader = false
	mu.Unlock()
	close(halt)
	if err := l.StoreLog(&raft.Log{Index: 2, Term: 1}); err == nil {
		t.Fatal("halted follower StoreLog succeeded on a full disk")
	}
}
