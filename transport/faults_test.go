package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// wantRefused fails unless err is a dial *net.OpError wrapping
// ErrPeerBlocked (nothing was sent).
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var op *net.OpError
	if !errors.Is(err, ErrPeerBlocked) || !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("%s: %v, want a dial OpError wrapping ErrPeerBlocked", what, err)
	}
}

func wantTalk(t *testing.T, from, to *peerNode) {
	t.Helper()
	if err := raftEcho(from.m, to.addr(), "raft "+from.addr()); err != nil {
		t.Fatalf("raft %s -> %s: %v", from.addr(), to.addr(), err)
	}
	if err := rpcEcho(from.m, to.addr(), "rpc "+from.addr()); err != nil {
		t.Fatalf("rpc %s -> %s: %v", from.addr(), to.addr(), err)
	}
}

func wantNoDial(t *testing.T, from, to *peerNode) {
	t.Helper()
	_, err := from.m.RaftLayer().Dial(raft.ServerAddress(to.addr()), peerWait)
	wantRefused(t, "raft dial "+from.addr()+" -> "+to.addr(), err)
	wantRefused(t, "rpc "+from.addr()+" -> "+to.addr(), rpcEcho(from.m, to.addr(), "x"))
}

func TestFaultsAllowedMatrix(t *testing.T) {
	f := NewFaults()
	ok := func(from, to string) bool { return f.check(from, to) == nil }
	type pair struct{ from, to string }
	expect := func(step string, blocked ...pair) {
		t.Helper()
		isBlocked := map[pair]bool{}
		for _, p := range blocked {
			isBlocked[p] = true
		}
		for _, from := range []string{"a", "b", "c", "d"} {
			for _, to := range []string{"a", "b", "c", "d"} {
				if got, want := ok(from, to), !isBlocked[pair{from, to}]; got != want {
					t.Fatalf("%s: allowed(%s -> %s) = %v, want %v", step, from, to, got, want)
				}
			}
		}
	}
	expect("no faults")
	f.Block("a", "b")
	expect("block a->b", pair{"a", "b"})
	f.Isolate("c")
	expect("isolate c", pair{"a", "b"}, pair{"a", "c"}, pair{"b", "c"}, pair{"d", "c"}, pair{"c", "a"}, pair{"c", "b"}, pair{"c", "d"})
	f.Heal()
	expect("healed")
	f.Partition([]string{"a", "b"}, []string{"c"}) // d is in no group
	expect("partition ab|c", pair{"a", "c"}, pair{"b", "c"}, pair{"c", "a"}, pair{"c", "b"},
		pair{"a", "d"}, pair{"b", "d"}, pair{"c", "d"}, pair{"d", "a"}, pair{"d", "b"}, pair{"d", "c"})
	f.Partition([]string{"a"}, []string{"b", "c", "d"}) // replaces the first
	expect("partition a|bcd", pair{"a", "b"}, pair{"a", "c"}, pair{"a", "d"}, pair{"b", "a"}, pair{"c", "a"}, pair{"d", "a"})
	f.Partition()
	expect("partition removed")

	var nilFaults *Faults
	if nilFaults.check("a", "b") != nil || nilFaults.delay("a", "b") != 0 || nilFaults.takeDrop("a") {
		t.Fatal("a nil Faults injects something")
	}
	f.DropRPCResponses("a", 2)
	var drops []bool
	for range 3 {
		drops = append(drops, f.takeDrop("a"))
	}
	if !slices.Equal(drops, []bool{true, true, false}) || f.takeDrop("b") {
		t.Fatalf("DropRPCResponses(a, 2): drops %v (and b: %v), want exactly two responses to a", drops, f.takeDrop("b"))
	}
	f.DropRPCResponses("a", 5)
	f.Heal()
	if f.takeDrop("a") {
		t.Fatal("Heal left a response drop in force")
	}
}

func TestFaultsBlockIsAsymmetric(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b, c := startPeerNode(t, f), startPeerNode(t, f), startPeerNode(t, f)

	live := dialEchoing(t, a, b)
	defer live.Close()

	f.Block(a.addr(), b.addr())
	waitClosed(t, live, "live a->b raft stream after Block(a, b)")

	// a -> b: refused at dial, nothing reaches b.
	wantNoDial(t, a, b)
	if got := b.rpcCalls.Load(); got != 0 {
		t.Fatalf("b handled %d RPCs from a blocked sender", got)
	}

	// b -> a: the dial works and a receives b's bytes, but a's answers are lost.
	before := a.received.Load()
	conn, err := b.m.RaftLayer().Dial(raft.ServerAddress(a.addr()), peerWait)
	if err != nil {
		t.Fatalf("b -> a dial: %v", err)
	}
	defer conn.Close()
	if err := echoOn(conn, "request"); err == nil {
		t.Fatal("b heard a's answer through Block(a, b)")
	}
	waitFor(t, peerWait, "a to receive b's raft bytes", func() bool { return a.received.Load() > before })
	if err := rpcEcho(b.m, a.addr(), "request"); err == nil {
		t.Fatal("b got a's RPC response through Block(a, b)")
	}
	if got := a.rpcCalls.Load(); got != 1 {
		t.Fatalf("a handled %d RPCs from b, want 1 (processed, answer lost)", got)
	}

	// Everyone else is unaffected.
	wantTalk(t, a, c)
	wantTalk(t, c, a)
	wantTalk(t, b, c)
	wantTalk(t, c, b)

	f.Heal()
	wantTalk(t, a, b)
	wantTalk(t, b, a)
}

func TestFaultsPartitionAndIsolate(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b, c := startPeerNode(t, f), startPeerNode(t, f), startPeerNode(t, f)

	// Live connections across the coming cut, in both directions, and an
	// idle RPC keep-alive connection a -> c.
	ac, err := a.m.RaftLayer().Dial(raft.ServerAddress(c.addr()), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	ca, err := c.m.RaftLayer().Dial(raft.ServerAddress(a.addr()), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	for _, conn := range []net.Conn{ac, ca} {
		if err := echoOn(conn, "before"); err != nil {
			t.Fatal(err)
		}
	}
	wantTalk(t, a, c)

	f.Partition([]string{a.addr(), b.addr()}, []string{c.addr()})
	waitClosed(t, ac, "live a->c stream after the partition")
	waitClosed(t, ca, "live c->a stream after the partition")
	wantTalk(t, a, b)
	wantTalk(t, b, a)
	wantNoDial(t, a, c)
	wantNoDial(t, c, a)
	wantNoDial(t, c, b)
	wantTalk(t, c, c) // an agent can always reach itself

	// An agent in no group is cut off from everyone.
	f.Partition([]string{a.addr(), b.addr()})
	wantNoDial(t, c, a)
	f.Partition()
	wantTalk(t, c, a)

	f.Isolate(b.addr())
	wantNoDial(t, a, b)
	wantNoDial(t, b, a)
	wantNoDial(t, b, c)
	wantTalk(t, a, c)

	f.Heal()
	for _, from := range []*peerNode{a, b, c} {
		for _, to := range []*peerNode{a, b, c} {
			wantTalk(t, from, to)
		}
	}
}

func TestFaultsDelay(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b := startPeerNode(t, f), startPeerNode(t, f)
	f.Delay(a.addr(), b.addr(), 20*time.Millisecond)
	f.Delay(b.addr(), a.addr(), 20*time.Millisecond)
	// Only that delayed traffic still flows: no timing assertion.
	wantTalk(t, a, b)
	wantTalk(t, b, a)

	// A huge delay: a write deadline cuts it short as a timeout...
	live, err := a.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	f.Delay(a.addr(), b.addr(), time.Hour)
	_ = live.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = live.Write([]byte("late"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("delayed write past its deadline: %v, want a deadline error", err)
	}
	if _, err := a.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), 50*time.Millisecond); err == nil {
		t.Fatal("dial completed its handshake through a one-hour delay within 50ms")
	}
	// ...and Close interrupts it.
	_ = live.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := live.Write([]byte("late"))
		done <- err
	}()
	_ = live.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("delayed write after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(peerWait):
		t.Fatal("Close did not interrupt a delayed write")
	}
	f.Delay(a.addr(), b.addr(), 0)
	wantTalk(t, a, b)

	// Heal ends the wait of a write already delayed.
	f.Delay(a.addr(), b.addr(), time.Hour)
	go func() { done <- raftEcho(a.m, b.addr(), "healed") }()
	f.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("delayed echo after Heal: %v", err)
		}
	case <-time.After(peerWait):
		t.Fatal("Heal did not end a delayed write")
	}
}

// A blackhole holds traffic without closing anything: a write waits (its
// deadline fails it as a timeout, the connection stays open), a dial times
// out instead of being refused, and after Heal the same connection carries
// the bytes on.
func TestFaultsBlackholeHoldsWithoutClosing(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b, c := startPeerNode(t, f), startPeerNode(t, f), startPeerNode(t, f)
	live := dialEchoing(t, a, b)
	defer live.Close()

	f.Blackhole(b.addr())
	_ = live.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := live.Write([]byte("held")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write into a blackhole: %v, want it held until its deadline", err)
	}
	_ = live.SetWriteDeadline(time.Time{})
	_, err := a.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), 50*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrPeerBlocked) {
		t.Fatalf("dial into a blackhole: %v, want a timeout, not a refusal", err)
	}
	_, err = b.m.RaftLayer().Dial(raft.ServerAddress(c.addr()), 50*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("dial out of a blackhole: %v, want a timeout", err)
	}
	wantTalk(t, a, c)

	done := make(chan error, 1)
	go func() { done <- echoOn(live, "after") }()
	f.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held connection after Heal: %v", err)
		}
	case <-time.After(peerWait):
		t.Fatal("the held connection carried nothing after Heal")
	}
	wantTalk(t, a, b)
	wantTalk(t, b, c)
}

func TestFaultsDropRPCResponses(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b, c := startPeerNode(t, f), startPeerNode(t, f), startPeerNode(t, f)
	wantTalk(t, a, b) // a keep-alive connection a -> b exists beforehand
	base := b.rpcCalls.Load()

	f.DropRPCResponses(a.addr(), 2)
	if err := rpcEcho(c.m, b.addr(), "c is not affected"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		err := rpcEcho(a.m, b.addr(), "lost answer")
		if err == nil {
			t.Fatalf("dropped response #%d reached the caller", i+1)
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			t.Fatalf("dropped response #%d looks like a dial failure (%v): the request was sent", i+1, err)
		}
	}
	if got := b.rpcCalls.Load() - base; got != 3 {
		t.Fatalf("b's handler ran %d times, want 3 (1 from c, 2 dropped from a)", got)
	}
	if err := rpcEcho(a.m, b.addr(), "answered again"); err != nil {
		t.Fatalf("after the drops: %v", err)
	}
}

func TestFaultsInboundEnforcement(t *testing.T) {
	verifyNoPeerLeaks(t)
	// a has no fault injection of its own (its dials are not refused); b's
	// Faults block a -> b, so b closes a's connections at the handshake.
	a := startPeerNode(t, nil)
	f := NewFaults()
	b := startPeerNode(t, f)
	f.Block(a.addr(), b.addr())

	conn, err := a.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), peerWait)
	if err != nil {
		t.Fatalf("dial (the handshake has no answer, so it succeeds): %v", err)
	}
	defer conn.Close()
	waitClosed(t, conn, "a's stream at b, which refuses a as a sender")
	if err := rpcEcho(a.m, b.addr(), "x"); err == nil {
		t.Fatal("RPC from a blocked sender was answered")
	}
	if b.rpcCalls.Load() != 0 || b.received.Load() != 0 {
		t.Fatal("b processed traffic from a blocked sender")
	}
	// b -> a is allowed: b's dial goes through; a answers, but a's answer
	// is a -> b traffic, which b drops on read.
	if err := raftEcho(b.m, a.addr(), "y"); err == nil {
		t.Fatal("b read a's answer through Block(a, b)")
	}
	f.Heal()
	wantTalk(t, a, b)
}

// TestFaultsForwarderOutcomeClasses checks the contract PeerForwarder relies
// on: a refused dial is "definitely not applied", a lost response is
// "outcome unknown".
func TestFaultsForwarderOutcomeClasses(t *testing.T) {
	verifyNoPeerLeaks(t)
	f := NewFaults()
	a, b := startPeerNode(t, f), startPeerNode(t, f)
	var produced atomic.Int64
	b.m.HandleRPC(ProduceRPCHandler(localProducerFunc(func(_ context.Context, _ string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
		produced.Add(1)
		out := make([]fsm.RecordOffset, len(recs))
		for i, r := range recs {
			out[i] = fsm.RecordOffset{Partition: r.Partition, Offset: int64(i)}
		}
		return out, nil
	})))
	fw := &PeerForwarder{Client: a.m.RPCClient(), Resolve: func(string) (string, bool) { return b.addr(), true }}
	recs := []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("v")}}}
	ctx := context.Background()

	if _, err := fw.ForwardProduce(ctx, "b", "t", recs); err != nil {
		t.Fatal(err)
	}
	f.Isolate(b.addr())
	if _, err := fw.ForwardProduce(ctx, "b", "t", recs); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("forward to an isolated leader: %v, want ErrUnavailable", err)
	}
	f.Heal()
	f.DropRPCResponses(a.addr(), 1)
	if _, err := fw.ForwardProduce(ctx, "b", "t", recs); !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("forward whose answer was lost: %v, want ErrOutcomeUnknown", err)
	}
	if produced.Load() != 2 {
		t.Fatalf("leader produced %d times, want 2 (the dropped answer's write was applied)", produced.Load())
	}
}

// dialEchoing dials b's Raft layer from a and checks one echo goes
// through before any fault.
func dialEchoing(t *testing.T, a, b *peerNode) net.Conn {
	t.Helper()
	live, err := a.m.RaftLayer().Dial(raft.ServerAddress(b.addr()), peerWait)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoOn(live, "before"); err != nil {
		live.Close()
		t.Fatal(err)
	}
	return live
}
