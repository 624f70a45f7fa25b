package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/streamhouse/streamhouse/fsm"
)

// countingChecker is an ObjectChecker that counts its calls.
type countingChecker struct{ calls atomic.Int64 }

func (c *countingChecker) Check(context.Context) error {
	c.calls.Add(1)
	return nil
}

// The service runs its real goroutines — disk guard, object store check,
// pruner, sweeper, flusher, janitor, batchers, forwards — and Close stops
// every one of them.
func TestServiceCloseLeavesNoGoroutine(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.node.leader = true
	e.topic("t", 2)
	tp, _ := e.fsm.Topic("t")
	// Partition 1 is led elsewhere: its records are forwarded.
	if _, err := e.prop.Propose(context.Background(), fsm.Encode(&fsm.AssignLeader{TopicID: tp.ID, Partition: 1, Leader: "n2", ExpectedEpoch: 1})); err != nil {
		t.Fatal(err)
	}
	objects := &countingChecker{}
	reg := prometheus.NewRegistry()
	svc, err := New(Config{
		NodeID: "n1", Flusher: FlusherConfig{MaxAge: time.Millisecond, Interval: time.Millisecond},
		Janitor: JanitorConfig{Interval: time.Millisecond}, ReadinessInterval: time.Millisecond,
		DiskDirs: []string{t.TempDir()}, MinFreeDiskBytes: 1,
	}, Deps{FSM: e.fsm, Store: e.store, Node: e.node, Segments: e.segs, Objects: objects,
		Forwarder: &fakeForwarder{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(context.Background())
	out, err := svc.Producer().Produce(context.Background(), "t", []fsm.ProduceRecord{
		{Partition: 0, Record: fsm.Record{Value: []byte("local")}},
		{Partition: 1, Record: fsm.Record{Value: []byte("forwarded")}},
	})
	if err != nil || len(out) != 2 {
		t.Fatalf("produce: %v %v", out, err)
	}
	waitFor(t, 10*time.Second, "the flusher commits the local record", func() bool {
		p, _ := e.fsm.Partition(tp.ID, 0)
		return p.FlushedOffset == 1
	})
	waitFor(t, 10*time.Second, "the object store check repeats", func() bool { return objects.calls.Load() >= 2 })
	if ok, why := svc.Readiness().Ready(); !ok {
		t.Fatalf("not ready: %s", why)
	}
	if running := svc.tasks.Running(); !slices.Contains(running, "flusher×1") || !slices.Contains(running, "janitor×1") {
		t.Fatalf("running %v", running)
	}

	svc.Close()
	svc.Close() // idempotent
	if running := svc.tasks.Running(); len(running) != 0 {
		t.Fatalf("still running after Close: %v", running)
	}
	if _, err := svc.Producer().Produce(context.Background(), "t", []fsm.ProduceRecord{{Partition: 0}}); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("produce after Close: %v, want ErrUnavailable", err)
	}
	e.stop()
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t)
}

func TestNewNeedsItsDependencies(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("New without dependencies succeeded")
	}
}

func TestGroupRefusesAfterClose(t *testing.T) {
	g := newGroup()
	ran := make(chan struct{})
	if !g.Go("one", func(ctx context.Context) { close(ran); <-ctx.Done() }) {
		t.Fatal("Go refused before Close")
	}
	<-ran
	if got := g.Running(); !slices.Equal(got, []string{"one×1"}) {
		t.Fatalf("Running() = %v", got)
	}
	g.Close()
	if g.Go("two", func(context.Context) { t.Error("ran after Close") }) {
		t.Fatal("Go accepted after Close")
	}
	if got := g.Running(); len(got) != 0 {
		t.Fatalf("Running() after Close = %v", got)
	}
}

// classifyOutcome never reports a request as safe to retry when any part
// of it may have been applied.
func TestClassifyOutcome(t *testing.T) {
	definite := fmt.Errorf("%w: not leader", fsm.ErrUnavailable)
	unknown := fmt.Errorf("%w: timeout", fsm.ErrOutcomeUnknown)
	for _, c := range []struct {
		name      string
		errs      []error
		submitErr error
		want      error // nil: success; else the error it must wrap
		same      bool  // the answer is errs' first error itself
	}{
		{name: "all applied", errs: []error{nil, nil}},
		{name: "one unit applied", errs: []error{nil}},
		{name: "all definite", errs: []error{definite, definite}, want: fsm.ErrUnavailable, same: true},
		{name: "one applied, one definite", errs: []error{nil, definite}, want: fsm.ErrOutcomeUnknown},
		{name: "one applied, one unknown", errs: []error{unknown, nil}, want: fsm.ErrOutcomeUnknown},
		{name: "none applied, one unknown", errs: []error{definite, unknown}, want: fsm.ErrOutcomeUnknown},
		{name: "all unknown", errs: []error{unknown}, want: fsm.ErrOutcomeUnknown},
		{name: "refused before any unit", submitErr: definite, want: fsm.ErrUnavailable},
		{name: "refused after an applied unit", errs: []error{nil}, submitErr: definite, want: fsm.ErrOutcomeUnknown},
		{name: "refused after a definite failure", errs: []error{definite}, submitErr: definite, want: fsm.ErrUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := classifyOutcome(c.errs, c.submitErr)
			switch {
			case c.want == nil && got != nil:
				t.Fatalf("got %v, want success", got)
			case c.want != nil && !errors.Is(got, c.want):
				t.Fatalf("got %v, want an error wrapping %v", got, c.want)
			case errors.Is(c.want, fsm.ErrUnavailable) && errors.Is(got, fsm.ErrOutcomeUnknown):
				t.Fatalf("got %v: a definite failure reported as unknown", got)
			case c.same && got != c.errs[0]:
				t.Fatalf("got %v, want the first error itself", got)
			}
		})
	}
}
