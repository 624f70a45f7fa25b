package client

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// loseAnswer returns an interceptor that replaces the agent's successful
// answer to the first Produce carrying value with err: the batch is
// written, the client sees err (what grpc-go reports when the connection
// drops after the agent answered, or a proxy resets the stream).
func loseAnswer(value string, err error) grpc.UnaryClientInterceptor {
	var once sync.Once
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		rerr := invoker(ctx, method, req, reply, cc, opts...)
		pr, ok := req.(*pb.ProduceRequest)
		if rerr != nil || !ok || method != pb.StreamHouse_Produce_FullMethodName || string(pr.GetRecords()[0].GetValue()) != value {
			return rerr
		}
		lose := false
		once.Do(func() { lose = true })
		if lose {
			return err
		}
		return nil
	}
}

var errNoTrailers = status.Error(codes.Internal, "server closed the stream without sending trailers")

// A batch written whose answer is lost as INTERNAL must not give its
// sequence back: the next batch of the same size would be answered as its
// duplicate, acknowledged but never written.
func TestIdempotentInternalAfterWriteKeepsSequence(t *testing.T) {
	fc, _ := oneAgent(t, "t", 1)
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(loseAnswer("a", errNoTrailers))))
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, RetryBackoff: 1})
	ctx := testCtx(t)
	ra := p.Send(ctx, "t", Record{Value: []byte("a")}.ToPartition(0))
	_, _, errA := ra.Wait(ctx)
	rb := p.Send(ctx, "t", Record{Value: []byte("b")}.ToPartition(0))
	if _, _, err := rb.Wait(ctx); err != nil {
		t.Fatalf("b: %v", err)
	}
	if errA != nil && !IsOutcomeUnknown(errA) {
		t.Fatalf("a (written, answer lost) failed definitely: %v", errA)
	}
	checkPartitionOrder(t, ctx, fc, "t", 0, []string{"a", "b"}, []*Result{ra, rb})
}

// The same with batches pipelined: the middle one is written and its
// answer lost as INTERNAL.
func TestIdempotentPipelinedInternalAfterWrite(t *testing.T) {
	fc, _ := oneAgent(t, "t", 1)
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(loseAnswer("1", errNoTrailers))))
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, MaxInFlightPerPartition: 5, RetryBackoff: 1})
	ctx := testCtx(t)
	values := []string{"0", "1", "2"}
	rs := make([]*Result, len(values))
	for i, v := range values {
		rs[i] = p.Send(ctx, "t", Record{Value: []byte(v)}.ToPartition(0))
	}
	for _, r := range rs {
		_, _, _ = r.Wait(ctx)
	}
	more := []string{"3", "4"}
	for _, v := range more {
		values = append(values, v)
		rs = append(rs, p.Send(ctx, "t", Record{Value: []byte(v)}.ToPartition(0)))
	}
	for i, r := range rs {
		if _, _, err := r.Wait(ctx); err != nil && !IsOutcomeUnknown(err) {
			t.Fatalf("%q failed definitely: %v", values[i], err)
		}
	}
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
}

// Without idempotence an INTERNAL answer (or UNAVAILABLE without the
// agent's detail) after a write is outcome unknown: neither a definite
// failure nor retried (a retry would store the record twice).
func TestPlainLostAnswerIsOutcomeUnknown(t *testing.T) {
	for name, lost := range map[string]error{
		"internal":              errNoTrailers,
		"internal-agent-detail": detailErr(codes.Internal, KindInternal, "internal error while handling the request"),
		"unavailable-no-detail": status.Error(codes.Unavailable, "connection reset"),
	} {
		t.Run(name, func(t *testing.T) {
			fc, _ := oneAgent(t, "t", 1)
			c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(loseAnswer("a", lost))))
			p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, DisableIdempotence: true, RetryBackoff: 1})
			ctx := testCtx(t)
			ra := p.Send(ctx, "t", Record{Value: []byte("a")}.ToPartition(0))
			if _, _, err := ra.Wait(ctx); !IsOutcomeUnknown(err) {
				t.Fatalf("a (written, answer lost): %v, want outcome unknown", err)
			}
			checkPartitionOrder(t, ctx, fc, "t", 0, []string{"a"}, []*Result{ra})
		})
	}
}
