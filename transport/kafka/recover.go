package kafka

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A bug in a request handler must not take the agent down (a panic in any
// goroutine ends the process). The request goroutine recovers its own
// panics (Server.handle); the worker goroutines of one request (a produce
// or fetch per partition) hand theirs to it through a workerPanics, which
// re-raises the first after the workers are done. Either way the
// connection is closed as after a protocol error: its client sees a
// broken connection, which Kafka clients treat as "outcome unknown" and
// retry (an idempotent produce is deduplicated).

// workerPanic is a panic caught in a worker goroutine, with its stack.
type workerPanic struct {
	value any
	stack []byte
}

// workerPanics collects the first panic of a request's workers.
type workerPanics struct{ first atomic.Pointer[workerPanic] }

// catch is deferred by every worker goroutine; stop (if not nil) ends the
// other workers' waits, so the panic is re-raised without waiting out a
// long poll.
func (w *workerPanics) catch(stop func()) {
	if p := recover(); p != nil {
		w.first.CompareAndSwap(nil, &workerPanic{value: p, stack: debug.Stack()})
		if stop != nil {
			stop()
		}
	}
}

// rethrow re-raises a worker's panic in the request goroutine (after the
// workers' WaitGroup is done).
func (w *workerPanics) rethrow() {
	if p := w.first.Load(); p != nil {
		panic(p)
	}
}

// recoverRequest turns a panic of a request's handler into an error that
// closes the connection, and logs it.
func (s *Server) recoverRequest(key int16, err *error) {
	p := recover()
	if p == nil {
		return
	}
	stack := debug.Stack()
	if wp, ok := p.(*workerPanic); ok {
		p, stack = wp.value, wp.stack
	}
	name := kmsg.NameForKey(key)
	s.cfg.Logger.Error("panic in Kafka handler", "api", name, "panic", fmt.Sprint(p), "stack", string(stack))
	*err = fmt.Errorf("%w: the %s handler failed (see the agent log)", errProtocol, name)
}
