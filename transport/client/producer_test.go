package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestProducer(t *testing.T, c *Client, cfg ProducerConfig) *Producer {
	t.Helper()
	p, err := c.NewProducer(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// bySequence keeps one request per base sequence (a batch refused because
// it overtook its predecessor is sent again), in sequence order.
func bySequence(reqs []*pb.ProduceRequest) []*pb.ProduceRequest {
	seen := map[int64]*pb.ProduceRequest{}
	for _, r := range reqs {
		seen[r.GetBaseSequence()] = r
	}
	out := make([]*pb.ProduceRequest, 0, len(seen))
	for _, r := range seen {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetBaseSequence() < out[j].GetBaseSequence() })
	return out
}

func batchSizes(reqs []*pb.ProduceRequest) []int {
	var out []int
	for _, r := range reqs {
		out = append(out, len(r.GetRecords()))
	}
	return out
}

// sendEach sends n records to topic (record i made by rec) and returns
// their results.
func sendEach(ctx context.Context, p *Producer, topic string, n int, rec func(i int) Record) []*Result {
	rs := make([]*Result, n)
	for i := range rs {
		rs[i] = p.Send(ctx, topic, rec(i))
	}
	return rs
}

// waitAll waits for every result and fails the test on an error.
func waitAll(t *testing.T, ctx context.Context, rs []*Result) {
	t.Helper()
	for _, r := range rs {
		if _, _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProducerBatchBoundaries(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	fc.addTopic("b", 1)
	ctx := testCtx(t)

	// MaxBatchRecords: full batches leave at once; the rest waits for
	// Linger (1 h here) or Flush.
	p := newTestProducer(t, c, ProducerConfig{Linger: time.Hour, MaxBatchRecords: 5})
	results := sendEach(ctx, p, "t", 12, func(i int) Record { return Record{Value: []byte(fmt.Sprintf("v%d", i))}.ToPartition(0) })
	for i := 0; i < 10; i++ { // the two full batches are acknowledged without a Flush
		if _, off, err := results[i].Wait(ctx); err != nil || off != int64(i) {
			t.Fatalf("record %d: offset %d, %v", i, off, err)
		}
	}
	select {
	case <-results[10].Done():
		t.Fatal("a partial batch left before Linger or Flush")
	default:
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		part, off, err := r.Wait(ctx)
		if err != nil || part != 0 || off != int64(i) {
			t.Fatalf("record %d: %d/%d %v", i, part, off, err)
		}
	}
	reqs := bySequence(fc.agents[0].produceCalls())
	if got := fmt.Sprint(batchSizes(reqs)); got != "[5 5 2]" {
		t.Fatalf("batch sizes %s, want [5 5 2]", got)
	}
	id := p.Identity()
	for i, r := range reqs {
		if r.GetProducerId() != id.ID || r.GetBaseSequence() != int64(i*5) {
			t.Fatalf("batch %d: producer %d seq %d, want %d/%d", i, r.GetProducerId(), r.GetBaseSequence(), id.ID, i*5)
		}
	}

	// MaxBatchBytes: a record's size is len(value)+16, so 3 records of 84
	// bytes fill 300 bytes.
	p2 := newTestProducer(t, c, ProducerConfig{Linger: time.Hour, MaxBatchBytes: 300})
	rs := sendEach(ctx, p2, "b", 7, func(int) Record { return Record{Value: []byte(strings.Repeat("x", 84))}.ToPartition(0) })
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitAll(t, ctx, rs)
	var bReqs []*pb.ProduceRequest
	for _, r := range fc.agents[0].produceCalls() {
		if r.GetTopic() == "b" {
			bReqs = append(bReqs, r)
		}
	}
	if got := fmt.Sprint(batchSizes(bySequence(bReqs))); got != "[3 3 1]" {
		t.Fatalf("batch sizes by bytes %s, want [3 3 1]", got)
	}
}

func TestProducerLingerSendsWithoutFlush(t *testing.T) {
	_, c := oneAgent(t, "t", 2)
	p := newTestProducer(t, c, ProducerConfig{Linger: 10 * time.Millisecond})
	ctx := testCtx(t)
	r := p.Send(ctx, "t", Record{Key: []byte("k"), Value: []byte("v")})
	part, off, err := r.Wait(ctx)
	if err != nil || off != 0 || part != fsm.KeyPartition([]byte("k"), 2) {
		t.Fatalf("lingered record: %d/%d %v", part, off, err)
	}
}

func TestProducerStickyAndKeyedPartitioning(t *testing.T) {
	fc, c := oneAgent(t, "sticky", 3)
	fc.addTopic("keyed", 8)
	ctx := testCtx(t)
	p := newTestProducer(t, c, ProducerConfig{Linger: time.Hour, MaxBatchRecords: 10})
	rs := sendEach(ctx, p, "sticky", 30, func(int) Record { return Record{Value: []byte("v")} })
	perPart := map[int32]int{}
	for _, r := range rs {
		part, _, err := r.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		perPart[part]++
	}
	// Keyless records fill one batch, then move to the next partition.
	if len(perPart) != 3 || perPart[0] != 10 || perPart[1] != 10 || perPart[2] != 10 {
		t.Fatalf("keyless records per partition %v, want 10 on each of 3", perPart)
	}

	var recs []Record
	for i := 0; i < 200; i++ {
		recs = append(recs, Record{Key: []byte(fmt.Sprintf("user-%d", i)), Value: []byte(fmt.Sprint(i))})
	}
	offs, err := p.Produce(ctx, "keyed", recs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range offs {
		if want := fsm.KeyPartition(recs[i].Key, 8); o.Partition != want {
			t.Fatalf("key %s on partition %d, the agent would use %d", recs[i].Key, o.Partition, want)
		}
		stored := fc.records("keyed", o.Partition)[o.Offset]
		if string(stored.GetKey()) != string(recs[i].Key) || string(stored.GetValue()) != string(recs[i].Value) {
			t.Fatalf("offset %d/%d holds %s=%s", o.Partition, o.Offset, stored.GetKey(), stored.GetValue())
		}
	}
}

// dropFirstProduce returns an interceptor that lets the first Produce call
// reach the agent and then answers the client with code instead of the
// agent's response (the response is "dropped"). It records every Produce
// response the agent sent.
type dropper struct {
	code      codes.Code
	mu        sync.Mutex
	dropped   bool
	responses []*pb.ProduceResponse
	requests  []*pb.ProduceRequest
}

func (d *dropper) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if method != pb.StreamHouse_Produce_FullMethodName {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.responses = append(d.responses, reply.(*pb.ProduceResponse))
		d.requests = append(d.requests, req.(*pb.ProduceRequest))
	}
	if !d.dropped && err == nil {
		d.dropped = true
		return status.Error(d.code, "response dropped by the test")
	}
	return err
}

func TestIdempotentRetryAfterDroppedResponse(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.Unknown, codes.DeadlineExceeded} {
		t.Run(code.String(), func(t *testing.T) {
			fc := newFakeCluster(t, 1)
			fc.addTopic("t", 1)
			d := &dropper{code: code}
			c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(d.intercept)))
			p := newTestProducer(t, c, ProducerConfig{RetryBackoff: time.Millisecond})
			ctx := testCtx(t)
			// Something already in the partition, so the original offset is not 0.
			if _, err := p.Produce(ctx, "t", Record{Value: []byte("before")}.ToPartition(0)); err != nil {
				t.Fatal(err)
			}
			d.mu.Lock()
			d.dropped, d.responses, d.requests = false, nil, nil
			d.mu.Unlock()

			offs, err := p.Produce(ctx, "t", Record{Value: []byte("once")}.ToPartition(0))
			if err != nil {
				t.Fatalf("produce after a dropped response: %v", err)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if len(d.responses) != 2 {
				t.Fatalf("agent answered %d produce calls, want 2 (original + retry)", len(d.responses))
			}
			original := d.responses[0].GetOffsets()[0].GetOffset()
			if d.responses[0].GetDuplicate() || !d.responses[1].GetDuplicate() {
				t.Fatalf("duplicate flags %v/%v, want false/true", d.responses[0].GetDuplicate(), d.responses[1].GetDuplicate())
			}
			if d.requests[0].GetBaseSequence() != d.requests[1].GetBaseSequence() || d.requests[1].GetBaseSequence() != 1 {
				t.Fatalf("retry used sequence %d after %d, want the same (1)", d.requests[1].GetBaseSequence(), d.requests[0].GetBaseSequence())
			}
			if offs[0].Offset != original || original != 1 {
				t.Fatalf("client got offset %d, agent first assigned %d", offs[0].Offset, original)
			}
			stored := fc.records("t", 0)
			if len(stored) != 2 || string(stored[1].GetValue()) != "once" {
				t.Fatalf("partition holds %d records, want the record once", len(stored))
			}
		})
	}
}

func TestNonIdempotentDoesNotRetryUnknownOutcome(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fc.addTopic("t", 1)
	d := &dropper{code: codes.Unknown}
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(d.intercept)))
	p := newTestProducer(t, c, ProducerConfig{DisableIdempotence: true, RetryBackoff: time.Millisecond})
	_, err := p.Produce(testCtx(t), "t", Record{Value: []byte("x")}.ToPartition(0))
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	if n := len(fc.agents[0].produceCalls()); n != 1 {
		t.Fatalf("%d produce calls: a non-idempotent write with an unknown outcome was retried", n)
	}
	if r := fc.agents[0].produceCalls()[0]; r.ProducerId != nil {
		t.Fatal("non-idempotent producer sent a producer id")
	}
}

// barrier blocks Produce calls until n are in flight at once (or a timeout
// passes), proving the client sends them concurrently.
func barrier(n int) (hook func(*pb.ProduceRequest) error, reached func() bool) {
	var count atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	return func(*pb.ProduceRequest) error {
			if count.Add(1) >= int32(n) {
				once.Do(func() { close(release) })
			}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			return nil
		}, func() bool {
			select {
			case <-release:
				return true
			default:
				return false
			}
		}
}

func TestIdempotentPartitionsInParallel(t *testing.T) {
	fc, c := oneAgent(t, "t", 4)
	hook, reached := barrier(4)
	fc.agents[0].setProduceHook(hook)
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, MaxInFlightPerPartition: 1})
	ctx := testCtx(t)
	// Three records on each of the 4 partitions, sent round-robin.
	rs := sendEach(ctx, p, "t", 12, func(i int) Record { return Record{Value: []byte(fmt.Sprint(i / 4))}.ToPartition(int32(i % 4)) })
	waitAll(t, ctx, rs)
	a := fc.agents[0]
	a.mu.Lock()
	defer a.mu.Unlock()
	if !reached() || a.maxTotal < 4 {
		t.Fatalf("at most %d produce calls in flight: partitions were not sent in parallel", a.maxTotal)
	}
	for part, m := range a.maxPerP {
		if m != 1 {
			t.Fatalf("partition %d had %d batches in flight at once, want 1 (MaxInFlightPerPartition)", part, m)
		}
	}
	// Sequences per partition: 0, 1, 2 in order.
	seqs := map[int32][]int64{}
	for _, r := range a.produces {
		seqs[r.GetRecords()[0].GetPartition()] = append(seqs[r.GetRecords()[0].GetPartition()], r.GetBaseSequence())
	}
	for part, s := range seqs {
		if fmt.Sprint(s) != "[0 1 2]" {
			t.Fatalf("partition %d sequences %v", part, s)
		}
	}
}

func TestNonIdempotentPipelinesOnePartition(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	hook, reached := barrier(3)
	fc.agents[0].setProduceHook(hook)
	p := newTestProducer(t, c, ProducerConfig{Linger: -1, MaxBatchRecords: 1, MaxInFlight: 3, DisableIdempotence: true})
	ctx := testCtx(t)
	waitAll(t, ctx, sendEach(ctx, p, "t", 3, func(int) Record { return Record{Value: []byte("x")}.ToPartition(0) }))
	if !reached() {
		t.Fatal("a non-idempotent producer did not pipeline batches of one partition")
	}
}

// produceAttempts counts the Produce attempts the client makes, and those
// that ended with its own deadline (the fake agents never answer
// DEADLINE_EXCEEDED themselves).
type produceAttempts struct{ all, cut atomic.Int32 }

func (a *produceAttempts) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if strings.HasSuffix(method, "/Produce") {
		a.all.Add(1)
		if status.Code(err) == codes.DeadlineExceeded {
			a.cut.Add(1)
		}
	}
	return err
}

// A batch the agent keeps refusing with UNAVAILABLE (not written) is sent
// again until RetryTimeout, then fails definitely, and the next batch
// reuses its sequence. An attempt's deadline is what is left of
// RetryTimeout, so on a loaded machine the last attempt can be cut by it
// before the agent's answer arrives; that attempt may have been written,
// and the failure is then rightly an unknown outcome: the test checks
// whichever of the two happened.
func TestRetryTimeoutOnUnavailableIsDefinite(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fc.addTopic("t", 1)
	attempts := &produceAttempts{}
	c := fc.dial(t, WithDialOptions(grpc.WithChainUnaryInterceptor(attempts.intercept)))
	var calls atomic.Int32
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		calls.Add(1)
		return detailErr(codes.Unavailable, KindUnavailable, "not leader")
	})
	const retryTimeout, backoff = 300 * time.Millisecond, 5 * time.Millisecond
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: backoff, RetryTimeout: retryTimeout})
	ctx := testCtx(t)
	start := time.Now()
	_, err := p.Produce(ctx, "t", Record{Value: []byte("x")}.ToPartition(0))
	// It gives up only once the wait after its last attempt (the backoff
	// doubled per attempt, plus up to 20%) would pass its deadline, which
	// is RetryTimeout after it started.
	n := attempts.all.Load()
	if elapsed, lastWait := time.Since(start), backoff<<(n-1)*6/5; n < 1 || elapsed < retryTimeout-lastWait {
		t.Fatalf("gave up after %v and %d attempts: UNAVAILABLE was not retried until RetryTimeout", elapsed, n)
	}
	if attempts.cut.Load() > 0 {
		if !IsOutcomeUnknown(err) {
			t.Fatalf("err = %v after an attempt cut by RetryTimeout, want outcome unknown", err)
		}
		t.Logf("an attempt was cut by RetryTimeout (loaded machine): %v", err)
		return
	}
	if !IsRetriable(err) || IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, want a definite UNAVAILABLE", err)
	}
	// Nothing was written: the next batch reuses the sequence, same epoch.
	fc.agents[0].setProduceHook(nil)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("y")}.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	reqs := fc.agents[0].produceCalls()
	last := reqs[len(reqs)-1]
	if last.GetBaseSequence() != 0 || last.GetProducerEpoch() != 0 {
		t.Fatalf("after a definite failure: seq %d epoch %d, want 0/0", last.GetBaseSequence(), last.GetProducerEpoch())
	}
}

func TestUnknownOutcomeGiveUpBumpsEpoch(t *testing.T) {
	fc, c := oneAgent(t, "t", 2)
	fc.agents[0].setProduceHook(func(r *pb.ProduceRequest) error {
		if r.GetRecords()[0].GetPartition() == 0 {
			return status.Error(codes.DeadlineExceeded, "agent too slow")
		}
		return nil
	})
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: 5 * time.Millisecond, RetryTimeout: 200 * time.Millisecond})
	ctx := testCtx(t)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("p1")}.ToPartition(1)); err != nil {
		t.Fatal(err)
	}
	_, err := p.Produce(ctx, "t", Record{Value: []byte("lost?")}.ToPartition(0))
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	before := p.Identity()
	fc.agents[0].setProduceHook(nil)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("after")}.ToPartition(1)); err != nil {
		t.Fatal(err)
	}
	after := p.Identity()
	if after.ID != before.ID || after.Epoch != before.Epoch+1 {
		t.Fatalf("identity %+v → %+v, want the same id with the next epoch", before, after)
	}
	reqs := fc.agents[0].produceCalls()
	last := reqs[len(reqs)-1]
	if last.GetProducerEpoch() != after.Epoch || last.GetBaseSequence() != 0 {
		t.Fatalf("first batch after re-init: epoch %d seq %d, want %d/0", last.GetProducerEpoch(), last.GetBaseSequence(), after.Epoch)
	}
}

func TestFencedProducerIsNotReinitialised(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: time.Millisecond})
	ctx := testCtx(t)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("a")}.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	id := p.Identity()
	newer, err := c.InitProducer(ctx, id.ID)
	if err != nil || newer.Epoch != id.Epoch+1 {
		t.Fatalf("second InitProducer: %+v %v", newer, err)
	}
	calls := len(fc.agents[0].produceCalls())
	_, err = p.Produce(ctx, "t", Record{Value: []byte("b")}.ToPartition(0))
	if !errors.Is(err, ErrFenced) || Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want ErrFenced", err)
	}
	if got := len(fc.agents[0].produceCalls()); got != calls+1 {
		t.Fatalf("%d produce calls for the fenced batch, want 1 (no retry)", got-calls)
	}
	if p.Identity() != id {
		t.Fatal("the fenced producer re-initialised itself")
	}
	// Later sends fail at once, without reaching the agent.
	r := p.Send(ctx, "t", Record{Value: []byte("c")})
	if _, _, err := r.Wait(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("send after fencing: %v", err)
	}
	if got := len(fc.agents[0].produceCalls()); got != calls+1 {
		t.Fatal("a fenced producer kept sending")
	}
	if n := len(fc.records("t", 0)); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}

func TestProducerRoutesToLeaderAndFailsOver(t *testing.T) {
	fc := newFakeCluster(t, 2)
	fc.addTopic("t", 2, "fake-2") // every partition led by agent 2
	c := fc.dial(t)               // bootstrap: agent 1 only
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: time.Millisecond})
	ctx := testCtx(t)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("a")}.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	if n1, n2 := len(fc.agents[0].produceCalls()), len(fc.agents[1].produceCalls()); n1 != 0 || n2 != 1 {
		t.Fatalf("produce calls: agent1 %d, agent2 %d; want the leader (agent 2) only", n1, n2)
	}
	// The leader says "not leader" (UNAVAILABLE): the client retries, and
	// another agent (which forwards, in a real cluster) takes the batch.
	var once atomic.Bool
	fc.agents[1].setProduceHook(func(*pb.ProduceRequest) error {
		if once.CompareAndSwap(false, true) {
			return detailErr(codes.Unavailable, KindUnavailable, "unavailable: not leader")
		}
		return nil
	})
	offs, err := p.Produce(ctx, "t", Record{Value: []byte("b")}.ToPartition(0))
	if err != nil || offs[0].Offset != 1 {
		t.Fatalf("after not-leader: %+v %v", offs, err)
	}
	if len(fc.agents[0].produceCalls()) != 1 {
		t.Fatal("the retry did not fail over to the other agent")
	}
}

func TestProducerBackpressureAndClose(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	release := make(chan struct{})
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		<-release
		return nil
	})
	p, err := c.NewProducer(testCtx(t), ProducerConfig{Linger: -1, BufferBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	r1 := p.Send(ctx, "t", Record{Value: []byte(strings.Repeat("a", 150))}) // in flight, blocked
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	r2 := p.Send(short, "t", Record{Value: []byte(strings.Repeat("b", 150))})
	cancel()
	if _, _, err := r2.Wait(ctx); Code(err) != codes.DeadlineExceeded {
		t.Fatalf("send over the buffer limit: %v, want its ctx's deadline", err)
	}
	close(release)
	if _, off, err := r1.Wait(ctx); err != nil || off != 0 {
		t.Fatalf("first record: %d %v", off, err)
	}
	// Close flushes what is buffered, then refuses new records.
	r3 := p.Send(ctx, "t", Record{Value: []byte("c")})
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, off, err := r3.Wait(ctx); err != nil || off != 1 {
		t.Fatalf("record sent before Close: %d %v", off, err)
	}
	if _, _, err := p.Send(ctx, "t", Record{Value: []byte("d")}).Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
}

func TestProducerCloseAbandonsWhenCtxEnds(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	release := make(chan struct{})
	defer close(release)
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		<-release
		return nil
	})
	p, err := c.NewProducer(testCtx(t), ProducerConfig{Linger: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Send(testCtx(t), "t", Record{Value: []byte("x")})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want its ctx's deadline", err)
	}
	if _, _, err := r.Wait(testCtx(t)); !IsOutcomeUnknown(err) {
		t.Fatalf("in-flight record after an abandoned Close: %v, want outcome unknown", err)
	}
}

func TestSendUnknownTopic(t *testing.T) {
	fc := newFakeCluster(t, 1)
	c := fc.dial(t)
	p := newTestProducer(t, c, ProducerConfig{})
	_, err := p.Produce(testCtx(t), "nope", Record{Value: []byte("x")})
	if Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

func (fc *fakeCluster) setLeader(topic string, p int, node string) {
	fc.mu.Lock()
	fc.topics[topic].leaders[p] = node
	fc.mu.Unlock()
}

func TestPeriodicMetadataRefreshFollowsLeaderChange(t *testing.T) {
	fc := newFakeCluster(t, 2)
	fc.addTopic("t", 1, "fake-1")
	c := fc.dial(t, WithMetadataRefresh(10*time.Millisecond))
	if got := c.leaderAddr("t", 0); got != fc.agents[0].addr {
		t.Fatalf("leader address %q, want agent 1's", got)
	}
	fc.setLeader("t", 0, "fake-2")
	testkit.WaitFor(t, 10*time.Second, "the periodic refresh to see the new leader", func() bool { return c.leaderAddr("t", 0) == fc.agents[1].addr })
	p := newTestProducer(t, c, ProducerConfig{})
	if _, err := p.Produce(testCtx(t), "t", Record{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if len(fc.agents[1].produceCalls()) != 1 || len(fc.agents[0].produceCalls()) != 0 {
		t.Fatal("the batch did not go to the new leader")
	}
}

func TestNotLeaderTriggersMetadataRefresh(t *testing.T) {
	fc := newFakeCluster(t, 2)
	fc.addTopic("t", 1, "fake-1")
	c := fc.dial(t, WithMetadataRefresh(0)) // on-demand refreshes only
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: time.Millisecond})
	fc.setLeader("t", 0, "fake-2")
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		return detailErr(codes.Unavailable, KindUnavailable, "unavailable: this agent does not lead the partition")
	})
	if _, err := p.Produce(testCtx(t), "t", Record{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if got := c.leaderAddr("t", 0); got != fc.agents[1].addr {
		t.Fatalf("after a not-leader answer the client still routes to %q", got)
	}
	if len(fc.agents[1].produceCalls()) != 1 {
		t.Fatal("the batch did not reach the new leader")
	}
}

// TestBrokenConnectionThenDefiniteErrorIsUnknown is the regression test for
// a lost write the jepsen harness found: the first attempt of a batch died
// with the agent (gRPC reports UNAVAILABLE without an ErrorDetail, although
// the agent may have written the batch), and a later attempt got a definite
// answer ("topic not found" from an agent still replaying its log). The
// batch must end as "outcome unknown" and the producer must move to a new
// epoch, because reusing its sequence for the next record would make the
// agent answer that record with the first batch's offset.
func TestBrokenConnectionThenDefiniteErrorIsUnknown(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	var calls atomic.Int32
	fc.agents[0].setProduceHook(func(*pb.ProduceRequest) error {
		if calls.Add(1) == 1 {
			return status.Error(codes.Unavailable, "error reading from server: EOF") // transport-level: no detail
		}
		return detailErr(codes.NotFound, KindNotFound, "topic not found")
	})
	p := newTestProducer(t, c, ProducerConfig{RetryBackoff: 5 * time.Millisecond, RetryTimeout: 2 * time.Second})
	ctx := testCtx(t)
	_, err := p.Produce(ctx, "t", Record{Value: []byte("maybe")}.ToPartition(0))
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown (the first attempt may have been written)", err)
	}
	before := p.Identity()
	fc.agents[0].setProduceHook(nil)
	if _, err := p.Produce(ctx, "t", Record{Value: []byte("next")}.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	if after := p.Identity(); after.Epoch != before.Epoch+1 {
		t.Fatalf("epoch %d → %d: the sequence of a maybe-written batch was reused", before.Epoch, after.Epoch)
	}
}

// TestAnsweredOffsets: a produce answer's offsets come from its ranges or,
// from an agent of an earlier release that ignores the request for them,
// one per record; an answer that does not place every record exactly once
// is refused (the outcome is unknown), however large a count it names.
func TestAnsweredOffsets(t *testing.T) {
	rng := func(p int32, base int64, n int32) *pb.OffsetRange {
		return &pb.OffsetRange{Partition: p, BaseOffset: base, Count: n}
	}
	want := []Offset{{0, 5}, {0, 6}, {1, 0}, {0, 7}}
	for name, resp := range map[string]*pb.ProduceResponse{
		"ranges":  {OffsetRanges: []*pb.OffsetRange{rng(0, 5, 2), rng(1, 0, 1), rng(0, 7, 1)}},
		"offsets": {Offsets: []*pb.RecordOffset{{Partition: 0, Offset: 5}, {Partition: 0, Offset: 6}, {Partition: 1, Offset: 0}, {Partition: 0, Offset: 7}}},
	} {
		got, err := answeredOffsets(resp, len(want))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
	for name, resp := range map[string]*pb.ProduceResponse{
		"empty":           {},
		"short ranges":    {OffsetRanges: []*pb.OffsetRange{rng(0, 5, 3)}},
		"long ranges":     {OffsetRanges: []*pb.OffsetRange{rng(0, 5, 3), rng(1, 0, 2)}},
		"huge count":      {OffsetRanges: []*pb.OffsetRange{rng(0, 0, 1<<30)}},
		"negative count":  {OffsetRanges: []*pb.OffsetRange{rng(0, 0, -1), rng(0, 0, 5)}},
		"short offsets":   {Offsets: []*pb.RecordOffset{{Partition: 0, Offset: 5}}},
		"negative base":   {OffsetRanges: []*pb.OffsetRange{rng(0, -2, 4)}},
		"overflow":        {OffsetRanges: []*pb.OffsetRange{rng(0, math.MaxInt64-1, 4)}},
		"negative offset": {Offsets: []*pb.RecordOffset{{Offset: -1}, {Offset: 0}, {Offset: 1}, {Offset: 2}}},
	} {
		if got, err := answeredOffsets(resp, len(want)); err == nil {
			t.Errorf("%s: accepted as %v", name, got)
		}
	}
}
