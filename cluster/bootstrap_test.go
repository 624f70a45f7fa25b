package cluster

import (
	"net"
	"strconv"
	"testing"
)

// freeGossipPort returns a port that is free for TCP and UDP on 127.0.0.1
// at the time of the call.
func freeGossipPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port for gossip")
	return 0
}

// TestBootstrapExpectOneWithItselfInJoin: a one-replica StatefulSet sets
// BOOTSTRAP_EXPECT=1 and a JOIN list naming the agent itself (by a DNS
// name, so it is not filtered as its own address). It must bootstrap
// alone; a second agent started the same way, once the first exists, is
// added to that cluster instead of founding another.
func TestBootstrapExpectOneWithItselfInJoin(t *testing.T) {
	c := newTestCluster(t)
	port := strconv.Itoa(freeGossipPort(t))
	a := c.startAt("a", "", "127.0.0.1:0", "127.0.0.1:"+port, func(cfg *Config) {
		cfg.BootstrapExpect = 1
		cfg.Join = []string{"localhost:" + port}
	})
	if a.node.cfg.Bootstrap {
		t.Fatal("JOIN was ignored: the agent took the plain single-agent path")
	}
	c.waitLeader(deadline)
	c.waitConfig(deadline, []string{"a"}, nil)
	if ok, why := a.node.Ready(); !ok {
		waitFor(t, deadline, "a ready ("+why+")", func() bool { ok, _ := a.node.Ready(); return ok })
	}

	b := c.start("b", "", func(cfg *Config) {
		cfg.BootstrapExpect = 1
		cfg.Join = []string{"localhost:" + port, "127.0.0.1:1"}
	})
	c.waitConfig(deadline, []string{"a", "b"}, nil)
	if ca, cb := a.node.Status().ClusterID, b.node.Status().ClusterID; ca == "" || ca != cb {
		t.Fatalf("b is in cluster %q, a in %q", cb, ca)
	}
}
