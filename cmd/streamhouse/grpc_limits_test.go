package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// TestUnauthenticatedGRPCBurstIsNotRead: an agent with API keys receives
// 16 concurrent 32 MiB Produce calls without a token, each on its own
// connection. All are refused UNAUTHENTICATED, and the agent's own
// /metrics show that it did not read them: go_memstats_alloc_bytes_total
// grew by less than one of those requests, and the refusals are counted.
func TestUnauthenticatedGRPCBurstIsNotRead(t *testing.T) {
	dir := t.TempDir()
	_, k := newKey(t, "writer", transport.ScopeWrite)
	c := keyedConfig(t, dir, k)
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	const calls, msgBytes = 16, 32 << 20
	body, err := proto.Marshal(&pb.ProduceRequest{Topic: "orders", Records: []*pb.ProduceRecord{{Value: make([]byte, msgBytes-1024)}}})
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*grpc.ClientConn, calls)
	for i := range conns {
		conn, err := grpc.NewClient(a.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(transporttest.RawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
	}
	const allocated = "go_memstats_alloc_bytes_total"
	before := metricValue(scrape(t, base), allocated)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // generous: a read body moves 32 MiB
		defer cancel()
		wg.Go(func() {
			errs[i] = conns[i].Invoke(ctx, pb.StreamHouse_Produce_FullMethodName, &transporttest.RawMessage{B: body}, &transporttest.RawMessage{})
		})
	}
	wg.Wait()
	m := scrape(t, base)
	for i, err := range errs {
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("call %d: %v, want Unauthenticated", i, err)
		}
	}
	if grew := metricValue(m, allocated) - before; before < 0 || grew >= msgBytes {
		t.Fatalf("%d refused calls of %d MiB: the agent allocated %.0f MiB meanwhile (%s before: %.0f)", calls, msgBytes>>20, grew/(1<<20), allocated, before)
	}
	if got := metricValue(m, `streamhouse_grpc_requests_total{code="Unauthenticated",method="/streamhouse.v1.StreamHouse/Produce"}`); got != calls {
		t.Fatalf("refused produces counted %v times, want %d", got, calls)
	}
}
