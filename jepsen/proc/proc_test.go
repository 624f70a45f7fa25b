package proc

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func start(t *testing.T, script string) (*Proc, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "p.log")
	p, err := Start(exec.Command("sh", "-c", script), log, "starting sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p, log
}

func TestStopWithSignal(t *testing.T) {
	p, log := start(t, "echo hello; exec sleep 30")
	testkit.WaitFor(t, 5*time.Second, "output in the log", func() bool { return strings.Contains(LogTail(log, 1<<10), "hello") })
	if err := p.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if tail := LogTail(log, 1<<10); !strings.Contains(tail, ": starting sh\nhello\n") {
		t.Fatalf("log %q lacks banner and output", tail)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p, log := start(t, "trap '' TERM; echo trapped; while :; do sleep 0.05; done")
	testkit.WaitFor(t, 5*time.Second, "trap installed", func() bool { return strings.Contains(LogTail(log, 1<<10), "trapped") })
	err := p.Stop(syscall.SIGTERM, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want a killed error", err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
}

func TestWaitReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, _ := start(t, "exec sleep 30")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, time.Millisecond, TCP(l.Addr().String())); err != nil {
		t.Fatalf("WaitReady on a listening port: %v", err)
	}

	dead, _ := start(t, "exit 3")
	err = dead.WaitReady(ctx, time.Millisecond, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, ErrExited) {
		t.Fatalf("WaitReady on an exiting process = %v, want ErrExited", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	err = Poll(short, time.Millisecond, func(context.Context) error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("Poll past its deadline = %v, want the probe's last error", err)
	}
}

func TestFreePortBelowEphemeralRangeAndDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := FreePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < portLow || p >= portHigh || seen[p] {
			t.Fatalf("port %d: out of range or handed out twice", p)
		}
		seen[p] = true
	}
}
