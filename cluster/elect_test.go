package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestSoleVoterElectsWithoutWaiting: with heartbeat and election timeouts
// of an hour, a single agent can only be leader within the test's deadline
// if it started its election without waiting for them: after its
// bootstrap, and again after a restart on its Raft state; topic creation
// works at once too. The timeouts it runs with afterwards are the
// configured ones.
func TestSoleVoterElectsWithoutWaiting(t *testing.T) {
	c := newTestCluster(t)
	slow := func(cfg *Config) { cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Hour, time.Hour }
	a := c.start("a", "", slow)
	c.waitLeader(deadline)
	if got := a.node.r().ReloadableConfig(); got.HeartbeatTimeout != time.Hour || got.ElectionTimeout != time.Hour {
		t.Fatalf("timeouts after the election: %v / %v, want the configured 1h / 1h", got.HeartbeatTimeout, got.ElectionTimeout)
	}
	// Topic creation goes through the leader loop, whose barrier is done
	// by then (stopping an agent whose barrier is still in flight:
	// TestCloseWhileLeaderBarrierInFlight).
	createTopic(t, a, "solo", 1)
	c.kill("a")
	a2 := c.start("a", a.dir, slow)
	c.waitLeader(deadline)
	createTopic(t, a2, "solo2", 1)
}

func TestSoleVoter(t *testing.T) {
	voter := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter} }
	nonvoter := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Nonvoter} }
	for _, tc := range []struct {
		name    string
		servers []raft.Server
		want    bool
	}{
		{"alone", []raft.Server{voter("a")}, true},
		{"with a non-voter", []raft.Server{voter("a"), nonvoter("b")}, true},
		{"two voters", []raft.Server{voter("a"), voter("b")}, false},
		{"another's group", []raft.Server{voter("b")}, false},
		{"a non-voter itself", []raft.Server{nonvoter("a"), voter("b")}, false},
		{"empty", nil, false},
	} {
		if got := soleVoter(raft.Configuration{Servers: tc.servers}, "a"); got != tc.want {
			t.Errorf("%s: soleVoter = %v, want %v", tc.name, got, tc.want)
		}
	}
	rc := raft.ReloadableConfig{HeartbeatTimeout: time.Second, ElectionTimeout: time.Second, TrailingLogs: 7}
	if k, ok := kickConfig(rc, 500*time.Millisecond); !ok || k.HeartbeatTimeout != 500*time.Millisecond || k.ElectionTimeout != time.Second || k.TrailingLogs != 7 {
		t.Errorf("kickConfig = %+v, %v", k, ok)
	}
	if _, ok := kickConfig(rc, time.Second); ok {
		t.Error("kickConfig with lease == heartbeat timeout: a shorter valid timeout does not exist")
	}
}
