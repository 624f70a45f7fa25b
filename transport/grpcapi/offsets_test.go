package grpcapi

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// fixedOffsets answers offset 100+partition for every time, and records
// the times asked for.
type fixedOffsets struct{ asked []int64 }

func (o *fixedOffsets) OffsetForTimestamp(_ context.Context, _ string, p int32, ts int64) (fsm.TimestampOffset, error) {
	o.asked = append(o.asked, ts)
	return fsm.TimestampOffset{Offset: 100 + int64(p), LowWatermark: 1, HighWatermark: 200}, nil
}

func TestListOffsets(t *testing.T) {
	offs := &fixedOffsets{}
	e := newEnv(t, func(c *Config) { c.Offsets = offs })
	e.createTopic(t, "t", 3)
	ctx := ctxT(t)

	got, err := e.client.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "t", TimestampMs: 5})
	if err != nil || len(got.GetPartitions()) != 3 || got.GetPartitions()[2].GetOffset() != 102 || got.GetPartitions()[2].GetHighWatermark() != 200 {
		t.Fatalf("every partition: %v %v", got, err)
	}
	got, err = e.client.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "t", Partitions: []int32{2, 0}, TimestampMs: 7})
	if err != nil || len(got.GetPartitions()) != 2 || got.GetPartitions()[0].GetPartition() != 2 || got.GetPartitions()[1].GetOffset() != 100 {
		t.Fatalf("partitions 2, 0: %v %v", got, err)
	}
	// Earliest and latest come from the watermarks, without a lookup.
	asked := len(offs.asked)
	for _, ts := range []int64{OffsetEarliest, OffsetLatest} {
		got, err = e.client.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "t", Partitions: []int32{1}, TimestampMs: ts})
		if err != nil || got.GetPartitions()[0].GetOffset() != 0 {
			t.Fatalf("special %d: %v %v", ts, got, err)
		}
	}
	if len(offs.asked) != asked {
		t.Fatalf("earliest/latest looked up a timestamp: %v", offs.asked)
	}
	for _, tc := range []struct {
		req  *pb.ListOffsetsRequest
		code codes.Code
	}{
		{&pb.ListOffsetsRequest{TimestampMs: 5}, codes.InvalidArgument},
		{&pb.ListOffsetsRequest{Topic: "t", TimestampMs: -3}, codes.InvalidArgument},
		{&pb.ListOffsetsRequest{Topic: "missing", TimestampMs: 5}, codes.NotFound},
		{&pb.ListOffsetsRequest{Topic: "t", Partitions: []int32{3}, TimestampMs: 5}, codes.NotFound},
	} {
		if _, err := e.client.ListOffsets(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%v: %v, want %v", tc.req, err, tc.code)
		}
	}
}

// Without an Offsets backend a time is UNIMPLEMENTED; earliest and latest
// still answer.
func TestListOffsetsWithoutBackend(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	ctx := ctxT(t)
	if _, err := e.client.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "t", TimestampMs: 5}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("a time without a backend: %v", err)
	}
	if got, err := e.client.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "t", TimestampMs: OffsetLatest}); err != nil || len(got.GetPartitions()) != 1 {
		t.Fatalf("latest without a backend: %v %v", got, err)
	}
}
