package grpcapi

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// fakeCoordinator answers every call with err, or a fixed generation.
type fakeCoordinator struct {
	err     error
	commits []fsm.MemberCommit
}

func (f *fakeCoordinator) Join(_ context.Context, r fsm.JoinRequest) (fsm.JoinResult, error) {
	if f.err != nil {
		return fsm.JoinResult{}, f.err
	}
	return fsm.JoinResult{Generation: 3, ProtocolType: r.ProtocolType, Protocol: r.Protocols[0].Name, LeaderID: "m1", MemberID: "m1",
		Members: []fsm.JoinMember{{MemberID: "m1", Metadata: r.Protocols[0].Metadata}}}, nil
}

func (f *fakeCoordinator) Sync(context.Context, fsm.SyncRequest) (fsm.SyncResult, error) {
	return fsm.SyncResult{Assignment: []byte("a")}, f.err
}

func (f *fakeCoordinator) Heartbeat(context.Context, string, int32, string, string) error {
	return f.err
}

func (f *fakeCoordinator) Leave(context.Context, string, []fsm.LeaveMember) ([]error, error) {
	return []error{nil}, f.err
}

func (f *fakeCoordinator) CommitOffsets(_ context.Context, r fsm.MemberCommit) error {
	f.commits = append(f.commits, r)
	return f.err
}

func (f *fakeCoordinator) Describe(_ context.Context, g string) (fsm.GroupMembershipDescription, error) {
	return fsm.GroupMembershipDescription{Group: g, State: fsm.GroupStateStable, Generation: 3, LeaderID: "m1",
		Members: []fsm.MemberDescription{{MemberID: "m1", Partitions: []fsm.TopicPartitions{{Topic: "t", Partitions: []int32{0}}}}}}, f.err
}

func (f *fakeCoordinator) List(context.Context) ([]fsm.GroupListing, error) { return nil, f.err }
func (f *fakeCoordinator) IsCoordinator() (bool, string)                    { return f.err == nil, "n2" }

var _ transport.GroupCoordinator = (*fakeCoordinator)(nil)

func TestGroupMembershipRPCs(t *testing.T) {
	fc := &fakeCoordinator{}
	e := newEnv(t, func(c *Config) { c.Coordinator = fc })
	ctx := ctxT(t)
	_, err := e.client.JoinGroup(ctx, &pb.JoinGroupRequest{Group: "g", ProtocolType: "consumer"})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
	jr, err := e.client.JoinGroup(ctx, &pb.JoinGroupRequest{Group: "g", ProtocolType: "consumer", SessionTimeoutMs: 1000,
		Protocols: []*pb.GroupProtocol{{Name: "range", Metadata: []byte("md")}}})
	if err != nil || jr.Generation != 3 || jr.MemberId != "m1" || len(jr.Members) != 1 || string(jr.Members[0].Metadata) != "md" {
		t.Fatalf("join: %v %v", jr, err)
	}
	sr, err := e.client.SyncGroup(ctx, &pb.SyncGroupRequest{Group: "g", Generation: 3, MemberId: "m1"})
	if err != nil || string(sr.Assignment) != "a" {
		t.Fatalf("sync: %v %v", sr, err)
	}
	e.createTopic(t, "t", 1)
	if _, err := e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g", MemberId: "m1", Generation: 3,
		Offsets: []*pb.OffsetCommit{{Topic: "t", Partition: 0, Offset: 0}}}); err != nil {
		t.Fatal(err)
	}
	if len(fc.commits) != 1 || fc.commits[0].Generation != 3 || fc.commits[0].MemberID != "m1" {
		t.Fatalf("member commit reached the coordinator as %+v", fc.commits)
	}

	// Errors: a stale generation, and another agent coordinating.
	fc.err = fmt.Errorf("%w: generation 2", fsm.ErrIllegalGeneration)
	_, err = e.client.Heartbeat(ctx, &pb.HeartbeatRequest{Group: "g", Generation: 2, MemberId: "m1"})
	wantCode(t, err, codes.FailedPrecondition, transport.CodeIllegalGeneration)
	fc.err = &fsm.NotCoordinatorError{Leader: "n2"}
	e.agent.mu.Lock()
	e.agent.cluster.Members = append(e.agent.cluster.Members, transport.ClusterMember{ID: "n2", GRPCAddr: "10.0.0.2:9090"})
	e.agent.mu.Unlock()
	_, err = e.client.LeaveGroup(ctx, &pb.LeaveGroupRequest{Group: "g", MemberId: "m1"})
	d := wantCode(t, err, codes.FailedPrecondition, transport.CodeNotCoordinator)
	if d.GetCoordinator() != "10.0.0.2:9090" {
		t.Fatalf("not_coordinator names %q, want the leader's gRPC address", d.GetCoordinator())
	}
}
