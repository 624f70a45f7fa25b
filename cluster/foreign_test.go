package cluster

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
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

// TestLegacyGroupWithSeveralClusterIDsKeepsItsMembers: Raft state from
// before cluster IDs has no identity file, so every voter that becomes
// leader names the group itself, and an earlier release could leave the
// voters with different IDs. Such voters are one group: they must accept
// each other's Raft connections (each is a server of the other's
// configuration), and a new leader must not remove the old one as an
// agent of another cluster.
func TestLegacyGroupWithSeveralClusterIDsKeepsItsMembers(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	type addrs struct{ dir, peer, gossip string }
	old := map[string]addrs{}
	var join []string
	for _, n := range c.running() {
		old[n.id] = addrs{n.dir, n.mux.Addr(), n.node.GossipAddr()}
		join = append(join, n.node.GossipAddr())
	}
	for id := range old {
		c.kill(id)
	}
	var mu sync.Mutex
	passes := map[string]int{} // membership passes each agent made as leader
	for id, a := range old {
		if err := os.Remove(filepath.Join(a.dir, "raft", identityFile)); err != nil {
			t.Fatal(err)
		}
		c.startAt(id, a.dir, a.peer, a.gossip, func(cfg *Config) {
			cfg.Join = join
			cfg.BootstrapSettle = time.Nanosecond // a stale member goes in the pass of its second check
			cfg.membershipPassed = func() {
				mu.Lock()
				passes[id]++
				mu.Unlock()
			}
		})
	}
	lead := c.waitLeader(deadline)
	waitFor(t, deadline, "the leader to name the group", func() bool { return lead.node.ClusterID() != "" })
	// An earlier release's leaders named the group differently.
	for _, n := range c.followers(lead) {
		if err := n.node.updateIdentity(func(id *identity) { id.Cluster = "named-by-" + n.id }); err != nil {
			t.Fatal(err)
		}
	}
	next := c.waitLeaderNot(lead.id)
	if next.node.ClusterID() == lead.node.ClusterID() {
		t.Fatalf("both leaders name the group %q", lead.node.ClusterID())
	}
	// Were the old leader taken for another cluster's agent, it would be
	// gone by the new leader's second pass (no settle time); wait for a
	// third, begun after the second ended.
	mu.Lock()
	from := passes[next.id]
	mu.Unlock()
	waitFor(t, deadline, "three membership passes of the new leader", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return passes[next.id] >= from+3
	})
	if st := next.node.Status(); !slices.Contains(st.Voters, lead.id) {
		t.Fatalf("the new leader removed the old one: voters %v", st.Voters)
	}
	// The old leader's vote is the only one left besides the new leader's:
	// a commit now needs the Raft connection between the two.
	for _, n := range c.followers(next) {
		if n != lead {
			c.kill(n.id)
		}
	}
	createTopic(t, next, "after-the-change", 1)
	// An agent such a group admits is legacy too: it names no cluster
	// either, or it would refuse the group's other names.
	d := c.start("d", "", func(cfg *Config) { cfg.Join = []string{next.node.GossipAddr()} })
	waitFor(t, deadline, "d to be admitted", func() bool { return d.node.identity().Admitted })
	if id := d.node.identity(); !id.Legacy || d.node.raftClusterID() != "" {
		t.Errorf("an agent admitted by a legacy group: %+v, names %q on raft connections", id, d.node.raftClusterID())
	}
}

// TestAdmissionByAnEarlierReleaseIsLegacy: an admit request without a
// version comes from a leader of an earlier release, whose cluster ID may
// be one of several names of its group: the admitted identity is legacy
// and names no cluster. A request of this release from a leader that is
// not legacy gives a protected identity.
func TestAdmissionByAnEarlierReleaseIsLegacy(t *testing.T) {
	c := newTestCluster(t)
	for _, tc := range []struct {
		name, body string
		legacy     bool
	}{
		{"earlier release", `{"node_id":%q,"instance":%q,"cluster":"c-old"}`, true},
		{"this release", `{"node_id":%q,"instance":%q,"cluster":"c-new","version":1}`, false},
	} {
		j := c.start("j-"+strings.ReplaceAll(tc.name, " ", "-"), "", func(cfg *Config) { cfg.Join = []string{"127.0.0.1:1"} })
		id := j.node.identity()
		req := httptest.NewRequest(http.MethodPost, "/peer/v1/admit", strings.NewReader(fmt.Sprintf(tc.body, j.id, id.Instance)))
		rec := httptest.NewRecorder()
		j.node.RPCHandler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: admit answered %d %s", tc.name, rec.Code, rec.Body)
		}
		got := j.node.identity()
		if !got.Admitted || got.Legacy != tc.legacy || (j.node.raftClusterID() == "") != tc.legacy {
			t.Errorf("%s: identity %+v names %q on raft connections; want legacy %v", tc.name, got, j.node.raftClusterID(), tc.legacy)
		}
	}
}

// TestAdmissionOfAnUnnamedGroupsMember: an agent admitted to a group that
// has no cluster ID (Raft state of an earlier release) belongs to that
// group. A leader of this release that is not legacy must not take it for
// a fresh joiner (it would leave its group a voter short); its own legacy
// leader may name it.
func TestAdmissionOfAnUnnamedGroupsMember(t *testing.T) {
	c := newTestCluster(t)
	j := c.start("j", "", func(cfg *Config) { cfg.Join = []string{"127.0.0.1:1"} })
	if err := j.node.updateIdentity(func(id *identity) { id.Admitted, id.Legacy = true, true }); err != nil {
		t.Fatal(err)
	}
	admit := func(body string) int {
		req := httptest.NewRequest(http.MethodPost, "/peer/v1/admit", strings.NewReader(fmt.Sprintf(body, j.id, j.node.identity().Instance)))
		rec := httptest.NewRecorder()
		j.node.RPCHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := admit(`{"node_id":%q,"instance":%q,"cluster":"c-new","version":1}`); code != http.StatusConflict {
		t.Errorf("admission by a leader that is not legacy answered %d, want 409", code)
	}
	if got := j.node.identity(); got.Cluster != "" {
		t.Fatalf("the refused admission named the group: %+v", got)
	}
	if code := admit(`{"node_id":%q,"instance":%q,"cluster":"c-old","legacy":true,"version":1}`); code != http.StatusOK {
		t.Errorf("admission by its legacy leader answered %d, want 200", code)
	}
	if got := j.node.identity(); got.Cluster != "c-old" || !got.Legacy {
		t.Errorf("after its legacy leader named it: %+v", got)
	}
}
