package main

import (
	"fmt"

	"github.com/streamhouse/streamhouse/cluster"
	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// clusterView adapts the node's membership and the FSM's leaderships to the
// REST cluster status (GET /api/v1/cluster).
type clusterView struct {
	node *cluster.Node
	meta *fsm.FSM
}

func (v *clusterView) ClusterStatus() transport.ClusterStatus {
	st := v.node.Status()
	out := transport.ClusterStatus{
		NodeID: st.NodeID, RaftState: st.State, Leader: st.LeaderID, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, Voters: st.Voters, NonVoters: st.NonVoters,
	}
	lead := map[string][]string{}
	for _, p := range v.meta.AllPartitions() {
		lead[p.Leader] = append(lead[p.Leader], fmt.Sprintf("%s/%d", p.Topic, p.Partition))
	}
	for _, m := range v.node.Members() {
		out.Members = append(out.Members, transport.ClusterMember{
			ID: m.ID, GossipState: m.GossipState, Suffrage: m.Suffrage, RaftLeader: m.RaftLeader,
			HTTPAddr: m.HTTPAddr, GRPCAddr: m.GRPCAddr, PeerAddr: m.PeerAddr, Leaderships: lead[m.ID],
		})
	}
	return out
}
