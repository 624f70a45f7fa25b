package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

// A committed batch that cannot be written to the WAL (ENOSPC) must not
// crash the agent or be skipped: Apply waits and retries, and once space
// returns the batch is materialised exactly once and acknowledged.
func TestENOSPCDuringMaterialiseIsRetried(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	e.produce("t", 0, "a")

	var attempts atomic.Int64
	e.fs.SetHook(func(op wal.Op, _ string) error {
		if op != wal.OpWrite {
			return nil
		}
		attempts.Add(1)
		return syscall.ENOSPC
	})
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		_, err := e.prod.Produce(context.Background(), "t", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("b")}}})
		done <- err
	}()
	// The write is attempted again and again while the disk is full.
	waitFor(t, 10*time.Second, "retried WAL writes", func() bool {
		select {
		case err := <-done:
			t.Fatalf("produce returned while the disk was full: %v", err)
		default:
		}
		return attempts.Load() >= 3
	})
	if got := e.readAll("t", 0); len(got) != 1 || got[0] != "a" {
		t.Fatalf("records readable while stalled = %q, want [a]", got)
	}
	e.fs.SetHook(nil) // space returns
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("produce after space returned: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("produce did not complete after space returned")
	}
	e.produce("t", 0, "c")
	if got := e.readAll("t", 0); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("records = %q, want [a b c]", got)
	}
}

// Below the free-space floor produce is refused as "not written, retry"
// (plain and idempotent), nothing is proposed, and it is accepted again
// once space is back; the guard tells the agent about both flips.
func TestDiskGuardRefusesProduceBelowMinFree(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	var free atomic.Uint64
	free.Store(100 << 20)
	var flips []bool
	g := newDiskGuard(DiskGuardConfig{Dirs: []string{"/data", "/wal"}, MinFree: 64 << 20,
		Statfs: func(dir string) (uint64, error) {
			if dir == "/wal" {
				return free.Load(), nil
			}
			return 1 << 40, nil
		},
		OnChange: func(low bool) { flips = append(flips, low) }}, nil)
	e.build(g)
	g.Check()
	e.produce("t", 0, "a")

	free.Store(10 << 20)
	g.Check()
	if low, why := g.Low(); !low || !strings.Contains(why, "/wal") || !strings.Contains(why, "MIN_FREE_DISK_BYTES") {
		t.Fatalf("Low() = %v %q", low, why)
	}
	before := e.prop.proposals.Load()
	_, err := e.prod.Produce(context.Background(), "t", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("b")}}})
	if !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("produce below the floor: %v, want ErrUnavailable", err)
	}
	pid, err := e.prod.InitProducer(context.Background(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.prod.ProduceIdempotent(context.Background(), fsm.IdempotentBatch{Topic: "t", Partition: 0, Producer: pid,
		Records: []fsm.Record{{Value: []byte("c")}}})
	if !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("idempotent produce below the floor: %v, want ErrUnavailable", err)
	}
	if n := e.prop.proposals.Load() - before; n != 1 { // InitProducer only
		t.Fatalf("%d proposals while refusing, want 1 (InitProducer)", n)
	}

	free.Store(100 << 20)
	g.Check()
	e.produce("t", 0, "d")
	if got := e.readAll("t", 0); fmt.Sprint(got) != "[a d]" {
		t.Fatalf("records = %q", got)
	}
	if fmt.Sprint(flips) != "[true false]" {
		t.Fatalf("OnChange flips = %v, want [true false]", flips)
	}
}

// While the node reports a stall on local storage (the FSM's, or its own
// Raft log write failing: nothing new applies here), produce is refused as
// "not written, retry" before anything is proposed, and accepted again once
// the stall ends.
func TestStorageStallRefusesProduce(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	e.build(stallAdmission{e.node})
	e.produce("t", 0, "a")

	e.node.stall = &fsm.StallStatus{Index: 42, Err: errors.New("cannot store raft log entries from 42 locally")}
	before := e.prop.proposals.Load()
	_, err := e.prod.Produce(context.Background(), "t", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("b")}}})
	if !errors.Is(err, fsm.ErrUnavailable) || !strings.Contains(err.Error(), "raft log entries from 42") {
		t.Fatalf("produce during a storage stall: %v, want ErrUnavailable with the reason", err)
	}
	if n := e.prop.proposals.Load() - before; n != 0 {
		t.Fatalf("%d proposals while refusing, want 0", n)
	}

	e.node.stall = nil
	e.produce("t", 0, "c")
	if got := e.readAll("t", 0); fmt.Sprint(got) != "[a c]" {
		t.Fatalf("records = %q, want [a c]", got)
	}
}
