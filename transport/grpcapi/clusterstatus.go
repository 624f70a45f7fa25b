package grpcapi

import (
	"context"
	"fmt"
	"strings"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// GetClusterStatus implements pb.StreamHouseServer: this agent's cluster
// view (Config.Cluster) and its own health facts (Config.Readiness,
// Config.Health). A key restricted to topics sees only the partition
// leaderships of its topics.
func (s *service) GetClusterStatus(ctx context.Context, _ *pb.GetClusterStatusRequest) (*pb.GetClusterStatusResponse, error) {
	if s.cfg.Cluster == nil {
		return nil, fmt.Errorf("%w: cluster status", errUnimplemented)
	}
	st := s.cfg.Cluster.ClusterStatus()
	out := &pb.GetClusterStatusResponse{
		NodeId: st.NodeID, RaftState: st.RaftState, RaftLeader: st.Leader, RaftTerm: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContactMs: st.LastContactMs,
		Voters: st.Voters, NonVoters: st.NonVoters, Members: make([]*pb.ClusterMember, 0, len(st.Members)),
		Checkpoint: &pb.CheckpointStatus{},
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, &pb.ClusterMember{
			NodeId: m.ID, GossipState: m.GossipState, RaftSuffrage: m.Suffrage, RaftLeader: m.RaftLeader,
			GrpcAddress: m.GRPCAddr, HttpAddress: m.HTTPAddr, PeerAddress: m.PeerAddr,
			KafkaAddress: m.KafkaAddr, BrokerId: m.BrokerID,
			PartitionLeaderships: s.visibleLeaderships(ctx, m.Leaderships),
		})
	}
	out.Ready, out.NotReadyReason = s.cfg.Readiness.Ready()
	if s.cfg.Health != nil {
		h := s.cfg.Health.LocalHealth()
		out.UnflushedBytes = h.UnflushedBytes
		out.Checkpoint = checkpointToPB(h.Checkpoint)
	}
	return out, nil
}

// visibleLeaderships keeps the "topic/partition" entries whose topic the
// caller's key may see.
func (s *service) visibleLeaderships(ctx context.Context, leads []string) []string {
	out := make([]string, 0, len(leads))
	for _, l := range leads {
		topic := l
		if i := strings.LastIndexByte(l, '/'); i >= 0 {
			topic = l[:i]
		}
		if s.cfg.Auth.TopicVisible(ctx, topic) {
			out = append(out, l)
		}
	}
	return out
}

func checkpointToPB(c transport.CheckpointStatus) *pb.CheckpointStatus {
	out := &pb.CheckpointStatus{
		Configured: c.Configured, Connected: c.Connected, Leader: c.Leader, LagMs: c.Lag.Milliseconds(),
		ConsecutiveFailures: int64(c.ConsecutiveFailures), LastError: c.LastError, LastRaftIndex: c.LastRaftIndex,
	}
	if !c.LastTakenAt.IsZero() {
		out.LastTakenAtMs = c.LastTakenAt.UnixMilli()
	}
	return out
}
