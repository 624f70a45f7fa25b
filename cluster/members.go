package cluster

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/transport"
)

var _ transport.ClusterInfo = (*Node)(nil)

// Raft suffrage as reported by Members.
const (
	SuffrageVoter    = "voter"
	SuffrageNonvoter = "nonvoter"
	SuffrageNone     = "none"
)

// Member is one agent as this agent sees it: the union of the gossip table
// and the Raft configuration.
type Member struct {
	ID string `json:"id"`
	// GossipState is alive, dead, left, or unknown (in the Raft
	// configuration but not in gossip).
	GossipState string `json:"gossip_state"`
	// StateSince is when this agent observed the gossip state (zero for
	// unknown).
	StateSince time.Time `json:"state_since"`
	GossipAddr string    `json:"gossip_addr,omitempty"`
	PeerAddr   string    `json:"peer_addr,omitempty"`
	HTTPAddr   string    `json:"http_addr,omitempty"`
	GRPCAddr   string    `json:"grpc_addr,omitempty"`
	KafkaAddr  string    `json:"kafka_addr,omitempty"`
	Version    string    `json:"version,omitempty"`
	Instance   string    `json:"instance,omitempty"`
	Admitted   bool      `json:"admitted"`
	// Suffrage is voter, nonvoter or none (not in the Raft configuration).
	Suffrage string `json:"raft_suffrage"`
	// RaftLeader is true for the Raft leader this agent knows.
	RaftLeader bool `json:"raft_leader"`
}

// Members returns every agent known to gossip or to the Raft
// configuration, sorted by ID.
func (n *Node) Members() []Member {
	if !n.started.Load() {
		return nil
	}
	byID := map[string]*Member{}
	for id, g := range n.gossip.snapshot() {
		m := &Member{ID: id, GossipState: g.State, StateSince: g.Since, GossipAddr: g.Addr, Suffrage: SuffrageNone}
		if g.MetaOK {
			m.PeerAddr, m.HTTPAddr, m.GRPCAddr, m.KafkaAddr = g.Meta.Peer, g.Meta.HTTP, g.Meta.GRPC, g.Meta.Kafka
			m.Version = g.Meta.Ver
			m.Instance, m.Admitted = g.Meta.Instance, g.Meta.Admitted
		}
		byID[id] = m
	}
	if servers, err := n.configuration(); err == nil {
		for _, s := range servers {
			id := string(s.ID)
			m, ok := byID[id]
			if !ok {
				m = &Member{ID: id, GossipState: StateUnknown, PeerAddr: string(s.Address)}
				byID[id] = m
			}
			m.Suffrage = SuffrageNonvoter
			if s.Suffrage == raft.Voter {
				m.Suffrage = SuffrageVoter
			}
		}
	}
	leader := n.LeaderID()
	out := make([]Member, 0, len(byID))
	for _, m := range byID {
		m.RaftLeader = m.ID == leader && leader != ""
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PeerAddr returns the peer (Raft + RPC) host:port of an agent: from its
// gossip metadata, else from the Raft configuration.
func (n *Node) PeerAddr(nodeID string) (string, bool) {
	if !n.started.Load() {
		return "", false
	}
	if nodeID == n.cfg.NodeID {
		return n.peer.Addr(), true
	}
	if g, ok := n.gossip.lookup(nodeID); ok && g.MetaOK && g.Meta.Peer != "" {
		return g.Meta.Peer, true
	}
	if servers, err := n.configuration(); err == nil {
		for _, s := range servers {
			if string(s.ID) == nodeID && s.Address != "" {
				return string(s.Address), true
			}
		}
	}
	return "", false
}

// ClusterStatus is this agent's view of the cluster in the shape of GET
// /api/v1/cluster (it implements transport.ClusterInfo).
func (n *Node) ClusterStatus() transport.ClusterStatus {
	st := n.Status()
	out := transport.ClusterStatus{
		NodeID: st.NodeID, RaftState: st.State, Leader: st.LeaderID, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContactMs: st.LastContactMs,
		Voters: st.Voters, NonVoters: st.NonVoters,
	}
	leads := map[string][]string{}
	if n.started.Load() {
		for _, p := range n.fsm.AllPartitions() {
			if p.Leader != "" {
				leads[p.Leader] = append(leads[p.Leader], fmt.Sprintf("%s/%d", p.Topic, p.Partition))
			}
		}
	}
	var brokers map[string]int32
	if n.started.Load() {
		brokers = n.fsm.BrokerIDs()
	}
	for _, m := range n.Members() {
		out.Members = append(out.Members, transport.ClusterMember{
			ID: m.ID, GossipState: m.GossipState, Suffrage: m.Suffrage, RaftLeader: m.RaftLeader,
			HTTPAddr: m.HTTPAddr, GRPCAddr: m.GRPCAddr, PeerAddr: m.PeerAddr, KafkaAddr: m.KafkaAddr, Version: m.Version,
			BrokerID: brokers[m.ID], Leaderships: leads[m.ID],
		})
	}
	return out
}
