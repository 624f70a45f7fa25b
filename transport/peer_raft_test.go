package transport

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftListFSM records the commands it applies, in order.
type raftListFSM struct {
	mu   sync.Mutex
	vals []string
}

func (f *raftListFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = append(f.vals, string(l.Data))
	return nil
}

func (f *raftListFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return raftListSnapshot(slices.Clone(f.vals)), nil
}

func (f *raftListFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var vals []string
	if err := json.NewDecoder(rc).Decode(&vals); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = vals
	return nil
}

func (f *raftListFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.vals)
}

func (f *raftListFSM) has(v string) bool { return slices.Contains(f.list(), v) }

type raftListSnapshot []string

func (s raftListSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (raftListSnapshot) Release() {}

type raftTestNode struct {
	mux  *PeerMux
	raft *raft.Raft
	fsm  *raftListFSM
}

func (n *raftTestNode) addr() string { return n.mux.Addr() }

// startRaftCluster starts a 3-voter hashicorp/raft group whose
// NetworkTransports run over PeerMux Raft layers sharing f.
func startRaftCluster(t *testing.T, f *Faults) []*raftTestNode {
	t.Helper()
	nodes := make([]*raftTestNode, 3)
	var servers []raft.Server
	for i := range nodes {
		nodes[i] = &raftTestNode{mux: startPeerMux(t, f), fsm: &raftListFSM{}}
		servers = append(servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(fmt.Sprintf("n%d", i)),
			Address:  raft.ServerAddress(nodes[i].addr()),
		})
	}
	for i, n := range nodes {
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  n.mux.RaftLayer(),
			MaxPool: 3,
			Timeout: 2 * time.Second,
			Logger:  hclog.NewNullLogger(),
		})
		if got := string(trans.LocalAddr()); got != n.addr() {
			t.Fatalf("transport LocalAddr = %q, want the advertised %q", got, n.addr())
		}
		rc := raft.DefaultConfig()
		rc.LocalID = servers[i].ID
		rc.Logger = hclog.NewNullLogger()
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
		logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatalf("bootstrap n%d: %v", i, err)
		}
		r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans)
		if err != nil {
			t.Fatalf("start raft n%d: %v", i, err)
		}
		n.raft = r
		// Runs before the mux's Close (registered earlier): the documented
		// order is raft, then its transport, then the mux.
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("raft shutdown: %v", err)
			}
			_ = trans.Close()
		})
	}
	return nodes
}

// waitRaftLeader waits until one of nodes is leader and returns it.
func waitRaftLeader(t *testing.T, nodes []*raftTestNode) *raftTestNode {
	t.Helper()
	var leader *raftTestNode
	waitFor(t, 20*time.Second, "a raft leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// applyOn applies v on n and returns the future's error, failing the test
// if the future does not resolve in time.
func applyOn(t *testing.T, n *raftTestNode, v string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.raft.Apply([]byte(v), 5*time.Second).Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Apply(%q) on %s did not resolve", v, n.addr())
		return nil
	}
}

func waitApplied(t *testing.T, nodes []*raftTestNode, v string) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, 20*time.Second, fmt.Sprintf("%s to apply %q", n.addr(), v), func() bool { return n.fsm.has(v) })
	}
}

func TestPeerRaftClusterOverMux(t *testing.T) {
	f := NewFaults()
	nodes := startRaftCluster(t, f)

	old := waitRaftLeader(t, nodes)
	if err := applyOn(t, old, "one"); err != nil {
		t.Fatalf("apply on the first leader: %v", err)
	}
	waitApplied(t, nodes, "one")

	// Cut the leader off: it cannot commit, the other two elect a leader
	// and carry on.
	f.Isolate(old.addr())
	if err := applyOn(t, old, "isolated"); err == nil {
		t.Fatal("an isolated leader committed an entry")
	}
	var rest []*raftTestNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	var leader *raftTestNode
	waitFor(t, 20*time.Second, "the majority to elect a new leader and commit", func() bool {
		leader = waitRaftLeader(t, rest)
		return applyOn(t, leader, "two") == nil
	})
	waitApplied(t, rest, "two")
	if old.fsm.has("two") || old.fsm.has("isolated") {
		t.Fatalf("the isolated agent applied %q", old.fsm.list())
	}

	// Heal: the old leader rejoins and catches up.
	f.Heal()
	waitApplied(t, []*raftTestNode{old}, "two")
	leader = waitRaftLeader(t, nodes)
	waitFor(t, 20*time.Second, "a commit after healing", func() bool {
		leader = waitRaftLeader(t, nodes)
		return applyOn(t, leader, "three") == nil
	})
	waitApplied(t, nodes, "three")
	for _, n := range nodes {
		// "two" and "three" may each appear twice if a retried Apply had
		// in fact committed before its future failed; "isolated" never.
		vals := slices.Compact(n.fsm.list())
		if !slices.Equal(vals, []string{"one", "two", "three"}) {
			t.Fatalf("%s applied %q, want one, two, three", n.addr(), n.fsm.list())
		}
	}
}
