package s3seg_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
)

func fetchOf(data []byte, calls *atomic.Int32) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		return data, nil
	}
}

func TestCacheLRUByBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := s3seg.NewCache(100, reg, s3seg.RawSize)
	var calls atomic.Int32
	get := func(key string, size int) []byte {
		t.Helper()
		b, err := c.Get(bg, key, 0, int64(size), fetchOf(bytes.Repeat([]byte(key), size), &calls))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	get("A", 40)
	get("B", 40)
	if calls.Load() != 2 || c.Size() != 80 || c.Len() != 2 {
		t.Fatalf("after 2 misses: calls %d size %d len %d", calls.Load(), c.Size(), c.Len())
	}
	if b := get("A", 40); b[0] != 'A' || calls.Load() != 2 {
		t.Fatal("A was not served from the cache")
	}
	get("C", 40) // 120 bytes > 100: evict the least recently used, B
	if c.Contains("B", 0, 40) || !c.Contains("A", 0, 40) || !c.Contains("C", 0, 40) {
		t.Fatal("eviction did not remove exactly the least recently used entry")
	}
	if c.Size() != 80 {
		t.Fatalf("size %d after eviction, want 80", c.Size())
	}
	get("D", 100) // exactly the budget: evicts everything else
	if c.Len() != 1 || c.Size() != 100 {
		t.Fatalf("len %d size %d, want 1 entry of 100 bytes", c.Len(), c.Size())
	}
	get("E", 101) // larger than the budget: returned, not stored
	if c.Contains("E", 0, 101) || !c.Contains("D", 0, 100) {
		t.Fatal("an entry larger than the budget was stored or evicted others")
	}
	// Same object, different range: a different entry.
	if _, err := c.Get(bg, "D", 1, 100, fetchOf(make([]byte, 100), &calls)); err != nil {
		t.Fatal(err)
	}
	if c.Contains("D", 0, 100) {
		t.Fatal("(D,0,100) should have been evicted by (D,1,100)")
	}

	if h := testkit.Metric(t, reg, "streamhouse_segment_cache_hits_total"); h != 1 {
		t.Errorf("hits = %v, want 1", h)
	}
	if m := testkit.Metric(t, reg, "streamhouse_segment_cache_misses_total"); m != 6 {
		t.Errorf("misses = %v, want 6", m)
	}
	if e := testkit.Metric(t, reg, "streamhouse_segment_cache_evictions_total"); e != 4 {
		t.Errorf("evictions = %v, want 4", e)
	}
	if b := testkit.Metric(t, reg, "streamhouse_segment_cache_bytes"); b != 100 {
		t.Errorf("bytes gauge = %v, want 100", b)
	}
	c.DropObject("D")
	if c.Len() != 0 || testkit.Metric(t, reg, "streamhouse_segment_cache_bytes") != 0 {
		t.Fatal("DropObject left entries")
	}
}

func TestCacheDisabledAndNil(t *testing.T) {
	var calls atomic.Int32
	for _, c := range []*s3seg.Cache[[]byte]{s3seg.NewCache(0, nil, s3seg.RawSize), nil} {
		for range 3 {
			if _, err := c.Get(bg, "k", 0, 1, fetchOf([]byte("x"), &calls)); err != nil {
				t.Fatal(err)
			}
		}
		if c.Len() != 0 || c.Enabled() {
			t.Fatal("disabled cache stored data")
		}
	}
	if calls.Load() != 6 {
		t.Fatalf("%d fetches, want 6", calls.Load())
	}
}

func TestCacheErrorsNotCached(t *testing.T) {
	c := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	boom := errors.New("boom")
	n := 0
	fetch := func(context.Context) ([]byte, error) {
		n++
		if n == 1 {
			return []byte("partial"), boom
		}
		return []byte("ok"), nil
	}
	if b, err := c.Get(bg, "k", 0, 2, fetch); !errors.Is(err, boom) || b != nil {
		t.Fatalf("first Get = %q, %v; want nil, boom", b, err)
	}
	if b, err := c.Get(bg, "k", 0, 2, fetch); err != nil || string(b) != "ok" {
		t.Fatalf("second Get = %q, %v", b, err)
	}
	if n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// blockingFetch returns a fetch that signals started and then waits for
// release (or its context).
func blockingFetch(data []byte, calls *atomic.Int32, started chan<- struct{}, release <-chan struct{}) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		calls.Add(1)
		started <- struct{}{}
		select {
		case <-release:
			return data, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func TestCacheSingleflight(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := s3seg.NewCache(1<<20, reg, s3seg.RawSize)
	var calls atomic.Int32
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	fetch := blockingFetch([]byte("payload"), &calls, started, release)
	const n = 8
	results := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0], errs[0] = c.Get(bg, "obj", 10, 7, fetch)
	}()
	<-started
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.Get(bg, "obj", 10, 7, fetch)
		}()
	}
	waitFor(t, 10*time.Second, "all callers to join the fetch", func() bool { return c.Waiters("obj", 10, 7) == n-1 })
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d fetches for %d concurrent identical misses, want 1", calls.Load(), n)
	}
	for i := range n {
		if errs[i] != nil || string(results[i]) != "payload" {
			t.Fatalf("caller %d: %q, %v", i, results[i], errs[i])
		}
	}
	if m := testkit.Metric(t, reg, "streamhouse_segment_cache_misses_total"); m != n {
		t.Fatalf("misses = %v, want %d", m, n)
	}
	if b, err := c.Get(bg, "obj", 10, 7, fetch); err != nil || string(b) != "payload" || calls.Load() != 1 {
		t.Fatal("result of the shared fetch was not cached")
	}
}

func TestCacheWaiterCancel(t *testing.T) {
	c := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	var calls atomic.Int32
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	fetch := blockingFetch([]byte("x"), &calls, started, release)
	leader := make(chan error, 1)
	go func() {
		_, err := c.Get(bg, "k", 0, 1, fetch)
		leader <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(bg)
	waiter := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k", 0, 1, fetch)
		waiter <- err
	}()
	waitFor(t, 10*time.Second, "the waiter to join", func() bool { return c.Waiters("k", 0, 1) == 1 })
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter: %v", err)
	}
	if got := c.Waiters("k", 0, 1); got != 0 {
		t.Fatalf("waiters = %d after cancel, want 0", got)
	}
	close(release)
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	if !c.Contains("k", 0, 1) {
		t.Fatal("leader's result not cached")
	}
}

func TestCacheLeaderCancelWaiterRetries(t *testing.T) {
	c := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	var calls atomic.Int32
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	fetch := blockingFetch([]byte("x"), &calls, started, release)
	ctx, cancel := context.WithCancel(bg)
	leader := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k", 0, 1, fetch)
		leader <- err
	}()
	<-started
	waiter := make(chan []byte, 1)
	go func() {
		b, err := c.Get(bg, "k", 0, 1, fetch)
		if err != nil {
			b = []byte(err.Error())
		}
		waiter <- b
	}()
	waitFor(t, 10*time.Second, "the waiter to join", func() bool { return c.Waiters("k", 0, 1) == 1 })
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	<-started // the waiter took over with its own fetch
	close(release)
	if b := <-waiter; string(b) != "x" {
		t.Fatalf("waiter got %q, want a retried fetch", b)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d fetches, want 2", calls.Load())
	}
}

func TestCacheRegistrationTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := s3seg.NewCache(10, reg, s3seg.RawSize)
	b := s3seg.NewCache(10, reg, s3seg.RawSize) // same registry: collectors are shared, no panic
	var calls atomic.Int32
	if _, err := a.Get(bg, "k", 0, 1, fetchOf([]byte("x"), &calls)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(bg, "k", 0, 1, fetchOf([]byte("x"), &calls)); err != nil {
		t.Fatal(err)
	}
	if m := testkit.Metric(t, reg, "streamhouse_segment_cache_misses_total"); m != 2 {
		t.Fatalf("misses = %v, want 2", m)
	}
}

// TestCacheDropDuringFetch: an object deleted while one of its blocks is
// being fetched does not get that block cached afterwards (it would hold
// budget for an object nobody can reference).
func TestCacheDropDuringFetch(t *testing.T) {
	c := s3seg.NewCache(1<<20, nil, s3seg.RawSize)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(bg, "obj", 0, 10, func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return make([]byte, 10), nil
		})
		done <- err
	}()
	<-started
	c.DropObject("obj")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 || c.Contains("obj", 0, 10) {
		t.Fatalf("a block of a dropped object was cached after the drop: len %d", c.Len())
	}
	// A fetch that starts after the drop is cached as usual.
	if _, err := c.Get(bg, "obj2", 0, 10, func(context.Context) ([]byte, error) { return make([]byte, 10), nil }); err != nil || c.Len() != 1 {
		t.Fatalf("later fetch: err %v len %d", err, c.Len())
	}
}

// TestCacheMaxEntryBytes: with WithMaxEntryBytes a value heavier than the
// bound is returned but not stored, so one huge block cannot flush the rest.
func TestCacheMaxEntryBytes(t *testing.T) {
	c := s3seg.NewCache(100, nil, s3seg.RawSize, s3seg.WithMaxEntryBytes(25))
	for _, n := range []int64{20, 30} {
		if _, err := c.Get(bg, "o", 0, n, func(context.Context) ([]byte, error) { return make([]byte, n), nil }); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 1 || !c.Contains("o", 0, 20) || c.Contains("o", 0, 30) {
		t.Fatalf("len %d: want only the 20-byte value cached", c.Len())
	}
}
