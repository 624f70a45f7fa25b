package partition

import (
	"context"
	"fmt"
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
