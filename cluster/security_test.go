package cluster

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// Security of the peer port and of gossip, on in-process clusters: agents
// that cannot prove they belong (a certificate from another CA, a wrong or
// missing cluster secret, another gossip key) never enter the Raft
// configuration, and their peer RPCs are refused, while legitimate agents
// keep joining.

// mtlsFor returns a peer mTLS config for an agent with a certificate from
// issuer, trusting trust.
func mtlsFor(t *testing.T, issuer, trust *transporttest.CA, name string) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	f := issuer.Issue(t, name).Write(t, issuer, dir, name)
	cf, err := transport.LoadCertFiles(f.Cert, f.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return transport.PeerMTLSConfig(cf, trust.Pool())
}

// rogueStays checks the rogue's exclusion: the leader has seen it in
// gossip and refused to add it (the log says so), it is in no agent's Raft
// configuration, and its peer RPCs to the leader are refused. Then a
// legitimate agent still joins and is promoted.
func rogueStays(t *testing.T, c *testCluster, rogue *testNode, lead *testNode, goodJoiner func() *testNode, members ...string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the leader refuses to add the rogue agent", func() bool {
		return c.logged("not adding it to raft", "node="+rogue.id+" ")
	})
	inGossip := false
	for _, m := range lead.node.Members() {
		if m.ID == rogue.id {
			inGossip = m.GossipState == StateAlive
			if m.Suffrage != SuffrageNone {
				t.Fatalf("rogue agent is a raft %s", m.Suffrage)
			}
		}
	}
	if !inGossip {
		t.Fatal("the rogue agent is not in the leader's gossip table: the test did not exercise the peer-port check")
	}
	c.waitMembersConfig(5*time.Second, members, nil)
	// Its peer RPCs are refused before any handler runs.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lead.mux.Addr()+PeerStatusPath, nil)
	if resp, err := rogue.mux.RPCClient().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the rogue agent's peer RPC was answered: %s", resp.Status)
	}
	// A legitimate agent started after the rogue is admitted and promoted;
	// the rogue still is not.
	good := goodJoiner()
	c.waitMembersConfig(30*time.Second, append(append([]string(nil), members...), good.id), nil)
	if st := rogue.node.Status(); st.LeaderID != "" || len(st.Voters) > 0 {
		t.Fatalf("the rogue agent knows a leader or voters: %+v", st)
	}
}

// waitMembersConfig is waitConfig on the agents that are not rogues (a
// rogue is in no configuration, so it sees none).
func (c *testCluster) waitMembersConfig(d time.Duration, voters, nonvoters []string) {
	c.t.Helper()
	waitFor(c.t, d, "voters "+strings.Join(voters, ",")+" on every legitimate agent", func() bool {
		for _, n := range c.running() {
			if strings.HasPrefix(n.id, "rogue") {
				continue
			}
			st := n.node.Status()
			if !sameIDs(st.Voters, voters...) || !sameIDs(st.NonVoters, nonvoters...) {
				return false
			}
		}
		return true
	})
}

// logged reports whether one log line contains every one of parts.
func (c *testCluster) logged(parts ...string) bool {
	for _, line := range strings.Split(c.logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestPeerMutualTLSKeepsForeignCertificatesOut(t *testing.T) {
	c := newTestCluster(t)
	clusterCA := transporttest.NewCA(t, "cluster CA")
	foreignCA := transporttest.NewCA(t, "foreign CA")
	c.peerEdit = func(id string, pc *transport.PeerConfig) {
		issuer := clusterCA
		if strings.HasPrefix(id, "rogue") {
			issuer = foreignCA // trusts the cluster CA but holds another CA's certificate
		}
		pc.TLS = mtlsFor(t, issuer, clusterCA, id)
	}
	c.startBootstrapped("a1", "a2")
	lead := c.waitLeader(10 * time.Second)
	rogue := c.start("rogue", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	rogueStays(t, c, rogue, lead, func() *testNode {
		return c.start("a3", "", func(cfg *Config) { cfg.Join = []string{lead.node.GossipAddr()} })
	}, "a1", "a2")
}

func TestClusterSecretKeepsRogueAgentsOut(t *testing.T) {
	c := newTestCluster(t)
	c.peerEdit = func(id string, pc *transport.PeerConfig) {
		switch id {
		case "rogue-wrong":
			pc.ClusterSecret = []byte("not the cluster's secret!")
		case "rogue-none":
		default:
			pc.ClusterSecret = []byte("the cluster's own secret")
		}
	}
	c.startBootstrapped("a1", "a2")
	lead := c.waitLeader(10 * time.Second)
	wrong := c.start("rogue-wrong", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	none := c.start("rogue-none", "", func(cfg *Config) { cfg.Join = []string{lead.node.GossipAddr()} })
	rogueStays(t, c, wrong, lead, func() *testNode {
		return c.start("a3", "", func(cfg *Config) { cfg.Join = []string{lead.node.GossipAddr()} })
	}, "a1", "a2")
	waitFor(t, 30*time.Second, "the leader refuses the agent without a secret", func() bool {
		return c.logged("not adding it to raft", "node=rogue-none ")
	})
	c.waitMembersConfig(5*time.Second, []string{"a1", "a2", "a3"}, nil)
	if st := none.node.Status(); st.LeaderID != "" {
		t.Fatalf("the agent without a secret follows %s", st.LeaderID)
	}
}

func TestGossipKeyMismatchCannotGossip(t *testing.T) {
	c := newTestCluster(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	c.edit = func(cfg *Config) { cfg.GossipKey = key }
	c.startBootstrapped("a1", "a2")
	lead := c.waitLeader(10 * time.Second)
	other := c.start("rogue-key", "", func(cfg *Config) {
		cfg.GossipKey = []byte("another key of 32 bytes, really!")
		cfg.Join = []string{lead.node.GossipAddr()}
	})
	plain := c.start("rogue-plain", "", func(cfg *Config) {
		cfg.GossipKey = nil
		cfg.Join = []string{lead.node.GossipAddr()}
	})
	for _, r := range []*testNode{other, plain} {
		waitFor(t, 30*time.Second, r.id+" fails to join", func() bool {
			return c.logged("cannot join the cluster yet", "node="+r.id+" ")
		})
	}
	// A legitimate agent with the key joins, so gossip works; the others
	// appear in nobody's member table and see nobody.
	good := c.start("a3", "", func(cfg *Config) { cfg.Join = []string{lead.node.GossipAddr()} })
	c.waitMembersConfig(30*time.Second, []string{"a1", "a2", good.id}, nil)
	for _, n := range []*testNode{lead, good} {
		for _, m := range n.node.Members() {
			if strings.HasPrefix(m.ID, "rogue") {
				t.Errorf("%s sees %s in gossip (%s)", n.id, m.ID, m.GossipState)
			}
		}
	}
	for _, r := range []*testNode{other, plain} {
		if ms := r.node.Members(); len(ms) != 1 || ms[0].ID != r.id {
			t.Errorf("%s sees members %+v", r.id, ms)
		}
	}
	// A wrong key length is a configuration error.
	bad := fastConfig("x", filepath.Join(t.TempDir(), "x"), lead.mux, c.log, nil)
	bad.GossipKey = []byte("short")
	if err := bad.validate(); err == nil {
		t.Error("a 5-byte gossip key was accepted")
	}
}
