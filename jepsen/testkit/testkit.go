package testkit

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"
)

// maxPoll bounds WaitFor's polling interval.
const maxPoll = 20 * time.Millisecond

// WaitFor polls cond until it holds, failing t if d passes first. The
// polling interval starts at 1 ms and doubles up to 20 ms, so a condition
// that holds soon is seen soon and a slow one is not polled hot. It is a
// polling loop, never a synchronisation sleep.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	every := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(every)
		every = min(2*every, maxPoll)
	}
}

// SyncBuffer is a goroutine-safe bytes.Buffer for logs written by servers
// under test and read by the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// SameIDs reports whether got and want hold the same strings (IDs) in any
// order.
func SameIDs(got []string, want ...string) bool {
	g := slices.Sorted(slices.Values(got))
	w := slices.Sorted(slices.Values(want))
	return slices.Equal(g, w)
}
