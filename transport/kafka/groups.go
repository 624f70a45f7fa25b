package kafka

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// registerGroups registers the group coordinator's APIs (when the agent
// has a coordinator): FindCoordinator, the classic group protocol, the
// offsets and the group admin APIs.
func (s *Server) registerGroups(add func(int16, handler)) {
	if s.cfg.Coordinator == nil || s.cfg.Groups == nil {
		return
	}
	add(int16(kmsg.FindCoordinator), api(0, 4, s.handleFindCoordinator))
	add(int16(kmsg.JoinGroup), api(0, 9, s.handleJoinGroup))
	add(int16(kmsg.SyncGroup), api(0, 5, s.handleSyncGroup))
	add(int16(kmsg.Heartbeat), api(0, 4, s.handleHeartbeat))
	add(int16(kmsg.LeaveGroup), api(0, 5, s.handleLeaveGroup))
	add(int16(kmsg.OffsetCommit), api(0, 8, s.handleOffsetCommit))
	add(int16(kmsg.OffsetFetch), api(0, 8, s.handleOffsetFetch))
	add(int16(kmsg.ListGroups), api(0, 4, s.handleListGroups))
	add(int16(kmsg.DescribeGroups), api(0, 5, s.handleDescribeGroups))
	add(int16(kmsg.DeleteGroups), api(0, 2, s.handleDeleteGroups))
}

// joinWaitMargin bounds a JoinGroup beyond its rebalance timeout: the
// coordinator completes the rebalance within that timeout, so a longer
// wait means the coordinator is gone (the client then rejoins).
const joinWaitMargin = 10 * time.Second

// handleJoinGroup joins a member and blocks until the rebalance completes
// (the connection serves nothing else meanwhile, as in Kafka).
func (s *Server) handleJoinGroup(ctx context.Context, c *Conn, req *kmsg.JoinGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation, resp.MemberID = -1, req.MemberID
	if resp.ErrorCode = s.groupAccess(c, OpRead, req.Group); resp.ErrorCode != 0 {
		return resp, nil
	}
	jr := joinRequest(c, req)
	ctx, cancel := context.WithTimeout(ctx, max(jr.RebalanceTimeout, jr.SessionTimeout)+joinWaitMargin)
	defer cancel()
	res, err := s.cfg.Coordinator.Join(ctx, jr)
	if err != nil {
		var idReq *fsm.MemberIDRequiredError
		if errors.As(err, &idReq) {
			resp.MemberID = idReq.MemberID
		}
		resp.ErrorCode = groupErrorCode(err)
		if errors.Is(err, context.DeadlineExceeded) {
			resp.ErrorCode = groupErrorCode(fsm.ErrRebalanceInProgress)
		}
		return resp, nil
	}
	resp.Generation, resp.MemberID, resp.LeaderID = res.Generation, res.MemberID, res.LeaderID
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr(res.ProtocolType), kmsg.StringPtr(res.Protocol)
	for _, m := range res.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.MemberID, optString(m.InstanceID), m.Metadata
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}

// joinRequest converts a JoinGroup; v0 has no rebalance timeout (it is
// the session timeout).
func joinRequest(c *Conn, req *kmsg.JoinGroupRequest) fsm.JoinRequest {
	jr := fsm.JoinRequest{
		Group: req.Group, MemberID: req.MemberID, InstanceID: deref(req.InstanceID),
		ClientID: c.ClientID, ClientHost: clientHost(c.RemoteAddr()), ProtocolType: req.ProtocolType,
		SessionTimeout:   time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		RebalanceTimeout: time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		RequireMemberID:  req.Version >= 4,
	}
	if req.Version == 0 || jr.RebalanceTimeout <= 0 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, fsm.GroupProtocol{Name: p.Name, Metadata: p.Metadata})
	}
	return jr
}

// handleSyncGroup stores the leader's assignments and blocks until the
// member's assignment is known.
func (s *Server) handleSyncGroup(ctx context.Context, c *Conn, req *kmsg.SyncGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	if resp.ErrorCode = s.groupAccess(c, OpRead, req.Group); resp.ErrorCode != 0 {
		return resp, nil
	}
	sr := fsm.SyncRequest{Group: req.Group, Generation: req.Generation, MemberID: req.MemberID,
		InstanceID: deref(req.InstanceID), ProtocolType: deref(req.ProtocolType), Protocol: deref(req.Protocol)}
	for _, a := range req.GroupAssignment {
		sr.Assignments = append(sr.Assignments, fsm.MemberAssignment{MemberID: a.MemberID, Assignment: a.MemberAssignment})
	}
	ctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	res, err := s.cfg.Coordinator.Sync(ctx, sr)
	if err != nil {
		resp.ErrorCode = groupErrorCode(err)
		if errors.Is(err, context.DeadlineExceeded) {
			resp.ErrorCode = groupErrorCode(fsm.ErrRebalanceInProgress)
		}
		return resp, nil
	}
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr(res.ProtocolType), kmsg.StringPtr(res.Protocol)
	resp.MemberAssignment = res.Assignment
	return resp, nil
}

// syncWait bounds a follower's SyncGroup waiting for the leader's
// assignments; past it the member is told to rejoin.
const syncWait = 5 * time.Minute

func (s *Server) handleHeartbeat(ctx context.Context, c *Conn, req *kmsg.HeartbeatRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if resp.ErrorCode = s.groupAccess(c, OpRead, req.Group); resp.ErrorCode != 0 {
		return resp, nil
	}
	err := s.cfg.Coordinator.Heartbeat(ctx, req.Group, req.Generation, req.MemberID, deref(req.InstanceID))
	resp.ErrorCode = groupErrorCode(err)
	return resp, nil
}

// handleLeaveGroup removes one member (v0-v2) or several (v3+, each with
// its own error code).
func (s *Server) handleLeaveGroup(ctx context.Context, c *Conn, req *kmsg.LeaveGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if resp.ErrorCode = s.groupAccess(c, OpRead, req.Group); resp.ErrorCode != 0 {
		return resp, nil
	}
	members := []fsm.LeaveMember{{MemberID: req.MemberID}}
	if req.Version >= 3 {
		members = members[:0]
		for _, m := range req.Members {
			members = append(members, fsm.LeaveMember{MemberID: m.MemberID, InstanceID: deref(m.InstanceID)})
		}
	}
	errs, err := s.cfg.Coordinator.Leave(ctx, req.Group, members)
	if err != nil {
		resp.ErrorCode = groupErrorCode(err)
		return resp, nil
	}
	if req.Version < 3 {
		if len(errs) > 0 {
			resp.ErrorCode = groupErrorCode(errs[0])
		}
		return resp, nil
	}
	for i, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		if i < len(errs) {
			rm.ErrorCode = groupErrorCode(errs[i])
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// optString is nil for "" (a nullable string that is absent).
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// clientHost is the host part of a client address, with Kafka's leading
// slash.
func clientHost(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return "/" + a.String()
	}
	return "/" + host
}
