package natsload

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport/client"
)

// freePort is a loopback TCP port nobody listened on a moment ago.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs a one-node JetStream server from Cluster's config and
// returns its URL; the test stops it.
func startServer(t *testing.T, bin string) string {
	c := Cluster{Nodes: 1, Dir: t.TempDir(), ClientPort: freePort(t), RoutePort: freePort(t), MonitorPort: freePort(t)}
	path := filepath.Join(t.TempDir(), "n1.conf")
	if err := os.WriteFile(path, []byte(c.Config(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := c.URLs()[0]
	testkit.WaitFor(t, 20*time.Second, "nats-server accepts clients", func() bool {
		nc, err := nats.Connect(url)
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
	return url
}

// TestSendWaitsForEveryAck publishes batches through Target into a real
// one-node JetStream (the pinned server; without it the test says so in
// its log and checks nothing) and finds every record in the stream.
func TestSendWaitsForEveryAck(t *testing.T) {
	bin := natsServer(t)
	if bin == "" {
		t.Log("nats-server not installed (make bench-compare installs it): Target not exercised")
		return
	}
	url := startServer(t, bin)
	tg, err := Dial([]string{url}, 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	ctx := context.Background()
	if err := tg.EnsureStream(ctx, "bench", 1); err != nil {
		t.Fatal(err)
	}
	recs := make([]client.Record, 50)
	for i := range recs {
		recs[i] = client.Record{Value: []byte("0123456789")}.ToPartition(int32(i % 4))
	}
	for w := 0; w < 4; w++ {
		if _, err := tg.Send(ctx, w, "bench", recs); err != nil {
			t.Fatal(err)
		}
	}
	// every Send returned after its acks: the stream holds all 200 now
	s, err := tg.js[0].Stream(ctx, "bench")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 200 {
		t.Fatalf("stream holds %d messages, want 200", info.State.Msgs)
	}
	if n := info.State.NumSubjects; n != 4 {
		t.Fatalf("stream has %d subjects, want one per partition (4)", n)
	}
	if _, err := tg.Fetch(ctx, client.FetchRequest{}); err != ErrNoFetch {
		t.Fatalf("Fetch: %v", err)
	}
}
