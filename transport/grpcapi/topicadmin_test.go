package grpcapi

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func configMap(es []*pb.TopicConfigEntry) map[string]string {
	out := map[string]string{}
	for _, e := range es {
		out[e.Name] = e.Value
	}
	return out
}

func TestAlterTopicConfigAndCreatePartitions(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRecordBytes = 1 << 20 })
	ctx := ctxT(t)
	if _, err := e.client.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "orders", Partitions: i32(2)}); err != nil {
		t.Fatal(err)
	}
	desc, err := e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Configs) != 5 || desc.Configs[0].Name != "cleanup.policy" || !desc.Configs[0].IsDefault ||
		configMap(desc.Configs)["max.message.bytes"] != "1048576" {
		t.Fatalf("described configs = %v", desc.Configs)
	}
	alt, err := e.client.AlterTopicConfig(ctx, &pb.AlterTopicConfigRequest{Name: "orders",
		Configs: map[string]string{"retention.ms": "3600000", "compression.type": "none"}})
	if err != nil {
		t.Fatal(err)
	}
	if m := configMap(alt.Configs); m["retention.ms"] != "3600000" || m["compression.type"] != "none" || m["retention.bytes"] != "-1" ||
		alt.Topic.RetentionMs != 3600000 || alt.Topic.Compression != "none" {
		t.Fatalf("after alter: %v %v", alt.Topic, alt.Configs)
	}
	for name, cfg := range map[string]map[string]string{
		"unknown key": {"segment.ms": "1"},
		"bad value":   {"retention.bytes": "lots"},
		"compact":     {"cleanup.policy": "compact"},
		"none":        {},
	} {
		_, err := e.client.AlterTopicConfig(ctx, &pb.AlterTopicConfigRequest{Name: "orders", Configs: cfg})
		wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
		if name == "unknown key" && !strings.Contains(err.Error(), "segment.ms") {
			t.Errorf("unknown key error %v does not name the key", err)
		}
	}
	_, err = e.client.AlterTopicConfig(ctx, &pb.AlterTopicConfigRequest{Name: "nope", Configs: map[string]string{"retention.ms": "1"}})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)

	cp, err := e.client.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Name: "orders", Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Topic.Partitions != 4 || len(cp.Partitions) != 4 {
		t.Fatalf("after CreatePartitions: %v", cp)
	}
	e.produce(t, "orders", 3, "new")
	for _, n := range []int32{2, 4} {
		_, err = e.client.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Name: "orders", Count: n})
		wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
	}
	_, err = e.client.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Count: 9})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
}

// A committed CreatePartitions is answered with its topic even when this
// agent's read barrier (reads wait for produces it acknowledged) gives up:
// the answer reads the partitions as applied, never "not applied" for a
// change that was made. GetMetadata, which clients route produces by, reads
// them the same way.
func TestAnswersAfterWritesSkipTheReadBarrier(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	e.agent.setErr("Partitions", fmt.Errorf("%w: this agent has not applied what it acknowledged", fsm.ErrUnavailable))
	defer e.agent.setErr("Partitions", nil)
	resp, err := e.client.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Name: "t", Count: 3})
	if err != nil || len(resp.GetPartitions()) != 3 {
		t.Fatalf("CreatePartitions with the barrier failing: %v, %v", resp, err)
	}
	md, err := e.client.GetMetadata(ctx, &pb.GetMetadataRequest{Topics: []string{"t"}})
	if err != nil || len(md.GetTopics()) != 1 || len(md.GetTopics()[0].GetPartitions()) != 3 {
		t.Fatalf("GetMetadata with the barrier failing: %v, %v", md, err)
	}
}
