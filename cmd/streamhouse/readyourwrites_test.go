package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// readYourWritesRounds is how many produce-then-read rounds each API runs.
const readYourWritesRounds = 40

// TestReadYourWritesOnForwardingAgent: an agent that leads a partition but
// is not the Raft leader acknowledges a produce as soon as the Raft leader
// applied it, before its own state machine does; a read from that same
// agent right after the acknowledgement — records at the acknowledged
// offset, the high watermark — still sees the record, over REST, gRPC and
// Kafka, round after round.
func TestReadYourWritesOnForwardingAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	waitFor(t, 30*time.Second, "3 voters", func() bool {
		st, ok := c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	createTopic(t, c.base(0), "ryw", 3)
	x, part := forwardingPartitionLeader(t, c, "ryw")
	t.Logf("node-%d leads ryw/%d and is not the Raft leader", x+1, part)
	t.Run("REST", func(t *testing.T) { restReadYourWrites(t, c.base(x), part) })
	t.Run("gRPC", func(t *testing.T) { grpcReadYourWrites(t, c.grpcAddr(x), part) })
	t.Run("Kafka", func(t *testing.T) { kafkaReadYourWrites(t, c.kafkaAddrs()[x], part) })
}

// forwardingPartitionLeader returns an agent that leads a partition of
// topic and is not the Raft leader, and that partition.
func forwardingPartitionLeader(t *testing.T, c *procCluster, topic string) (int, int32) {
	t.Helper()
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "partition leaders known", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && st.Leader != ""
	})
	for _, m := range st.Members {
		for _, l := range m.Leaderships {
			if p, ok := strings.CutPrefix(l, topic+"/"); ok && !m.RaftLeader {
				n, err := strconv.Atoi(p)
				if err == nil {
					return nodeIndex(m.ID), int32(n)
				}
			}
		}
	}
	t.Fatalf("every partition of %s is led by the Raft leader: %+v", topic, st.Members)
	return 0, 0
}

func restReadYourWrites(t *testing.T, base string, part int32) {
	for i := range readYourWritesRounds {
		val := fmt.Sprintf("rest-%d", i)
		var br batchResp
		code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": "ryw", "records": []map[string]any{
			{"partition": part, "value": val},
		}}, &br)
		if code != 200 || len(br.Offsets) != 1 {
			t.Fatalf("produce %s: %d %+v", val, code, br)
		}
		off := br.Offsets[0].Offset
		var r consumeResp
		if code := call(t, "GET", fmt.Sprintf("%s/api/v1/consume?topic=ryw&partition=%d&offset=%d&max_records=1", base, part, off), nil, &r); code != 200 {
			t.Fatalf("consume at %d: status %d", off, code)
		}
		if len(r.Records) != 1 || r.Records[0].Value != val || r.HighWatermark <= off {
			t.Fatalf("round %d: a read right after the ack of offset %d got %+v", i, off, r)
		}
		var parts transport.PartitionsResponse
		if code := call(t, "GET", base+"/api/v1/topics/ryw/partitions", nil, &parts); code != 200 || int(part) >= len(parts.Partitions) {
			t.Fatalf("partitions: status %d, %+v", code, parts)
		}
		if p := parts.Partitions[part]; p.Partition != part || p.HighWatermark <= off {
			t.Fatalf("round %d: partition %d's high watermark %d right after the ack of offset %d", i, p.Partition, p.HighWatermark, off)
		}
	}
}

func grpcReadYourWrites(t *testing.T, addr string, part int32) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc := pb.NewStreamHouseClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range readYourWritesRounds {
		val := fmt.Sprintf("grpc-%d", i)
		pr, err := sc.Produce(ctx, &pb.ProduceRequest{Topic: "ryw", Records: []*pb.ProduceRecord{{Partition: &part, Value: []byte(val)}}})
		if err != nil || len(pr.GetOffsets()) != 1 {
			t.Fatalf("produce %s: %v %v", val, err, pr)
		}
		off := pr.GetOffsets()[0].GetOffset()
		fr, err := sc.Fetch(ctx, &pb.FetchRequest{Topic: "ryw", Partition: part, Offset: off, MaxRecords: 1})
		if err != nil || len(fr.GetRecords()) != 1 || string(fr.GetRecords()[0].GetValue()) != val {
			t.Fatalf("round %d: a fetch right after the ack of offset %d got %v, %v", i, off, fr, err)
		}
		lo, err := sc.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "ryw", Partitions: []int32{part}, TimestampMs: -1})
		if err != nil || len(lo.GetPartitions()) != 1 || lo.GetPartitions()[0].GetOffset() <= off {
			t.Fatalf("round %d: latest offset right after the ack of offset %d: %v, %v", i, off, lo, err)
		}
	}
}

func kafkaReadYourWrites(t *testing.T, addr string, part int32) {
	cl := kafkaClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	md, err := adm.Metadata(ctx, "ryw")
	if err != nil {
		t.Fatal(err)
	}
	leader, topicID := md.Topics["ryw"].Partitions[part].Leader, md.Topics["ryw"].ID
	for i := range readYourWritesRounds {
		val := fmt.Sprintf("kafka-%d", i)
		rec := &kgo.Record{Topic: "ryw", Partition: part, Value: []byte(val)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", val, err)
		}
		ends, err := adm.ListEndOffsets(ctx, "ryw")
		if err != nil {
			t.Fatal(err)
		}
		if end, _ := ends.Lookup("ryw", part); end.Err != nil || end.Offset <= rec.Offset {
			t.Fatalf("round %d: end offset right after the ack of offset %d: %+v", i, rec.Offset, end)
		}
		got := kafkaFetchOne(ctx, t, cl, leader, topicID, part, rec.Offset)
		if got != val {
			t.Fatalf("round %d: a fetch right after the ack of offset %d got %q", i, rec.Offset, got)
		}
	}
}

// kafkaFetchOne sends one Fetch without waiting to broker and returns the
// value of the record at offset ("" if none came back).
func kafkaFetchOne(ctx context.Context, t *testing.T, cl *kgo.Client, broker int32, topicID [16]byte, part int32, offset int64) string {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 0, 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = "ryw", topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(broker)))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch at %d: %d topics in the answer", offset, len(resp.Topics))
	}
	p := &resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("fetch at %d: error code %d", offset, p.ErrorCode)
	}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: "ryw", Partition: part},
		p, kgo.DefaultDecompressor(), nil)
	for _, r := range fp.Records {
		if r.Offset == offset {
			return string(r.Value)
		}
	}
	return ""
}
