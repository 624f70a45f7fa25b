package partition

import (
	"context"
	"time"
)

// periodic owns one goroutine that calls a function every interval until
// Close: the loop shape of the janitor and the disk guard.
type periodic struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs fn every interval until ctx ends or close is called.
func (p *periodic) start(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
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
	}()
}

// close stops the loop and waits for it; it is idempotent and a no-op
// before start.
func (p *periodic) close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}
