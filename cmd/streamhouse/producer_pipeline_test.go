package main

import (
	"context"
	"fmt"

	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/transport/client"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// pipelineChaos loses every 20th Produce answer after the agent wrote the
// batch (UNKNOWN: the client resends it with the same sequence) and counts
// the batches the agent refused for overtaking their predecessor.
type pipelineChaos struct {
	calls, lost, outOfOrder atomic.Int64
}

func (c *pipelineChaos) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if method != pb.StreamHouse_Produce_FullMethodName {
		return err
	}
	if client.Kind(err) == client.KindOutOfOrderSequence {
		c.outOfOrder.Add(1)
	}
	if err == nil && c.calls.Add(1)%20 == 0 {
		c.lost.Add(1)
		return status.Error(codes.Unknown, "test: the agent's answer was lost")
	}
	return err
}

// A producer with 5 batches of a partition in flight, some of whose
// answers are lost, writes every record once, in Send order, at the
// offset it reports.
func TestPipelinedProducerKeepsOrderAgainstAgent(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	chaos := &pipelineChaos{}
	c := dialAgent(t, addr, client.WithDialOptions(grpc.WithChainUnaryInterceptor(chaos.intercept)))
	ctx := ctxFor(t)
	const topic, parts, n = "pipeline", 2, 3000
	if _, err := c.CreateTopic(ctx, topic, parts, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{Linger: -1, MaxBatchRecords: 10, MaxInFlightPerPartition: 5})
	sent := make([][]string, parts)
	results := make([][]*client.Result, parts)
	for i := 0; i < n; i++ {
		part := i % parts
		v := fmt.Sprint(i)
		sent[part] = append(sent[part], v)
		results[part] = append(results[part], p.Send(ctx, topic, client.Record{Value: []byte(v)}.ToPartition(int32(part))))
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for part := range sent {
		stored := readAll(t, c, topic, int32(part))
		if len(stored) != len(sent[part]) {
			t.Fatalf("partition %d holds %d records, %d were sent", part, len(stored), len(sent[part]))
		}
		for i, v := range sent[part] {
			_, off, err := results[part][i].Wait(ctx)
			if err != nil {
				t.Fatalf("record %s: %v", v, err)
			}
			if string(stored[i].Value) != v || stored[i].Offset != off {
				t.Fatalf("partition %d position %d holds %q at %d; sent %q, acknowledged at %d", part, i, stored[i].Value, stored[i].Offset, v, off)
			}
		}
	}
	if chaos.lost.Load() == 0 {
		t.Fatal("no answer was lost: the test proves nothing")
	}
	t.Logf("%d produce calls, %d answers lost, %d batches refused for overtaking", chaos.calls.Load(), chaos.lost.Load(), chaos.outOfOrder.Load())
}
