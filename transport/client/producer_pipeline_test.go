package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// checkPartitionOrder checks what a partition stores against what was
// sent to it, in Send order: every value at most once, in Send order;
// every acknowledged value at its acknowledged offset; a definitely
// failed value absent.
func checkPartitionOrder(t *testing.T, ctx context.Context, fc *fakeCluster, topic string, part int32, values []string, rs []*Result) {
	t.Helper()
	stored := fc.records(topic, part)
	at := map[string]int64{}
	for _, r := range stored {
		v := string(r.GetValue())
		if _, dup := at[v]; dup {
			t.Fatalf("partition %d: %q stored twice", part, v)
		}
		at[v] = r.GetOffset()
	}
	last := int64(-1)
	for i, v := range values {
		_, off, err := rs[i].Wait(ctx)
		got, ok := at[v]
		switch {
		case err == nil && (!ok || got != off):
			t.Fatalf("partition %d: %q acknowledged at %d, stored at %d (%v)", part, v, off, got, ok)
		case err != nil && !IsOutcomeUnknown(err) && ok:
			t.Fatalf("partition %d: %q failed definitely (%v) but is stored", part, v, err)
		}
		if ok {
			if got <= last {
				t.Fatalf("partition %d: %q (sent #%d) stored at %d, before an earlier record at %d", part, v, i, got, last)
			}
			last = got
		}
	}
}

func TestIdempotentPipelinesUpToMaxPerPartition(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	hook, reached := barrier(3)
	fc.agents[0].setProduceHook(hook)
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, MaxInFlightPerPartition: 3})
	ctx := testCtx(t)
	values := make([]string, 9)
	rs := sendEach(ctx, p, "t", len(values), func(i int) Record {
		values[i] = fmt.Sprint(i)
		return Record{Value: []byte(values[i])}.ToPartition(0)
	})
	waitAll(t, ctx, rs)
	a := fc.agents[0]
	a.mu.Lock()
	maxPerP := a.maxPerP[0]
	a.mu.Unlock()
	if !reached() {
		t.Fatal("batches of one partition were not sent concurrently")
	}
	if maxPerP > 3 {
		t.Fatalf("%d batches of the partition in flight at once, want at most 3", maxPerP)
	}
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
}

// TestIdempotentOvertakingBatchWaitsForItsPredecessor holds the first
// batch at the agent until a later one has been refused for overtaking
// it: the later batches are sent again after it, in order.
func TestIdempotentOvertakingBatchWaitsForItsPredecessor(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fc.addTopic("t", 1)
	overtaken := make(chan struct{})
	var once sync.Once
	fc.agents[0].setProduceHook(func(r *pb.ProduceRequest) error {
		if r.GetBaseSequence() == 0 {
			select {
			case <-overtaken:
			case <-time.After(10 * time.Second):
			}
			return nil
		}
		return nil
	})
	// Refusals are visible to the interceptor: the first one releases batch 0.
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if Kind(wrapErr("", err)) == KindOutOfOrderSequence {
			once.Do(func() { close(overtaken) })
		}
		return err
	}
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(icpt)))
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 2})
	ctx := testCtx(t)
	values := make([]string, 10)
	rs := sendEach(ctx, p, "t", len(values), func(i int) Record {
		values[i] = fmt.Sprint(i)
		return Record{Value: []byte(values[i])}.ToPartition(0)
	})
	waitAll(t, ctx, rs)
	select {
	case <-overtaken:
	default:
		t.Fatal("no batch overtook the first one: the test proves nothing")
	}
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
	if id := p.Identity(); id.Epoch != 0 {
		t.Fatalf("epoch %d: an overtaking batch made the producer re-initialise", id.Epoch)
	}
}

// TestIdempotentFailureMidWindowRenumbers fails one batch for good (not
// written) while later batches of its partition are in flight: they are
// renumbered under a new epoch and land in order, once.
func TestIdempotentFailureMidWindowRenumbers(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	fc.agents[0].setProduceHook(func(r *pb.ProduceRequest) error {
		for _, rec := range r.GetRecords() {
			if string(rec.GetValue()) == "bad" {
				return detailErr(codes.InvalidArgument, KindBadRequest, "refused by the test")
			}
		}
		return nil
	})
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, RetryBackoff: time.Millisecond})
	ctx := testCtx(t)
	values := []string{"a", "b", "bad", "c", "d", "e", "f"}
	rs := sendEach(ctx, p, "t", len(values), func(i int) Record { return Record{Value: []byte(values[i])}.ToPartition(0) })
	for i, r := range rs {
		_, _, err := r.Wait(ctx)
		if (values[i] == "bad") != (err != nil) {
			t.Fatalf("record %q: %v", values[i], err)
		}
	}
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
	if n := len(fc.records("t", 0)); n != len(values)-1 {
		t.Fatalf("%d records stored, want %d", n, len(values)-1)
	}
}

// chaos is an agent-side hook plus a client interceptor: requests are
// delayed at random (so batches overtake each other), refused as not
// written (UNAVAILABLE) or written with the answer lost (UNKNOWN).
type chaos struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

func (ch *chaos) roll() float64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.rnd.Float64()
}

func (ch *chaos) hook(*pb.ProduceRequest) error {
	r := ch.roll()
	switch {
	case r < 0.1:
		return detailErr(codes.Unavailable, KindUnavailable, "not written (test)")
	case r < 0.4:
		time.Sleep(time.Duration(ch.roll() * float64(2*time.Millisecond))) // reorder, not synchronisation
	}
	return nil
}

func (ch *chaos) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil && method == pb.StreamHouse_Produce_FullMethodName && ch.roll() < 0.1 {
		return status.Error(codes.Unknown, "answer lost (test)")
	}
	return err
}

// TestIdempotentPipelineUnderChaos sends to two partitions through a
// pipelining producer while requests overtake each other, fail before
// being written and lose their answers after: every partition holds its
// records once each, in Send order, and every acknowledged offset is
// where its record is.
func TestIdempotentPipelineUnderChaos(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			fc := newFakeCluster(t, 1)
			fc.addTopic("t", 2)
			ch := &chaos{rnd: rand.New(rand.NewPCG(seed, 18))}
			fc.agents[0].setProduceHook(ch.hook)
			c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(ch.intercept)))
			p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 3, RetryBackoff: time.Millisecond})
			ctx := testCtx(t)
			values := [2][]string{}
			rs := [2][]*Result{}
			for i := 0; i < 300; i++ {
				part := int32(i % 2)
				v := fmt.Sprintf("%d-%d", seed, i)
				values[part] = append(values[part], v)
				rs[part] = append(rs[part], p.Send(ctx, "t", Record{Value: []byte(v)}.ToPartition(part)))
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for part := range values {
				checkPartitionOrder(t, ctx, fc, "t", int32(part), values[part], rs[part])
			}
		})
	}
}

// TestIdempotentPipelineFollowsLeaderChange moves the partition's
// leadership while batches are in flight: the old leader refuses them
// (not leader), the client retries at the new one, and the records land
// once each, in order.
func TestIdempotentPipelineFollowsLeaderChange(t *testing.T) {
	fc := newFakeCluster(t, 2)
	fc.addTopic("t", 1, "fake-1")
	c := fc.dial(t, WithMetadataRefresh(time.Hour))
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 2, RetryBackoff: time.Millisecond})
	ctx := testCtx(t)
	var moved sync.Once
	var sent int
	var mu sync.Mutex
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		mu.Lock()
		defer mu.Unlock()
		sent++
		if sent > 3 {
			moved.Do(func() { fc.setLeader("t", 0, "fake-2") })
			return detailErr(codes.Unavailable, KindUnavailable, "unavailable: not leader")
		}
		return nil
	})
	values := make([]string, 40)
	rs := sendEach(ctx, p, "t", len(values), func(i int) Record {
		values[i] = fmt.Sprint(i)
		return Record{Value: []byte(values[i])}.ToPartition(0)
	})
	waitAll(t, ctx, rs)
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
	if len(fc.agents[1].produceCalls()) == 0 {
		t.Fatal("no batch reached the new leader")
	}
}

// TestIdempotentResentBatchStaysWithinTheAgentsMemory loses the answer
// of a batch that was written and delays its resend: the batches behind
// it keep flowing, but never more than 4 of them are applied before the
// resend, so the agent (which remembers 5 batches) still answers it as a
// duplicate instead of refusing it.
func TestIdempotentResentBatchStaysWithinTheAgentsMemory(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fc.addTopic("t", 1)
	// Batch k (one record each) reaches the agent only once batch k-1 was
	// answered, so every batch is applied at its first attempt; the
	// answer to batch 0 is lost after it was written.
	var mu sync.Mutex
	answered := map[int64]chan struct{}{}
	turn := func(seq int64) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if answered[seq] == nil {
			answered[seq] = make(chan struct{})
		}
		return answered[seq]
	}
	var lost sync.Once
	fc.agents[0].setProduceHook(func(r *pb.ProduceRequest) error {
		if seq := r.GetBaseSequence(); seq > 0 {
			select {
			case <-turn(seq - 1):
			case <-time.After(10 * time.Second):
			}
		}
		return nil
	})
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		r, ok := req.(*pb.ProduceRequest)
		if !ok || err != nil {
			return err
		}
		seq := r.GetBaseSequence()
		dropped := false
		if seq == 0 {
			lost.Do(func() { dropped = true })
		}
		ch := turn(seq)
		mu.Lock()
		select {
		case <-ch:
		default:
			close(ch)
		}
		mu.Unlock()
		if dropped {
			return status.Error(codes.Unknown, "answer lost (test)")
		}
		return nil
	}
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(intercept)))
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, RetryBackoff: 50 * time.Millisecond})
	ctx := testCtx(t)
	values := make([]string, 30)
	rs := sendEach(ctx, p, "t", len(values), func(i int) Record {
		values[i] = fmt.Sprint(i)
		return Record{Value: []byte(values[i])}.ToPartition(0)
	})
	waitAll(t, ctx, rs)
	checkPartitionOrder(t, ctx, fc, "t", 0, values, rs)
	if n := len(fc.records("t", 0)); n != len(values) {
		t.Fatalf("%d records stored, want %d", n, len(values))
	}
}
