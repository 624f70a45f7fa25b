package grpcapi

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func i32(v int32) *int32 { return &v }

func TestTopicRPCs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)

	resp, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "orders", Partitions: i32(3), RetentionMs: 60000, RetentionBytes: 1 << 20, Compression: "lz4"})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Topic
	if got.Name != "orders" || got.Partitions != 3 || got.RetentionMs != 60000 || got.RetentionBytes != 1<<20 ||
		got.Compression != "lz4" || got.Id == 0 || got.CreatedAtMs != e.agent.clock {
		t.Fatalf("created topic = %v", got)
	}
	def, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "defaults"})
	if err != nil {
		t.Fatal(err)
	}
	if def.Topic.Partitions != 1 || def.Topic.Compression != "zstd" || def.Topic.RetentionMs != 0 {
		t.Fatalf("defaults = %v", def.Topic)
	}
	_, err = e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "orders"})
	wantCode(t, err, codes.AlreadyExists, transport.CodeTopicExists)

	list, err := e.client.ListTopics(ctx, &pb.ListTopicsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Topics) != 2 || list.Topics[0].Name != "defaults" || list.Topics[1].Name != "orders" {
		t.Fatalf("ListTopics = %v", list.Topics)
	}

	e.produce(t, "orders", 1, "a", "b")
	e.agent.setLeader("orders", 2, "agent-2")
	desc, err := e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if desc.Topic.Name != "orders" || len(desc.Partitions) != 3 {
		t.Fatalf("DescribeTopic = %v", desc)
	}
	p1, p2 := desc.Partitions[1], desc.Partitions[2]
	if p1.Partition != 1 || p1.HighWatermark != 2 || p1.LowWatermark != 0 || p1.Leader != "agent-1" || p1.LeaderEpoch != 1 {
		t.Errorf("partition 1 = %v", p1)
	}
	if p2.Leader != "agent-2" || p2.LeaderEpoch != 2 || p2.HighWatermark != 0 {
		t.Errorf("partition 2 = %v", p2)
	}
	e.agent.truncate("orders", 1, 1)
	desc, _ = e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
	if p := desc.Partitions[1]; p.LowWatermark != 1 || p.FlushedOffset != 1 || p.HighWatermark != 2 {
		t.Errorf("after retention, partition 1 = %v", p)
	}

	if _, err := e.client.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: "orders"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: "orders"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
}

func TestTopicBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	cases := []errCase[func() error]{
		{"create without name", func() error {
			_, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"create with 0 partitions", func() error {
			_, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "x", Partitions: i32(0)})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"create with negative partitions", func() error {
			_, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "x", Partitions: i32(-3)})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"create with unknown compression", func() error {
			_, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "x", Compression: "gzip"})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"describe without name", func() error {
			_, err := e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
		{"describe unknown", func() error {
			_, err := e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "nope"})
			return err
		}, codes.NotFound, transport.CodeNotFound},
		{"delete without name", func() error {
			_, err := e.client.DeleteTopic(ctx, &pb.DeleteTopicRequest{})
			return err
		}, codes.InvalidArgument, transport.CodeBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.in(), c.code, c.kind) })
	}
	if ts := e.agent.Topics(); len(ts) != 0 {
		t.Errorf("bad requests created topics: %v", ts)
	}
}
