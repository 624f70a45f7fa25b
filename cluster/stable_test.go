package cluster

import (
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fullDisk makes a store's writes fail with ENOSPC while it is full and
// counts the attempts.
type fullDisk struct {
	mu    sync.Mutex
	full  bool
	tries int
}

func (d *fullDisk) setFull(v bool) { d.mu.Lock(); d.full = v; d.mu.Unlock() }

func (d *fullDisk) attempts() int { d.mu.Lock(); defer d.mu.Unlock(); return d.tries }

func (d *fullDisk) write(fn func() error) error {
	d.mu.Lock()
	d.tries++
	full := d.full
	d.mu.Unlock()
	if full {
		return syscall.ENOSPC
	}
	return fn()
}

// waitsForSpace checks that a write whose result arrives on res keeps
// retrying while d is full and succeeds once space returns.
func waitsForSpace(t *testing.T, d *fullDisk, res <-chan error) {
	t.Helper()
	waitFor(t, 10*time.Second, "retries", func() bool { return d.attempts() >= 3 })
	select {
	case err := <-res:
		t.Fatalf("write returned %v while the disk was full", err)
	default:
	}
	d.setFull(false)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

// fullStable is an in-memory stable store whose writes fail while full.
type fullStable struct {
	raft.StableStore
	fullDisk
}

func (s *fullStable) SetUint64(k []byte, v uint64) error {
	return s.write(func() error { return s.StableStore.SetUint64(k, v) })
}

// hashicorp/raft panics when it cannot persist a term; the wrapper instead
// waits until the write succeeds, and at shutdown ends the calling
// goroutine without claiming success.
func TestRetryingStableWaitsForSpaceInsteadOfFailing(t *testing.T) {
	inner := &fullStable{StableStore: raft.NewInmemStore(), fullDisk: fullDisk{full: true}}
	s := newRetryingStable(inner, slog.New(slog.DiscardHandler))
	s.min, s.max = time.Millisecond, time.Millisecond

	res := make(chan error, 1)
	go func() { res <- s.SetUint64([]byte("CurrentTerm"), 7) }()
	waitsForSpace(t, &inner.fullDisk, res)
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
	fullDisk
}

func (s *fullLogs) StoreLogs(logs []*raft.Log) error {
	return s.write(func() error { return s.LogStore.StoreLogs(logs) })
}

// A follower retries a failed log write (hashicorp/raft's pipeline would
// never send it another entry after a failure answer); a leader gets the
// error at once (Raft steps down).
func TestRetryingLogsRetryOnFollowersOnly(t *testing.T) {
	inner := &fullLogs{LogStore: raft.NewInmemStore(), fullDisk: fullDisk{full: true}}
	var leader bool
	var mu sync.Mutex
	halt := make(chan struct{})
	l := &retryingLogs{LogStore: inner, log: slog.New(slog.DiscardHandler), min: time.Millisecond, max: time.Millisecond, haltCh: halt,
		leader: func() bool { mu.Lock(); defer mu.Unlock(); return leader }}

	res := make(chan error, 1)
	go func() { res <- l.StoreLogs([]*raft.Log{{Index: 1, Term: 1}}) }()
	waitsForSpace(t, &inner.fullDisk, res)
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
