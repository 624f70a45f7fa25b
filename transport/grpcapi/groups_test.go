package grpcapi

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestGroupRPCs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 2)
	e.createTopic(t, "other", 1)
	// Partition 0 gets timestamps 1000..1004.
	req := &pb.ProduceRequest{Topic: "t"}
	for i := range 5 {
		req.Records = append(req.Records, &pb.ProduceRecord{Partition: i32(0), Value: []byte("x"), TimestampMs: int64(1000 + i)})
	}
	if _, err := e.client.Produce(ctx, req); err != nil {
		t.Fatal(err)
	}
	e.produce(t, "t", 1, "a", "b")

	_, err := e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g1", Offsets: []*pb.OffsetCommit{
		{Topic: "t", Partition: 0, Offset: 3, Metadata: "m"}, {Topic: "t", Partition: 1, Offset: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}

	offs, err := e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs.Offsets) != 2 || offs.Offsets[0].Offset != 3 || offs.Offsets[0].Metadata != "m" ||
		offs.Offsets[0].CommittedAtMs != e.agent.clock || offs.Offsets[1].Partition != 1 || offs.Offsets[1].Offset != 2 {
		t.Fatalf("FetchOffsets = %v", offs)
	}
	if offs, err := e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "g1", Topic: "t"}); err != nil || len(offs.Offsets) != 2 {
		t.Fatalf("FetchOffsets(t) = %v, %v", offs, err)
	}
	if offs, err := e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "g1", Topic: "other"}); err != nil || len(offs.Offsets) != 0 {
		t.Fatalf("FetchOffsets(other) = %v, %v", offs, err)
	}

	desc, err := e.client.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	g := desc.Group
	if g.Group != "g1" || g.TotalLag != 2 || len(g.Partitions) != 2 ||
		g.Partitions[0].Lag != 2 || g.Partitions[0].HighWatermark != 5 || g.Partitions[1].Lag != 0 {
		t.Fatalf("DescribeGroup = %v", g)
	}

	list, err := e.client.ListGroups(ctx, &pb.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Groups) != 1 || list.Groups[0].Group != "g1" || list.Groups[0].PartitionCount != 2 ||
		list.Groups[0].TotalLag != 2 || len(list.Groups[0].Topics) != 1 || list.Groups[0].Topics[0] != "t" {
		t.Fatalf("ListGroups = %v", list)
	}

	// The backend refuses a commit past the high watermark.
	_, err = e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g1", Offsets: []*pb.OffsetCommit{{Topic: "t", Partition: 0, Offset: 6}}})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)

	reset := func(s pb.ResetStrategy, parts []int32, off, ts int64) *pb.GroupDescription {
		t.Helper()
		resp, err := e.client.ResetGroup(ctx, &pb.ResetGroupRequest{Group: "g1", Strategy: s, Topic: "t", Partitions: parts, Offset: off, TimestampMs: ts})
		if err != nil {
			t.Fatalf("ResetGroup %s: %v", s, err)
		}
		return resp.Group
	}
	if g := reset(pb.ResetStrategy_RESET_STRATEGY_EARLIEST, []int32{0}, 0, 0); g.Partitions[0].Offset != 0 || g.Partitions[1].Offset != 2 {
		t.Errorf("earliest on partition 0 = %v", g)
	}
	if g := reset(pb.ResetStrategy_RESET_STRATEGY_LATEST, nil, 0, 0); g.Partitions[0].Offset != 5 || g.Partitions[1].Offset != 2 || g.TotalLag != 0 {
		t.Errorf("latest = %v", g)
	}
	if g := reset(pb.ResetStrategy_RESET_STRATEGY_OFFSET, []int32{0}, 100, 0); g.Partitions[0].Offset != 5 {
		t.Errorf("offset 100 (clamped) = %v", g)
	}
	if g := reset(pb.ResetStrategy_RESET_STRATEGY_OFFSET, []int32{0}, 1, 0); g.Partitions[0].Offset != 1 {
		t.Errorf("offset 1 = %v", g)
	}
	if g := reset(pb.ResetStrategy_RESET_STRATEGY_TIMESTAMP, []int32{0}, 0, 1003); g.Partitions[0].Offset != 3 {
		t.Errorf("timestamp 1003 = %v", g)
	}

	if _, err := e.client.DeleteGroup(ctx, &pb.DeleteGroupRequest{Group: "g1"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "g1"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "g1"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.DeleteGroup(ctx, &pb.DeleteGroupRequest{Group: "g1"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	if list, _ := e.client.ListGroups(ctx, &pb.ListGroupsRequest{}); len(list.Groups) != 0 {
		t.Errorf("groups after delete = %v", list.Groups)
	}
}

func TestGroupBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	e.produce(t, "t", 0, "a")
	if _, err := e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g", Offsets: []*pb.OffsetCommit{{Topic: "t", Offset: 1}}}); err != nil {
		t.Fatal(err)
	}
	commit := func(group string, cs ...*pb.OffsetCommit) func() error {
		return func() error {
			_, err := e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: group, Offsets: cs})
			return err
		}
	}
	resetReq := func(r *pb.ResetGroupRequest) func() error {
		return func() error {
			_, err := e.client.ResetGroup(ctx, r)
			return err
		}
	}
	earliest := pb.ResetStrategy_RESET_STRATEGY_EARLIEST
	cases := []errCase[func() error]{
		{"commit without group", commit("", &pb.OffsetCommit{Topic: "t"}), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit nothing", commit("g"), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit without topic", commit("g", &pb.OffsetCommit{Offset: 1}), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit negative partition", commit("g", &pb.OffsetCommit{Topic: "t", Partition: -1}), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit negative offset", commit("g", &pb.OffsetCommit{Topic: "t", Offset: -1}), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit past the high watermark", commit("g", &pb.OffsetCommit{Topic: "t", Offset: 2}), codes.InvalidArgument, transport.CodeBadRequest},
		{"commit unknown topic", commit("g", &pb.OffsetCommit{Topic: "nope"}), codes.NotFound, transport.CodeNotFound},
		{"commit unknown partition", commit("g", &pb.OffsetCommit{Topic: "t", Partition: 4}), codes.NotFound, transport.CodeNotFound},
		{"fetch offsets without group", func() error {
			_, err := e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"fetch offsets of unknown topic", func() error {
			_, err := e.client.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "g", Topic: "nope"})
			return err
		}, codes.NotFound, transport.CodeNotFound},
		{"describe without group", func() error {
			_, err := e.client.DescribeGroup(ctx, &pb.DescribeGroupRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"describe unknown group", func() error {
			_, err := e.client.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "nope"})
			return err
		}, codes.NotFound, transport.CodeNotFound},
		{"delete without group", func() error {
			_, err := e.client.DeleteGroup(ctx, &pb.DeleteGroupRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"reset without group", resetReq(&pb.ResetGroupRequest{Strategy: earliest, Topic: "t"}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset without strategy", resetReq(&pb.ResetGroupRequest{Group: "g", Topic: "t"}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset with unknown strategy", resetReq(&pb.ResetGroupRequest{Group: "g", Topic: "t", Strategy: 99}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset without topic", resetReq(&pb.ResetGroupRequest{Group: "g", Strategy: earliest}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset negative partition", resetReq(&pb.ResetGroupRequest{Group: "g", Strategy: earliest, Topic: "t", Partitions: []int32{-1}}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset negative offset", resetReq(&pb.ResetGroupRequest{Group: "g", Strategy: pb.ResetStrategy_RESET_STRATEGY_OFFSET, Topic: "t", Offset: -1}), codes.InvalidArgument, transport.CodeBadRequest},
		{"reset unknown topic", resetReq(&pb.ResetGroupRequest{Group: "g", Strategy: earliest, Topic: "nope"}), codes.NotFound, transport.CodeNotFound},
		{"reset unknown partition", resetReq(&pb.ResetGroupRequest{Group: "g", Strategy: earliest, Topic: "t", Partitions: []int32{9}}), codes.NotFound, transport.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.in(), c.code, c.kind) })
	}
	// Nothing moved.
	d, err := e.agent.DescribeGroup(context.Background(), "g")
	if err != nil || len(d.Partitions) != 1 || d.Partitions[0].Offset != 1 {
		t.Errorf("group after bad requests = %v, %v", d, err)
	}
}

func TestGroupWriteOutcomes(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	commit := &pb.CommitOffsetsRequest{Group: "g", Offsets: []*pb.OffsetCommit{{Topic: "t"}}}

	e.agent.setErr("CommitOffsets", fsm.ErrUnavailable)
	_, err := e.client.CommitOffsets(ctx, commit)
	wantCode(t, err, codes.Unavailable, transport.CodeUnavailable)

	e.agent.setErr("CommitOffsets", fsm.ErrOutcomeUnknown)
	_, err = e.client.CommitOffsets(ctx, commit)
	wantCode(t, err, codes.Unknown, transport.CodeOutcomeUnknown)
}
