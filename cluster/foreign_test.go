package cluster

import (
	"slices"
	"testing"
)

// TestAnotherClusterAtAVotersAddressIsNotReplicatedInto: a voter's data
// dir is replaced by a new single-agent group under the same node ID, peer
// address and gossip address (a wiped seed that bootstrapped again, a
// restore next to the old cluster), and gossip merges the two. The old
// group's leader must not replicate into the new group — before Raft
// connections named their cluster it overwrote the new group's log and
// took the agent for its old voter — and it drops the slot, whose
// incarnation is gone. The new group keeps its own log.
func TestAnotherClusterAtAVotersAddressIsNotReplicatedInto(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("n1", "n2", "n3")
	lead := c.waitLeader(deadline)
	createTopic(t, lead, "x-before", 1)
	victim := c.followers(lead)[0]
	peerAddr, gossipAddr := victim.mux.Addr(), victim.node.GossipAddr()
	c.kill(victim.id)

	y := c.startAt(victim.id, "", peerAddr, gossipAddr, func(cfg *Config) {
		cfg.Bootstrap, cfg.BootstrapExpect, cfg.Join = true, 0, nil
	})
	waitFor(t, deadline, "the new group to elect its agent", y.node.IsLeader)
	createTopic(t, y, "y-only", 1)
	yCluster := y.node.ClusterID()
	xCluster := lead.node.ClusterID()
	if yCluster == "" || yCluster == xCluster {
		t.Fatalf("new group's cluster %q, old group's %q", yCluster, xCluster)
	}
	if _, err := y.node.gossip.ml.Join([]string{lead.node.GossipAddr()}); err != nil {
		t.Fatalf("merge the two groups' gossip: %v", err)
	}

	others := c.except(victim.id)
	xlead := c.waitLeaderOf(deadline, others)
	createTopic(t, xlead, "x-after", 1)
	waitFor(t, deadline, "the old group to drop the replaced voter", func() bool {
		for _, n := range others() {
			st := n.node.Status()
			if slices.Contains(st.Voters, victim.id) || slices.Contains(st.NonVoters, victim.id) {
				return false
			}
		}
		return true
	})
	createTopic(t, xlead, "x-last", 1)

	if !y.node.IsLeader() || y.node.ClusterID() != yCluster {
		t.Errorf("the new group's agent: leader %v, cluster %q (want %q)", y.node.IsLeader(), y.node.ClusterID(), yCluster)
	}
	if st := y.node.Status(); !sameIDs(st.Voters, victim.id) || len(st.NonVoters) != 0 {
		t.Errorf("the new group's configuration became voters %v, non-voters %v", st.Voters, st.NonVoters)
	}
	if _, ok := y.fsm.Topic("y-only"); !ok {
		t.Error("the new group lost its own topic")
	}
	for _, name := range []string{"x-before", "x-after", "x-last"} {
		if _, ok := y.fsm.Topic(name); ok {
			t.Errorf("the old group replicated %q into the new group", name)
		}
	}
}
