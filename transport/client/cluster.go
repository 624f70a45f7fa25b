package client

import (
	"context"
	"time"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// ClusterStatus is one agent's view of the cluster and its own health
// facts (GetClusterStatus).
type ClusterStatus struct {
	NodeID         string           `json:"node_id"`
	RaftState      string           `json:"raft_state"`
	RaftLeader     string           `json:"raft_leader"`
	RaftTerm       uint64           `json:"raft_term"`
	CommitIndex    uint64           `json:"commit_index"`
	AppliedIndex   uint64           `json:"applied_index"`
	LastContactMs  int64            `json:"last_contact_ms"` // 0 on the leader, -1 never
	Voters         []string         `json:"voters"`
	NonVoters      []string         `json:"non_voters"`
	Members        []ClusterMember  `json:"members"`
	Ready          bool             `json:"ready"`
	NotReadyReason string           `json:"not_ready_reason,omitempty"`
	UnflushedBytes int64            `json:"unflushed_bytes"`
	Checkpoint     CheckpointStatus `json:"checkpoint"`
}

// ClusterMember is one agent as the answering agent sees it.
type ClusterMember struct {
	NodeID      string   `json:"node_id"`
	GossipState string   `json:"gossip_state"`  // alive, suspect, dead, left, unknown
	Suffrage    string   `json:"raft_suffrage"` // voter, nonvoter, none
	RaftLeader  bool     `json:"raft_leader"`
	GRPCAddress string   `json:"grpc_address,omitempty"`
	HTTPAddress string   `json:"http_address,omitempty"`
	PeerAddress string   `json:"peer_address,omitempty"`
	Leaderships []string `json:"partition_leaderships"` // "topic/partition"
	// KafkaAddress is the advertised Kafka listener ("" when off) and
	// BrokerID its broker ID (0 until registered).
	KafkaAddress string `json:"kafka_address,omitempty"`
	BrokerID     int32  `json:"broker_id,omitempty"`
}

// CheckpointStatus is an agent's Postgres checkpointing.
type CheckpointStatus struct {
	Configured          bool   `json:"configured"`
	Connected           bool   `json:"connected"`
	Leader              bool   `json:"leader"`
	LagMs               int64  `json:"lag_ms"`
	ConsecutiveFailures int64  `json:"consecutive_failures"`
	LastError           string `json:"last_error,omitempty"`
	LastRaftIndex       uint64 `json:"last_raft_index"`
	LastTakenAtMs       int64  `json:"last_taken_at_ms"`
}

// ClusterStatus asks any agent (the one that answered last first) for its
// cluster view.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.call(ctx, "GetClusterStatus", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
		if err == nil {
			out = clusterStatusFromPB(resp)
		}
		return err
	})
	return out, err
}

// AgentStatus asks the agent at addr (its gRPC host:port) for its view and
// facts, without trying another agent.
func (c *Client) AgentStatus(ctx context.Context, addr string) (ClusterStatus, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return ClusterStatus{}, err
	}
	resp, err := pb.NewStreamHouseClient(cc).GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
	if err != nil {
		return ClusterStatus{}, wrapErr("GetClusterStatus", err)
	}
	return clusterStatusFromPB(resp), nil
}

func clusterStatusFromPB(r *pb.GetClusterStatusResponse) ClusterStatus {
	out := ClusterStatus{
		NodeID: r.GetNodeId(), RaftState: r.GetRaftState(), RaftLeader: r.GetRaftLeader(), RaftTerm: r.GetRaftTerm(),
		CommitIndex: r.GetCommitIndex(), AppliedIndex: r.GetAppliedIndex(), LastContactMs: r.GetLastContactMs(),
		Voters: r.GetVoters(), NonVoters: r.GetNonVoters(), Members: make([]ClusterMember, 0, len(r.GetMembers())),
		Ready: r.GetReady(), NotReadyReason: r.GetNotReadyReason(), UnflushedBytes: r.GetUnflushedBytes(),
	}
	for _, m := range r.GetMembers() {
		out.Members = append(out.Members, ClusterMember{
			NodeID: m.GetNodeId(), GossipState: m.GetGossipState(), Suffrage: m.GetRaftSuffrage(), RaftLeader: m.GetRaftLeader(),
			GRPCAddress: m.GetGrpcAddress(), HTTPAddress: m.GetHttpAddress(), PeerAddress: m.GetPeerAddress(),
			Leaderships: m.GetPartitionLeaderships(), KafkaAddress: m.GetKafkaAddress(), BrokerID: m.GetBrokerId(),
		})
	}
	if cp := r.GetCheckpoint(); cp != nil {
		out.Checkpoint = CheckpointStatus{
			Configured: cp.GetConfigured(), Connected: cp.GetConnected(), Leader: cp.GetLeader(), LagMs: cp.GetLagMs(),
			ConsecutiveFailures: cp.GetConsecutiveFailures(), LastError: cp.GetLastError(),
			LastRaftIndex: cp.GetLastRaftIndex(), LastTakenAtMs: cp.GetLastTakenAtMs(),
		}
	}
	return out
}

// agentStatusTimeout bounds each agent's answer in CheckHealth when ctx has
// no earlier deadline.
const agentStatusTimeout = 5 * time.Second
