package partition

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// group owns goroutines, in the manner of CockroachDB's stop.Stopper: Go
// starts a named goroutine with the group's context, Close cancels that
// context and waits for every goroutine the group started. After Close, Go
// starts nothing. Creating a group starts nothing. The partition service
// runs every goroutine of the package in one group: its loops, the
// producer's batchers and their proposals, and forwarded requests.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[string]int // by name, for Running
}

func newGroup() *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{ctx: ctx, cancel: cancel, running: map[string]int{}}
}

// Go runs fn(ctx) on a new goroutine that Close waits for; ctx ends when
// Close is called. It returns false (and runs nothing) once Close has
// begun.
func (g *group) Go(name string, fn func(ctx context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.running[name]++
	g.wg.Add(1)
	go func() {
		defer g.done(name)
		fn(g.ctx)
	}()
	return true
}

func (g *group) done(name string) {
	g.mu.Lock()
	if g.running[name]--; g.running[name] == 0 {
		delete(g.running, name)
	}
	g.mu.Unlock()
	g.wg.Done()
}

// Every runs fn every interval on a goroutine named name until Close.
func (g *group) Every(name string, interval time.Duration, fn func(ctx context.Context)) bool {
	return g.Go(name, func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	})
}

// Stopping is closed when Close begins.
func (g *group) Stopping() <-chan struct{} { return g.ctx.Done() }

// Close cancels the group's context and waits for every goroutine it
// started. It is idempotent and safe to call concurrently.
func (g *group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}

// Running lists the goroutines still running, as "name×count", sorted.
func (g *group) Running() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.running))
	for name, n := range g.running {
		out = append(out, fmt.Sprintf("%s×%d", name, n))
	}
	sort.Strings(out)
	return out
}
