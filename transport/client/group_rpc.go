package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Consumer-group membership calls (Kafka's classic group protocol over
// gRPC). They go to the group coordinator, the Raft leader: the client
// sends them to the leader it knows from the metadata and follows a
// not_coordinator answer to the address it names.

// coordRetries bounds how often a group call follows not_coordinator or
// UNAVAILABLE answers (a leader election) before giving up.
const coordRetries = 20

// coordRetryWait is the pause between those retries.
const coordRetryWait = 100 * time.Millisecond

// coordinatorAddr is where group calls go: the address a not_coordinator
// answer named, else the Raft leader's, else any agent.
func (c *Client) coordinatorAddr(attempt int) string {
	c.mu.Lock()
	addr := c.coordAddr
	if addr == "" {
		addr = c.meta.nodeAddr[c.meta.raftLeader]
	}
	c.mu.Unlock()
	if addr != "" && attempt%3 != 2 {
		return addr
	}
	cands := c.candidates()
	return cands[attempt%len(cands)]
}

func (c *Client) setCoordinator(addr string) {
	c.mu.Lock()
	c.coordAddr = addr
	c.mu.Unlock()
}

// coordCall runs fn against the group coordinator, following
// not_coordinator and UNAVAILABLE answers (nothing was done) to the new
// coordinator.
func (c *Client) coordCall(ctx context.Context, op string, fn func(context.Context, pb.StreamHouseClient) error) error {
	var err error
	for attempt := 0; attempt < coordRetries; attempt++ {
		addr := c.coordinatorAddr(attempt)
		cc, cerr := c.conn(addr)
		if cerr != nil {
			return cerr
		}
		err = wrapErr(op, fn(ctx, pb.NewStreamHouseClient(cc)))
		var e *Error
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return err
		case errors.As(err, &e) && e.Kind == KindNotCoordinator:
			c.setCoordinator(e.Coordinator)
		case Code(err) == codes.Unavailable:
			c.setCoordinator("")
			c.refreshSoon(ctx, time.Now())
		default:
			return err
		}
		c.log.Debug("not the group coordinator, retrying", "op", op, "addr", addr, "err", err)
		if serr := sleepCtx(ctx, coordRetryWait); serr != nil {
			return err
		}
	}
	return err
}

// GroupProtocol is a protocol (assignor) with the member's metadata.
type GroupProtocol struct {
	Name     string
	Metadata []byte
}

// JoinGroupRequest is a JoinGroup call.
type JoinGroupRequest struct {
	Group            string
	MemberID         string // "" for a new member
	InstanceID       string
	ClientID         string
	ProtocolType     string
	Protocols        []GroupProtocol
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
}

// JoinGroupResult is the generation the member joined.
type JoinGroupResult struct {
	Generation   int32
	ProtocolType string
	Protocol     string
	LeaderID     string
	MemberID     string
	Members      []GroupProtocolMember // only for the leader
}

// GroupProtocolMember is a member with its metadata for the chosen
// protocol, as the group leader sees it.
type GroupProtocolMember struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// JoinGroup joins a group and waits for its next generation.
func (c *Client) JoinGroup(ctx context.Context, req JoinGroupRequest) (JoinGroupResult, error) {
	in := &pb.JoinGroupRequest{Group: req.Group, MemberId: req.MemberID, InstanceId: req.InstanceID, ClientId: req.ClientID,
		ProtocolType: req.ProtocolType, SessionTimeoutMs: int32(req.SessionTimeout.Milliseconds()),
		RebalanceTimeoutMs: int32(req.RebalanceTimeout.Milliseconds())}
	for _, p := range req.Protocols {
		in.Protocols = append(in.Protocols, &pb.GroupProtocol{Name: p.Name, Metadata: p.Metadata})
	}
	var out *pb.JoinGroupResponse
	err := c.coordCall(ctx, "JoinGroup", func(ctx context.Context, sc pb.StreamHouseClient) (err error) {
		out, err = sc.JoinGroup(ctx, in)
		return err
	})
	if err != nil {
		return JoinGroupResult{}, err
	}
	r := JoinGroupResult{Generation: out.GetGeneration(), ProtocolType: out.GetProtocolType(), Protocol: out.GetProtocol(),
		LeaderID: out.GetLeaderId(), MemberID: out.GetMemberId()}
	for _, m := range out.GetMembers() {
		r.Members = append(r.Members, GroupProtocolMember{MemberID: m.GetMemberId(), InstanceID: m.GetInstanceId(), Metadata: m.GetMetadata()})
	}
	return r, nil
}

// SyncGroup sends the leader's assignments (by member ID; nil from the
// other members) and returns this member's assignment.
func (c *Client) SyncGroup(ctx context.Context, group string, generation int32, memberID string, assignments map[string][]byte) ([]byte, error) {
	in := &pb.SyncGroupRequest{Group: group, Generation: generation, MemberId: memberID}
	for id, a := range assignments {
		in.Assignments = append(in.Assignments, &pb.GroupAssignment{MemberId: id, Assignment: a})
	}
	var out *pb.SyncGroupResponse
	err := c.coordCall(ctx, "SyncGroup", func(ctx context.Context, sc pb.StreamHouseClient) (err error) {
		out, err = sc.SyncGroup(ctx, in)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetAssignment(), nil
}

// Heartbeat keeps a member's session.
func (c *Client) Heartbeat(ctx context.Context, group string, generation int32, memberID string) error {
	in := &pb.HeartbeatRequest{Group: group, Generation: generation, MemberId: memberID}
	return c.coordCall(ctx, "Heartbeat", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.Heartbeat(ctx, in)
		return err
	})
}

// LeaveGroup removes a member from its group.
func (c *Client) LeaveGroup(ctx context.Context, group, memberID string) error {
	in := &pb.LeaveGroupRequest{Group: group, MemberId: memberID}
	return c.coordCall(ctx, "LeaveGroup", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.LeaveGroup(ctx, in)
		return err
	})
}

// CommitMemberOffsets commits offsets as a group member: refused
// (illegal_generation, unknown_member) unless the member is in the group's
// current generation.
func (c *Client) CommitMemberOffsets(ctx context.Context, group string, generation int32, memberID string, offsets ...OffsetCommit) error {
	in := &pb.CommitOffsetsRequest{Group: group, MemberId: memberID, Generation: generation}
	for _, o := range offsets {
		in.Offsets = append(in.Offsets, &pb.OffsetCommit{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Metadata: o.Metadata})
	}
	return c.coordCall(ctx, "CommitOffsets", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.CommitOffsets(ctx, in)
		return err
	})
}

// GroupMembers is a group's membership (the fsm's type): state, protocol,
// generation, leader and members with their decoded assignments.
type GroupMembers = fsm.GroupMembershipDescription

// DescribeGroupMembers returns a group's committed offsets and its
// membership (from any agent's replicated state).
func (c *Client) DescribeGroupMembers(ctx context.Context, group string) (GroupDescription, GroupMembers, error) {
	var resp *pb.DescribeGroupResponse
	err := c.call(ctx, "DescribeGroup", func(ctx context.Context, sc pb.StreamHouseClient) (err error) {
		resp, err = sc.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: group})
		return err
	})
	if err != nil {
		return GroupDescription{}, GroupMembers{}, err
	}
	d := resp.GetGroup()
	m := GroupMembers{Group: d.GetGroup(), State: d.GetState(), ProtocolType: d.GetProtocolType(), Protocol: d.GetProtocol(),
		Generation: d.GetGeneration(), LeaderID: d.GetLeaderId()}
	for _, x := range d.GetMembers() {
		md := fsm.MemberDescription{MemberID: x.GetMemberId(), InstanceID: x.GetInstanceId(), ClientID: x.GetClientId(), ClientHost: x.GetClientHost()}
		for _, tp := range x.GetAssignment() {
			md.Partitions = append(md.Partitions, fsm.TopicPartitions{Topic: tp.GetTopic(), Partitions: tp.GetPartitions()})
		}
		m.Members = append(m.Members, md)
	}
	return groupFromPB(d), m, nil
}
