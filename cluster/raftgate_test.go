package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gatePair returns a sender transport connected to a gated receiver.
func gatePair(t *testing.T) (*raft.InmemTransport, *raftGate, raft.ServerAddress) {
	t.Helper()
	_, sender := raft.NewInmemTransportWithTimeout("", 2*time.Second)
	addr, inner := raft.NewInmemTransportWithTimeout("", 2*time.Second)
	sender.Connect(addr, inner)
	g := newRaftGate(inner, slog.New(slog.DiscardHandler))
	g.start()
	t.Cleanup(func() {
		_ = g.Close()
		_ = sender.Close()
	})
	return sender, g, addr
}

func TestRaftGateRefusesEveryRPCWhileNotAdmitted(t *testing.T) {
	sender, g, addr := gatePair(t)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("b"), Addr: []byte("b")}

	var vote raft.RequestVoteResponse
	if err := sender.RequestVote("x", addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 7, LastLogIndex: 3, LastLogTerm: 2}, &vote); err != nil {
		t.Fatalf("request vote: %v", err)
	}
	if vote.Granted || vote.Term != 7 {
		t.Errorf("vote while not admitted: %+v, want denied at the candidate's term", vote)
	}
	var pre raft.RequestPreVoteResponse
	if err := sender.RequestPreVote("x", addr, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 8}, &pre); err != nil {
		t.Fatalf("request pre-vote: %v", err)
	}
	if pre.Granted || pre.Term != 8 {
		t.Errorf("pre-vote while not admitted: %+v, want denied", pre)
	}
	refusedErr := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "not admitted") {
			t.Errorf("%s while not admitted: err %v, want a refusal", what, err)
		}
		// raft counts a pre-vote failing with this text as granted.
		if err != nil && strings.Contains(err.Error(), "unexpected command") {
			t.Errorf("%s: refusal %q would read as an old peer's answer", what, err)
		}
	}
	var ae raft.AppendEntriesResponse
	refusedErr("append entries", sender.AppendEntries("x", addr, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 7, PrevLogEntry: 3, PrevLogTerm: 2,
		Entries: []*raft.Log{{Index: 4, Term: 7, Type: raft.LogCommand, Data: []byte("c")}}, LeaderCommitIndex: 4}, &ae))
	var tn raft.TimeoutNowResponse
	refusedErr("timeout now", sender.TimeoutNow("x", addr, &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn))
	snap := &countingReader{r: bytes.NewReader(make([]byte, 4096))}
	var is raft.InstallSnapshotResponse
	refusedErr("install snapshot", sender.InstallSnapshot("x", addr, &raft.InstallSnapshotRequest{RPCHeader: hdr, Term: 7, Size: 4096}, &is, snap))
	if snap.n != 4096 {
		t.Errorf("refused snapshot: %d of 4096 bytes consumed; the stream would desynchronise", snap.n)
	}

	// The heartbeat fast path is gated too and never reaches Raft's handler.
	reached := false
	g.SetHeartbeatHandler(func(rpc raft.RPC) { reached = true; rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil) })
	resp := make(chan raft.RPCResponse, 1)
	g.heartbeat(raft.RPC{Command: &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 7}, RespChan: resp})
	if r := <-resp; reached || r.Error == nil {
		t.Errorf("heartbeat while not admitted: reached=%v answer %+v", reached, r)
	}
	for kind, want := range map[string]float64{"request_vote": 1, "request_pre_vote": 1, "append_entries": 1, "timeout_now": 1, "install_snapshot": 1, "heartbeat": 1} {
		if got := testutil.ToFloat64(g.refused.WithLabelValues(kind)); got != want {
			t.Errorf("refused %s: %v, want %v", kind, got, want)
		}
	}
	select {
	case rpc := <-g.Consumer():
		t.Fatalf("a refused rpc reached raft: %T", rpc.Command)
	default:
	}

	// Outbound: a closed gate asks nobody for a vote.
	_, peer := raft.NewInmemTransportWithTimeout("", time.Second)
	peerAddr := peer.LocalAddr()
	g.gatedTransport.(*raft.InmemTransport).Connect(peerAddr, peer)
	defer peer.Close()
	var out raft.RequestVoteResponse
	if err := g.RequestVote("p", peerAddr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 9}, &out); err == nil || strings.Contains(err.Error(), "unexpected command") {
		t.Errorf("outbound vote request through a closed gate: %v", err)
	}
	var outPre raft.RequestPreVoteResponse
	if err := g.RequestPreVote("p", peerAddr, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 9}, &outPre); err == nil || strings.Contains(err.Error(), "unexpected command") {
		t.Errorf("outbound pre-vote request through a closed gate: %v", err)
	}
	select {
	case rpc := <-peer.Consumer():
		t.Fatalf("a closed gate sent %T", rpc.Command)
	default:
	}
}

func TestRaftGatePassesEverythingOnceAdmitted(t *testing.T) {
	sender, g, addr := gatePair(t)
	g.setOpen(true)
	done := make(chan error, 1)
	go func() {
		var vote raft.RequestVoteResponse
		err := sender.RequestVote("x", addr, &raft.RequestVoteRequest{Term: 3}, &vote)
		if err == nil && !vote.Granted {
			err = errors.New("vote not granted")
		}
		done <- err
	}()
	select {
	case rpc := <-g.Consumer():
		if _, ok := rpc.Command.(*raft.RequestVoteRequest); !ok {
			t.Fatalf("raft got %T", rpc.Command)
		}
		rpc.Respond(&raft.RequestVoteResponse{Term: 3, Granted: true}, nil)
	case <-time.After(5 * time.Second):
		t.Fatal("an admitted agent's raft never saw the vote request")
	}
	if err := <-done; err != nil {
		t.Fatalf("vote through an open gate: %v", err)
	}
	reached := false
	g.SetHeartbeatHandler(func(rpc raft.RPC) { reached = true; rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil) })
	resp := make(chan raft.RPCResponse, 1)
	g.heartbeat(raft.RPC{Command: &raft.AppendEntriesRequest{Term: 3}, RespChan: resp})
	if r := <-resp; !reached || r.Error != nil {
		t.Errorf("heartbeat through an open gate: reached=%v answer %+v", reached, r)
	}
	// Closing again (a later wipe is a new process; this is defence in
	// depth) refuses again.
	g.setOpen(false)
	var vote raft.RequestVoteResponse
	if err := sender.RequestVote("x", addr, &raft.RequestVoteRequest{Term: 4}, &vote); err != nil || vote.Granted {
		t.Errorf("vote after closing the gate: %+v, %v", vote, err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += k
	return k, err
}

// TestRaftGateDisablesPipelining: Raft falls back to one AppendEntries in
// flight per follower (see AppendEntriesPipeline).
func TestRaftGateDisablesPipelining(t *testing.T) {
	_, g, addr := gatePair(t)
	if p, err := g.AppendEntriesPipeline("x", addr); p != nil || !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: %v, %v", p, err)
	}
}

// A fenced gate sends no AppendEntries (heartbeats included) and no
// snapshot; lifting the fence sends again. Inbound RPCs are not affected.
func TestRaftGateFenceRefusesOutboundAppendEntries(t *testing.T) {
	_, g, _ := gatePair(t)
	peerAddr, peer := raft.NewInmemTransportWithTimeout("", 2*time.Second)
	g.gatedTransport.(*raft.InmemTransport).Connect(peerAddr, peer)
	received, stop, done := make(chan struct{}, 8), make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done; _ = peer.Close() })
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case rpc := <-peer.Consumer():
				received <- struct{}{}
				rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			}
		}
	}()
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte("a")}
	heartbeat := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3}
	var resp raft.AppendEntriesResponse
	g.setFenced(true)
	if err := g.AppendEntries("p", peerAddr, heartbeat, &resp); !errors.Is(err, errFenced) {
		t.Fatalf("heartbeat while fenced: err %v, want errFenced", err)
	}
	var snap raft.InstallSnapshotResponse
	if err := g.InstallSnapshot("p", peerAddr, &raft.InstallSnapshotRequest{RPCHeader: hdr, Term: 3}, &snap, bytes.NewReader(nil)); !errors.Is(err, errFenced) {
		t.Fatalf("snapshot while fenced: err %v, want errFenced", err)
	}
	select {
	case <-received:
		t.Fatal("a fenced gate delivered an rpc")
	default:
	}
	g.setFenced(false)
	if err := g.AppendEntries("p", peerAddr, heartbeat, &resp); err != nil || !resp.Success {
		t.Fatalf("heartbeat after the fence lifted: %v %+v", err, resp)
	}
}
