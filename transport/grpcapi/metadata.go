package grpcapi

import (
	"context"
	"errors"
	"sort"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// GetMetadata implements pb.StreamHouseServer: the agents (from the cluster
// view) and each requested topic's partition leaders, which is what a client
// needs to send produce requests straight to a partition's leader.
func (s *service) GetMetadata(ctx context.Context, req *pb.GetMetadataRequest) (*pb.GetMetadataResponse, error) {
	out := &pb.GetMetadataResponse{Agents: []*pb.Agent{}, Topics: []*pb.TopicMetadata{}}
	if s.cfg.Cluster != nil {
		st := s.cfg.Cluster.ClusterStatus()
		out.NodeId, out.RaftLeader = st.NodeID, st.Leader
		for _, m := range st.Members {
			out.Agents = append(out.Agents, &pb.Agent{
				NodeId: m.ID, GrpcAddress: m.GRPCAddr, HttpAddress: m.HTTPAddr,
				RaftLeader: m.RaftLeader, GossipState: m.GossipState,
			})
		}
		sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].NodeId < out.Agents[j].NodeId })
	}

	all := len(req.GetTopics()) == 0
	var topics []fsm.Topic
	if all {
		for _, t := range s.cfg.Topics.Topics() {
			if s.cfg.Auth.TopicVisible(ctx, t.Name) { // a topic-restricted key sees its topics only
				topics = append(topics, t)
			}
		}
	} else {
		seen := map[string]bool{}
		for i, name := range req.GetTopics() {
			if name == "" {
				return nil, invalid("topics[%d] is empty", i)
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			if err := s.authorize(ctx, transport.ScopeRead, name); err != nil {
				return nil, err
			}
			t, err := s.cfg.Topics.Topic(name)
			if err != nil {
				return nil, err
			}
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		ps, err := s.cfg.Topics.PartitionsForRouting(t.Name) // leaders and epochs: no read barrier
		if err != nil {
			if all && errors.Is(err, fsm.ErrTopicNotFound) {
				continue // deleted since it was listed
			}
			return nil, err
		}
		tm := &pb.TopicMetadata{Name: t.Name, Id: t.ID, Partitions: make([]*pb.PartitionMetadata, len(ps))}
		for i, p := range ps {
			tm.Partitions[i] = &pb.PartitionMetadata{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch}
		}
		out.Topics = append(out.Topics, tm)
	}
	return out, nil
}
