package workload

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// fakeSender completes sends according to outcome; sends it holds back
// (hold) complete only when close is called, as a client failing its
// in-flight records on close does.
type fakeSender struct {
	outcome func(p int32, v int64) (sendOutcome, bool) // false: hold until close
	mu      sync.Mutex
	held    []func(sendOutcome)
	closed  bool
}

func (s *fakeSender) send(p int32, v int64, done func(sendOutcome)) {
	o, now := s.outcome(p, v)
	if now {
		go done(o)
		return
	}
	s.mu.Lock()
	s.held = append(s.held, done)
	s.mu.Unlock()
}

func (s *fakeSender) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, d := range s.held {
		go d(sendOutcome{t: history.Info, off: -1, err: "closed"})
	}
	s.held = nil
}

func newTestWorkload(t *testing.T) *Workload {
	t.Helper()
	rec, err := history.NewRecorder("")
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Topic: "jepsen", Partitions: 2}, nil, rec)
}

// completions indexes a history's completions by invocation.
func completions(ops []history.Op) map[int64]history.Op {
	out := map[int64]history.Op{}
	for _, op := range ops {
		if op.Type != history.Invoke {
			out[op.Inv] = op
		}
	}
	return out
}

// TestProduceWithRecordsEveryOutcome: every send is invoked with a unique
// ascending value per partition and completed exactly once with its
// outcome; sends still held when the workload stops complete through the
// sender's close, which produceWith waits for.
func TestProduceWithRecordsEveryOutcome(t *testing.T) {
	w := newTestWorkload(t)
	var n int
	s := &fakeSender{outcome: func(p int32, v int64) (sendOutcome, bool) {
		n++
		switch {
		case n == 3:
			return sendOutcome{t: history.Fail, off: -1, err: "refused"}, true
		case n > 20:
			return sendOutcome{}, false
		}
		return sendOutcome{t: history.OK, off: v - 1}, true
	}}
	done := make(chan bool)
	go func() { done <- w.produceWith(s, 7, rand.New(rand.NewPCG(1, 2)), time.Millisecond) }()
	testkit.WaitFor(t, 10*time.Second, "five sends held", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.held) >= 5 })
	close(w.stop)
	if fatal := <-done; fatal {
		t.Fatal("no fatal outcome, yet produceWith says fatal")
	}
	if !s.closed {
		t.Fatal("the sender was not closed")
	}
	ops := w.rec.Ops()
	compl := completions(ops)
	seen := map[int32]map[int64]bool{0: {}, 1: {}}
	var invoked, ok, fail, info int
	for _, op := range ops {
		if op.Type != history.Invoke {
			continue
		}
		invoked++
		if op.Process != 7 || op.F != history.FSend || seen[op.P][op.V] {
			t.Fatalf("bad invocation %+v", op)
		}
		seen[op.P][op.V] = true
		c, ok2 := compl[op.Index]
		if !ok2 {
			t.Fatalf("send %+v never completed", op)
		}
		switch c.Type {
		case history.OK:
			ok++
			if c.O != op.V-1 {
				t.Fatalf("ok completion %+v of %+v: wrong offset", c, op)
			}
		case history.Fail:
			fail++
		case history.Info:
			info++
		}
	}
	if invoked != 20+info || ok != 19 || fail != 1 || info < 5 || int64(ok) != w.Acks() {
		t.Fatalf("invoked %d, ok %d, fail %d, info %d, acks %d", invoked, ok, fail, info, w.Acks())
	}
}

// TestProduceWithStopsOnFatal: a fatal outcome ends the session (true).
func TestProduceWithStopsOnFatal(t *testing.T) {
	w := newTestWorkload(t)
	s := &fakeSender{outcome: func(int32, int64) (sendOutcome, bool) {
		return sendOutcome{t: history.Info, off: -1, err: "fenced", fatal: true}, true
	}}
	if !w.produceWith(s, 1, rand.New(rand.NewPCG(1, 2)), time.Millisecond) {
		t.Fatal("a fatal outcome did not end the session")
	}
}

type fakeReader struct {
	recs []history.Rec
	err  error
}

func (r fakeReader) poll(context.Context) ([]history.Rec, error) { return r.recs, r.err }
func (r fakeReader) close()                                      {}

// TestPollRecordsAndReset: records (even with an error) make an ok poll;
// an error alone a failed one; a reset ends the reader.
func TestPollRecordsAndReset(t *testing.T) {
	w := newTestWorkload(t)
	w.cfg.Client = ClientKafka
	recs := []history.Rec{{P: 1, O: 4, V: 9}}
	if !w.poll(context.Background(), fakeReader{recs: recs, err: errors.New("partition 0: slow")}, 3) {
		t.Fatal("a plain error ended the reader")
	}
	close(w.stop) // the failed poll's pause returns at once
	if w.poll(context.Background(), fakeReader{err: errors.Join(errReaderReset, errors.New("out of range"))}, 3) {
		t.Fatal("a reset did not end the reader")
	}
	if w.ReaderResets() != 1 {
		t.Fatalf("reader resets %d", w.ReaderResets())
	}
	compl := completions(w.rec.Ops())
	first, second := compl[0], compl[2]
	if first.Type != history.OK || len(first.Recs) != 1 || first.Recs[0] != recs[0] || first.Err == "" {
		t.Fatalf("first poll %+v", first)
	}
	if second.Type != history.Fail || second.Err == "" {
		t.Fatalf("second poll %+v", second)
	}
}
