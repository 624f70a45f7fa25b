package cluster

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestWipedVoterCannotElectALaggingCandidate reproduces Raft amnesia: voters
// A (leader), B and X; entries are committed on {A, X} while B is cut off;
// X loses its data dir and restarts at once with the same ID and address;
// A crashes; B, healed, asks X for its vote. X has no log and no
// configuration: if it grants, B leads with {B, X} and truncates A's
// acknowledged entries when A comes back, although a majority (A, B) kept
// its disks. The new incarnation must refuse until it is admitted.
func TestWipedVoterCannotElectALaggingCandidate(t *testing.T) {
	c := newTestCluster(t)
	// No member may be removed for being dead during the test: the
	// interleaving must play out with the three original voters.
	c.edit = func(cfg *Config) { cfg.DeadAgentTimeout = time.Minute }
	c.startBootstrapped("a", "b", "c")
	a := c.waitLeader(deadline)
	fs := c.followers(a)
	b, x := fs[0], fs[1]
	createTopic(t, a, "before", 1)
	waitFor(t, deadline, "every agent applied the first topic", func() bool {
		for _, n := range c.running() {
			if _, ok := n.fsm.Topic("before"); !ok {
				return false
			}
		}
		return true
	})

	// B lags: entries commit on {A, X} only and are acknowledged.
	c.faults.Isolate(b.mux.Addr())
	var acked []string
	for i := range 5 {
		name := fmt.Sprintf("acked-%d", i)
		createTopic(t, a, name, 1)
		acked = append(acked, name)
	}
	bApplied := b.node.Status().LastIndex

	// X is wiped and restarts with the same ID and addresses; A crashes
	// before it could replicate anything to the new X.
	xPeer, xGossip := x.mux.Addr(), x.node.GossipAddr()
	aPeer, aGossip := a.mux.Addr(), a.node.GossipAddr()
	c.kill(x.id)
	if err := os.RemoveAll(x.dir); err != nil {
		t.Fatal(err)
	}
	c.kill(a.id)
	x2 := c.startAt(x.id, x.dir, xPeer, xGossip, func(cfg *Config) { cfg.Join = []string{b.node.GossipAddr()} })
	if st := x2.node.Status(); st.Admitted || st.LastIndex != 0 {
		t.Fatalf("wiped agent: %+v", st)
	}

	// B comes back and campaigns; X is the only other voter it can reach.
	c.faults.Heal()
	waitFor(t, deadline, "B either won an election through X or X refused to vote", func() bool {
		return b.node.IsLeader() || x2.refusedVotes() > 0
	})
	if b.node.IsLeader() {
		t.Errorf("B (last index %d) won an election with the vote of wiped X while A held acknowledged entries", bApplied)
	}
	if x2.node.IsLeader() {
		t.Errorf("the wiped agent became leader")
	}

	// A restarts with its disk: nothing acknowledged may be missing.
	a2 := c.startAt(a.id, a.dir, aPeer, aGossip, func(cfg *Config) { cfg.Join = []string{b.node.GossipAddr()} })
	lead := c.waitLeader(deadline)
	t.Logf("leader after A restarted: %s", lead.id)
	waitFor(t, deadline, "A and B agree on the applied log", func() bool {
		sa, sb := a2.node.Status(), b.node.Status()
		return sa.LeaderID != "" && sa.LeaderID == sb.LeaderID && sa.AppliedIndex == sb.AppliedIndex && sa.CommitIndex == sa.AppliedIndex
	})
	for _, n := range []*testNode{a2, b} {
		for _, name := range acked {
			if _, ok := n.fsm.Topic(name); !ok {
				t.Errorf("%s: acknowledged topic %s lost", n.id, name)
			}
		}
	}
	if t.Failed() {
		return
	}
	// The wiped agent is removed, re-added, admitted and promoted, and then
	// holds everything.
	waitFor(t, deadline, "wiped agent admitted, voting and caught up", func() bool {
		st := x2.node.Status()
		for _, name := range acked {
			if _, ok := x2.fsm.Topic(name); !ok {
				return false
			}
		}
		return st.Admitted && sameIDs(st.Voters, "a", "b", "c")
	})
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
}

// refusedVotes is how many vote and pre-vote requests the agent's Raft gate
// refused.
func (n *testNode) refusedVotes() float64 {
	return n.metricCounter("streamhouse_raft_rpcs_refused_total", "rpc", "request_vote").Float64() +
		n.metricCounter("streamhouse_raft_rpcs_refused_total", "rpc", "request_pre_vote").Float64()
}
