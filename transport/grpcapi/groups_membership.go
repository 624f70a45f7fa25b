package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Consumer-group membership RPCs over the coordinator (Kafka's classic
// group protocol). A call to an agent that does not coordinate groups is
// answered FAILED_PRECONDITION not_coordinator with the coordinator's gRPC
// address in ErrorDetail.coordinator; the Go client retries there.

func (s *service) coordinator() (transport.GroupCoordinator, error) {
	if s.cfg.Coordinator == nil {
		return nil, fmt.Errorf("%w: consumer group membership", errUnimplemented)
	}
	return s.cfg.Coordinator, nil
}

// groupErr fills the coordinator's gRPC address into a not_coordinator
// error.
func (s *service) groupErr(err error) error {
	var nc *fsm.NotCoordinatorError
	if !errors.As(err, &nc) || s.cfg.Cluster == nil {
		return err
	}
	out := *nc
	for _, m := range s.cfg.Cluster.ClusterStatus().Members {
		if m.ID == nc.Leader {
			out.Addr = m.GRPCAddr
		}
	}
	return &out
}

// JoinGroup implements pb.StreamHouseServer.
func (s *service) JoinGroup(ctx context.Context, req *pb.JoinGroupRequest) (*pb.JoinGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" {
		return nil, invalid("group is required")
	}
	if req.GetProtocolType() == "" || len(req.GetProtocols()) == 0 {
		return nil, invalid("protocol_type and at least one protocol are required")
	}
	if req.GetSessionTimeoutMs() <= 0 || req.GetRebalanceTimeoutMs() < 0 {
		return nil, invalid("session_timeout_ms must be > 0 and rebalance_timeout_ms >= 0")
	}
	jr := fsm.JoinRequest{Group: req.GetGroup(), MemberID: req.GetMemberId(), InstanceID: req.GetInstanceId(),
		ClientID: req.GetClientId(), ClientHost: peerHost(ctx), ProtocolType: req.GetProtocolType(),
		SessionTimeout:   time.Duration(req.GetSessionTimeoutMs()) * time.Millisecond,
		RebalanceTimeout: time.Duration(req.GetRebalanceTimeoutMs()) * time.Millisecond}
	for i, p := range req.GetProtocols() {
		if p.GetName() == "" {
			return nil, invalid("protocols[%d].name is required", i)
		}
		jr.Protocols = append(jr.Protocols, fsm.GroupProtocol{Name: p.GetName(), Metadata: p.GetMetadata()})
	}
	res, err := c.Join(ctx, jr)
	if err != nil {
		return nil, s.groupErr(err)
	}
	out := &pb.JoinGroupResponse{Generation: res.Generation, ProtocolType: res.ProtocolType, Protocol: res.Protocol,
		LeaderId: res.LeaderID, MemberId: res.MemberID}
	for _, m := range res.Members {
		out.Members = append(out.Members, &pb.JoinGroupMember{MemberId: m.MemberID, InstanceId: m.InstanceID, Metadata: m.Metadata})
	}
	return out, nil
}

// SyncGroup implements pb.StreamHouseServer.
func (s *service) SyncGroup(ctx context.Context, req *pb.SyncGroupRequest) (*pb.SyncGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" || req.GetMemberId() == "" {
		return nil, invalid("group and member_id are required")
	}
	sr := fsm.SyncRequest{Group: req.GetGroup(), Generation: req.GetGeneration(), MemberID: req.GetMemberId(),
		InstanceID: req.GetInstanceId(), ProtocolType: req.GetProtocolType(), Protocol: req.GetProtocol()}
	for i, a := range req.GetAssignments() {
		if a.GetMemberId() == "" {
			return nil, invalid("assignments[%d].member_id is required", i)
		}
		sr.Assignments = append(sr.Assignments, fsm.MemberAssignment{MemberID: a.GetMemberId(), Assignment: a.GetAssignment()})
	}
	res, err := c.Sync(ctx, sr)
	if err != nil {
		return nil, s.groupErr(err)
	}
	return &pb.SyncGroupResponse{ProtocolType: res.ProtocolType, Protocol: res.Protocol, Assignment: res.Assignment}, nil
}

// Heartbeat implements pb.StreamHouseServer.
func (s *service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" || req.GetMemberId() == "" {
		return nil, invalid("group and member_id are required")
	}
	if err := c.Heartbeat(ctx, req.GetGroup(), req.GetGeneration(), req.GetMemberId(), req.GetInstanceId()); err != nil {
		return nil, s.groupErr(err)
	}
	return &pb.HeartbeatResponse{}, nil
}

// LeaveGroup implements pb.StreamHouseServer.
func (s *service) LeaveGroup(ctx context.Context, req *pb.LeaveGroupRequest) (*pb.LeaveGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	if req.GetGroup() == "" || (req.GetMemberId() == "" && req.GetInstanceId() == "") {
		return nil, invalid("group and member_id (or instance_id) are required")
	}
	errs, err := c.Leave(ctx, req.GetGroup(), []fsm.LeaveMember{{MemberID: req.GetMemberId(), InstanceID: req.GetInstanceId()}})
	if err == nil && len(errs) == 1 {
		err = errs[0]
	}
	if err != nil {
		return nil, s.groupErr(err)
	}
	return &pb.LeaveGroupResponse{}, nil
}

// commitAsMember commits a member's offsets through the coordinator.
func (s *service) commitAsMember(ctx context.Context, req *pb.CommitOffsetsRequest, commits []fsm.GroupCommit) error {
	c, err := s.coordinator()
	if err != nil {
		return err
	}
	err = c.CommitOffsets(ctx, fsm.MemberCommit{Group: req.GetGroup(), Generation: req.GetGeneration(),
		MemberID: req.GetMemberId(), Commits: commits})
	return s.groupErr(err)
}

// addMembership adds the group's membership to its description (nothing
// without a coordinator).
func (s *service) addMembership(ctx context.Context, out *pb.GroupDescription) error {
	if s.cfg.Coordinator == nil {
		return nil
	}
	d, err := s.cfg.Coordinator.Describe(ctx, out.GetGroup())
	if err != nil {
		return err
	}
	out.State, out.ProtocolType, out.Protocol, out.Generation, out.LeaderId = d.State, d.ProtocolType, d.Protocol, d.Generation, d.LeaderID
	for _, m := range d.Members {
		gm := &pb.GroupMember{MemberId: m.MemberID, InstanceId: m.InstanceID, ClientId: m.ClientID, ClientHost: m.ClientHost}
		for _, tp := range m.Partitions {
			gm.Assignment = append(gm.Assignment, &pb.TopicPartitions{Topic: tp.Topic, Partitions: tp.Partitions})
		}
		out.Members = append(out.Members, gm)
	}
	return nil
}

// peerHost is the caller's address as Kafka reports client hosts
// ("/1.2.3.4"), "" when unknown.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return ""
	}
	return "/" + host
}
