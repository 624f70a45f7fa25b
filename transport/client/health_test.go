package client

import (
	"strings"
	"testing"
)

// healthyCluster is three alive voters, node-1 leading.
func healthyCluster() (ClusterStatus, []AgentProbe) {
	view := ClusterStatus{NodeID: "node-1", RaftState: "Leader", RaftLeader: "node-1", CommitIndex: 100, AppliedIndex: 100,
		Voters: []string{"node-1", "node-2", "node-3"}}
	var probes []AgentProbe
	for _, id := range view.Voters {
		m := ClusterMember{NodeID: id, GossipState: "alive", Suffrage: "voter", GRPCAddress: id + ":9090", RaftLeader: id == "node-1"}
		view.Members = append(view.Members, m)
		st := ClusterStatus{NodeID: id, RaftState: "Follower", RaftLeader: "node-1", CommitIndex: 100, AppliedIndex: 100,
			LastContactMs: 50, Ready: true, Voters: view.Voters}
		if id == "node-1" {
			st.RaftState, st.LastContactMs = "Leader", 0
		}
		probes = append(probes, AgentProbe{Member: m, Status: &st})
	}
	return view, probes
}

func TestEvaluateHealth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(view *ClusterStatus, probes []AgentProbe)
		want   []string // substrings of the problems, in order; none = healthy
	}{
		{"healthy", func(*ClusterStatus, []AgentProbe) {}, nil},
		{"no leader", func(v *ClusterStatus, ps []AgentProbe) {
			ps[0].Status.RaftState = "Candidate"
			v.NotReadyReason = "no raft leader elected yet"
		}, []string{"no raft leader (node-1 says: no raft leader elected yet)"}},
		{"killed agent", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[1].Status, ps[1].Error = nil, "unavailable: connection refused"
		}, []string{"node-2: unreachable at node-2:9090: unavailable: connection refused", "under-replicated"}},
		{"dead in gossip", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[2].Status, ps[2].Error, ps[2].Member.GossipState = nil, "timeout", "dead"
		}, []string{"node-3: dead: gossip says dead", "under-replicated"}},
		{"left and removed is ignored", func(v *ClusterStatus, ps []AgentProbe) {
			v.Members = append(v.Members, ClusterMember{NodeID: "node-4", GossipState: "left", Suffrage: "none"})
		}, nil},
		{"lagging voter", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[2].Status.AppliedIndex = 1
			ps[0].Status.CommitIndex = 9000
			ps[1].Status.AppliedIndex = 8990
		}, []string{"node-3: voter trails the leader by 8999 raft log entries", "under-replicated: 2 of"}},
		{"voter without contact", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[1].Status.LastContactMs = 60000
		}, []string{"node-2: voter has not heard from the leader for 1m0s", "under-replicated"}},
		{"not ready", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[1].Status.Ready, ps[1].Status.NotReadyReason = false, "object store unreachable"
		}, []string{"node-2: not ready: object store unreachable"}},
		{"backlog", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[2].Status.UnflushedBytes = DefaultMaxUnflushedBytes + 1
		}, []string{"node-3: unflushed backlog"}},
		{"non-voter only", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[0].Status.Voters = []string{"node-1", "node-2"}
			ps[2].Member.Suffrage = "nonvoter"
		}, []string{"under-replicated: 2 of the raft voters (node-1, node-2) are alive and caught up, the cluster wants 3"}},
		{"checkpoints down", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[0].Status.Checkpoint = CheckpointStatus{Configured: true}
		}, []string{"node-1: checkpoints: cannot connect to Postgres"}},
		{"checkpoints failing and late", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[0].Status.Checkpoint = CheckpointStatus{Configured: true, Connected: true, Leader: true, ConsecutiveFailures: 3,
				LastError: "disk full", LagMs: 120000}
		}, []string{"node-1: checkpoints failing (3 consecutive attempts): disk full", "node-1: checkpoint lag 2m0s is above 1m0s"}},
		{"checkpoints of a follower are not judged", func(_ *ClusterStatus, ps []AgentProbe) {
			ps[1].Status.Checkpoint = CheckpointStatus{Configured: true}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			view, probes := healthyCluster()
			tc.change(&view, probes)
			for _, m := range view.Members[len(probes):] {
				probes = append(probes, AgentProbe{Member: m})
			}
			r := EvaluateHealth(view, probes, HealthThresholds{})
			var got []string
			for _, p := range r.Problems {
				got = append(got, p.String())
			}
			if r.Healthy != (len(tc.want) == 0) || len(got) != len(tc.want) {
				t.Fatalf("healthy=%v problems %q, want %q", r.Healthy, got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestWantVoters(t *testing.T) {
	for live, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 5, 7: 5} {
		if got := wantVoters(live); got != want {
			t.Errorf("wantVoters(%d) = %d, want %d", live, got, want)
		}
	}
}
