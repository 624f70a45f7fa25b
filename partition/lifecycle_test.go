package partition

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/streamhouse/streamhouse/fsm"
)

// waitGoroutines polls (no timing assertion: only a deadline) until the
// process runs at most max goroutines.
func waitGoroutines(t *testing.T, max int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines, want at most %d", what, runtime.NumGoroutine(), max)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// produceEvery writes one record to every partition of topic in one call.
func (e *env) produceEvery(topic string, parts int32) {
	e.t.Helper()
	recs := make([]fsm.ProduceRecord, parts)
	for i := range recs {
		recs[i] = fsm.ProduceRecord{Partition: int32(i), Record: fsm.Record{Value: []byte("v")}}
	}
	if _, err := e.prod.Produce(context.Background(), topic, recs); err != nil {
		e.t.Fatal(err)
	}
}

// A deleted topic's batchers (goroutine, queue) are released without
// waiting for the idle timeout, and create/produce/delete cycles do not
// accumulate goroutines.
func TestProducerReleasesBatchersOfDeletedTopics(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100})
	const parts = 200
	baseline := runtime.NumGoroutine()
	for cycle := 0; cycle < 3; cycle++ {
		name := fmt.Sprintf("cycle-%d", cycle)
		e.topic(name, parts)
		e.produceEvery(name, parts)
		if err := e.admin.DeleteTopic(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		waitGoroutines(t, baseline+5, fmt.Sprintf("after create/produce/delete cycle %d of %d partitions", cycle, parts))
	}
}

// An idle batcher exits after IdleTimeout and is recreated on demand; Close
// leaves no goroutine behind.
func TestProducerRetiresIdleBatchers(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100, IdleTimeout: 20 * time.Millisecond})
	before := goleak.IgnoreCurrent() // the WAL's and the sweeper's
	const parts = 50
	e.topic("t", parts)
	baseline := runtime.NumGoroutine()
	for round := 0; round < 3; round++ {
		e.produceEvery("t", parts)
		waitGoroutines(t, baseline, fmt.Sprintf("idle batchers after round %d", round))
		if n := testutil.ToFloat64(e.prod.metrics.Batchers); n != 0 {
			t.Fatalf("streamhouse_produce_batchers = %v with every batcher retired", n)
		}
	}
	for p := int32(0); p < parts; p++ {
		if got := len(e.readAll("t", p)); got != 3 {
			t.Fatalf("partition %d holds %d records, want 3", p, got)
		}
	}
	e.stop()
	if err := goleak.Find(before); err != nil {
		t.Fatal(err)
	}
}

// Batchers retiring all the time (a 1 µs idle timeout) never lose, reorder
// or split a request: every call gets consecutive offsets, the partition
// stays dense, and each client's records are read back in its order.
func TestBatcherRetirementRacesWithSends(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100, IdleTimeout: time.Microsecond, MaxInFlight: 2})
	e.topic("t", 1)
	const clients, calls = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				recs := make([]fsm.ProduceRecord, 3)
				for j := range recs {
					recs[j] = fsm.ProduceRecord{Partition: 0, Record: fsm.Record{Value: []byte(fmt.Sprintf("%d/%d/%d", c, i, j))}}
				}
				offs, err := e.prod.Produce(context.Background(), "t", recs)
				if err != nil {
					errs <- err
					return
				}
				if offs[1].Offset != offs[0].Offset+1 || offs[2].Offset != offs[0].Offset+2 {
					errs <- fmt.Errorf("client %d call %d: offsets %+v", c, i, offs)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	vals := e.readAll("t", 0) // checks density
	if len(vals) != clients*calls*3 {
		t.Fatalf("read %d records, want %d", len(vals), clients*calls*3)
	}
	next := make([]int, clients)
	for _, v := range vals {
		var c, i, j int
		if _, err := fmt.Sscanf(v, "%d/%d/%d", &c, &i, &j); err != nil {
			t.Fatal(err)
		}
		if i*3+j != next[c] {
			t.Fatalf("client %d: record %d/%d out of order (expected position %d)", c, i, j, next[c])
		}
		next[c]++
	}
}

// Close while clients produce (and batchers retire): every call returns —
// acknowledged, or refused as unavailable / outcome unknown — and no
// goroutine the producer started outlives Close.
func TestProducerCloseDuringProduceLeavesNothingBehind(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 10, IdleTimeout: time.Microsecond})
	e.topic("t", 4)
	before := goleak.IgnoreCurrent()
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				recs := []fsm.ProduceRecord{{Partition: int32(i % 4), Record: fsm.Record{Value: []byte("v")}}}
				_, err := e.prod.Produce(context.Background(), "t", recs)
				if i == 10 {
					once.Do(func() { close(started) })
				}
				if err == nil {
					continue
				}
				if !errors.Is(err, fsm.ErrUnavailable) && !errors.Is(err, fsm.ErrOutcomeUnknown) {
					t.Errorf("client %d: %v", c, err)
				}
				return
			}
		}(c)
	}
	<-started
	e.stop()
	wg.Wait() // a hung Produce fails the test by timeout
	if err := goleak.Find(before); err != nil {
		t.Fatal(err)
	}
}
