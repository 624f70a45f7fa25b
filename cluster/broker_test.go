package cluster

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestPlanBrokers(t *testing.T) {
	servers := []raft.Server{{ID: "a"}, {ID: "c"}, {ID: "b"}}
	members := map[string]gossipMember{
		"x": {State: StateAlive}, // out of the configuration but alive: kept (being replaced)
		"y": {State: StateDead},
	}
	add, remove := planBrokers(servers, members, map[string]int32{"a": 1, "x": 2, "y": 3, "z": 4})
	if !reflect.DeepEqual(add, []string{"b", "c"}) || !reflect.DeepEqual(remove, []string{"y", "z"}) {
		t.Fatalf("add %v remove %v", add, remove)
	}
}

// brokerIDs reads the broker IDs every running agent reports, or nil while
// they disagree or one of them has no ID.
func (c *testCluster) brokerIDs(want int) map[string]int32 {
	var out map[string]int32
	for _, n := range c.running() {
		ids := map[string]int32{}
		for _, m := range n.node.ClusterStatus().Members {
			if m.BrokerID > 0 {
				ids[m.ID] = m.BrokerID
			}
		}
		if len(ids) != want || (out != nil && !reflect.DeepEqual(ids, out)) {
			return nil
		}
		out = ids
	}
	return out
}

func TestBrokerIDsAreSmallUniqueAndStable(t *testing.T) {
	c := newTestCluster(t)
	c.edit = func(cfg *Config) { cfg.DeadAgentTimeout = time.Minute }
	c.startBootstrapped("a", "b", "c")
	var ids map[string]int32
	waitFor(t, deadline, "three broker IDs on every agent", func() bool {
		ids = c.brokerIDs(3)
		return ids != nil
	})
	seen := map[int32]bool{}
	for _, id := range ids {
		if id < 1 || id > 3 || seen[id] {
			t.Fatalf("broker IDs %v: want 1, 2, 3 each once", ids)
		}
		seen[id] = true
	}

	// A leader change and a restart keep every ID.
	lead := c.waitLeader(deadline)
	peer, gossip := lead.mux.Addr(), lead.node.GossipAddr()
	c.kill(lead.id)
	next := c.waitLeader(deadline)
	c.startAt(lead.id, lead.dir, peer, gossip, func(cfg *Config) { cfg.Join = c.joinAddrs() })
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
	waitFor(t, deadline, "the same broker IDs after a leader change and a restart", func() bool {
		got := c.brokerIDs(3)
		return got != nil && reflect.DeepEqual(got, ids)
	})

	// A new agent gets the next free ID.
	c.start("d", "", func(cfg *Config) { cfg.Join = []string{next.node.GossipAddr()} })
	waitFor(t, deadline, "the new agent registered as broker 4", func() bool {
		got := c.brokerIDs(4)
		return got != nil && got["d"] == 4
	})
}
