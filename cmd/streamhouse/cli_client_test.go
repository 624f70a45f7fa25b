package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport/client"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Integration tests of transport/client against a real in-process agent
// over real gRPC.

// startClientAgent starts an agent and returns it with its gRPC address.
func startClientAgent(t *testing.T, tweak func(*agentCmd)) (*agent, string) {
	t.Helper()
	c := testConfig(t, t.TempDir())
	if tweak != nil {
		tweak(c)
	}
	a, _ := startTestAgent(t, c)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = a.Close(ctx)
	})
	addr := a.grpcAddr()
	if addr == "" {
		t.Fatal("agent has no gRPC listener")
	}
	return a, addr
}

func dialAgent(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{addr}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newProducer(t *testing.T, c *client.Client, cfg client.ProducerConfig) *client.Producer {
	t.Helper()
	p, err := c.NewProducer(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// wantCode fails unless err has the gRPC code (and kind, when not "").
func wantCode(t *testing.T, what string, err error, code codes.Code, kind string) {
	t.Helper()
	if status.Code(err) != code || (kind != "" && client.Kind(err) != kind) {
		t.Errorf("%s: err = %v (code %v, kind %q), want %v %q", what, err, status.Code(err), client.Kind(err), code, kind)
	}
}

// readAll fetches partition p from offset 0 up to its high watermark,
// following next_offset.
func readAll(t *testing.T, c *client.Client, topic string, p int32) []client.Record {
	t.Helper()
	ctx := ctxFor(t)
	var out []client.Record
	next := int64(0)
	for {
		res, err := c.Fetch(ctx, client.FetchRequest{Topic: topic, Partition: p, Offset: next, MaxRecords: 1000})
		if err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, p, next, err)
		}
		out = append(out, res.Records...)
		if res.NextOffset >= res.HighWatermark {
			return out
		}
		next = res.NextOffset
	}
}

func TestClientEveryRPCAgainstAgent(t *testing.T) {
	a, addr := startClientAgent(t, func(c *agentCmd) { c.MaxRecordBytes = 1000 })
	c := dialAgent(t, addr)
	ctx := ctxFor(t)

	// GetMetadata: the agent, with its advertised gRPC address.
	md, err := c.GetMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.NodeID != "agent-1" || len(md.Agents) != 1 || md.Agents[0].GRPCAddress != addr || md.RaftLeader != "agent-1" {
		t.Fatalf("metadata = %+v (grpc addr %s)", md, addr)
	}

	// Topics.
	tp, err := c.CreateTopic(ctx, "orders", 3, client.TopicConfig{RetentionMs: 3600000, Compression: "lz4"})
	if err != nil || tp.Name != "orders" || tp.Partitions != 3 || tp.RetentionMs != 3600000 || tp.Compression != "lz4" || tp.ID == 0 {
		t.Fatalf("create: %+v %v", tp, err)
	}
	_, err = c.CreateTopic(ctx, "orders", 1, client.TopicConfig{})
	wantCode(t, "duplicate topic", err, codes.AlreadyExists, client.KindTopicExists)
	_, err = c.CreateTopic(ctx, "", 1, client.TopicConfig{})
	wantCode(t, "empty topic name", err, codes.InvalidArgument, client.KindBadRequest)
	_, err = c.CreateTopic(ctx, "a/b", 1, client.TopicConfig{})
	wantCode(t, "bad topic name", err, codes.InvalidArgument, client.KindBadRequest)
	_, err = c.CreateTopic(ctx, "zero", 0, client.TopicConfig{})
	wantCode(t, "zero partitions", err, codes.InvalidArgument, client.KindBadRequest)
	if _, err := c.CreateTopic(ctx, "other", 1, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTopics(ctx)
	if err != nil || len(ts) != 2 || ts[0].Name != "orders" || ts[1].Name != "other" {
		t.Fatalf("list: %+v %v", ts, err)
	}
	_, ps, err := c.DescribeTopic(ctx, "orders")
	if err != nil || len(ps) != 3 || ps[2].Partition != 2 || ps[2].HighWatermark != 0 {
		t.Fatalf("describe: %+v %v", ps, err)
	}
	waitFor(t, 10*time.Second, "partition leaders", func() bool {
		_, ps, err := c.DescribeTopic(ctx, "orders")
		return err == nil && ps[0].Leader == "agent-1" && ps[1].Leader == "agent-1" && ps[2].Leader == "agent-1"
	})
	_, _, err = c.DescribeTopic(ctx, "missing")
	wantCode(t, "describe unknown topic", err, codes.NotFound, client.KindNotFound)
	_, _, err = c.DescribeTopic(ctx, "")
	wantCode(t, "describe empty name", err, codes.InvalidArgument, "")
	_, err = c.GetMetadata(ctx, "missing")
	wantCode(t, "metadata of unknown topic", err, codes.NotFound, "")

	// Produce (idempotent): keyed, explicit, null vs empty key, headers.
	p := newProducer(t, c, client.ProducerConfig{})
	offs, err := p.Produce(ctx, "orders",
		client.Record{Key: []byte("user-42"), Value: []byte("keyed")},
		client.Record{Value: []byte("explicit"), Headers: []client.Header{{Key: "h", Value: []byte("v")}, {Key: "h", Value: []byte("w")}}}.ToPartition(2),
		client.Record{Key: []byte{}, Value: []byte("empty-key")}.ToPartition(2),
		client.Record{Value: []byte("ts"), Timestamp: 1234}.ToPartition(2),
	)
	if err != nil {
		t.Fatal(err)
	}
	if want := fsm.KeyPartition([]byte("user-42"), 3); offs[0].Partition != want {
		t.Fatalf("keyed record on %d, the agent's partitioner says %d", offs[0].Partition, want)
	}
	if offs[1].Partition != 2 || offs[2].Partition != 2 || offs[2].Offset != offs[1].Offset+1 {
		t.Fatalf("explicit partition offsets: %+v", offs)
	}
	_, err = p.Produce(ctx, "orders", client.Record{Value: []byte("x")}.ToPartition(7))
	wantCode(t, "produce to partition 7", err, codes.InvalidArgument, "")
	_, err = p.Produce(ctx, "missing", client.Record{Value: []byte("x")})
	wantCode(t, "produce to unknown topic", err, codes.NotFound, "")
	_, err = p.Produce(ctx, "orders", client.Record{Value: []byte(strings.Repeat("x", 2000))}.ToPartition(0))
	wantCode(t, "oversize record", err, codes.InvalidArgument, client.KindRecordTooLarge)
	// Non-idempotent producer, keyless: all records of the batch on one partition.
	plain := newProducer(t, c, client.ProducerConfig{DisableIdempotence: true})
	poffs, err := plain.Produce(ctx, "other", client.Record{Value: []byte("p1")}, client.Record{Value: []byte("p2")})
	if err != nil || poffs[0].Partition != 0 || poffs[1].Offset != poffs[0].Offset+1 {
		t.Fatalf("plain produce: %+v %v", poffs, err)
	}

	// InitProducer.
	id, err := c.InitProducer(ctx, 0)
	if err != nil || id.ID == 0 || id.Epoch != 0 {
		t.Fatalf("init producer: %+v %v", id, err)
	}
	_, err = c.InitProducer(ctx, 987654321)
	wantCode(t, "init unknown producer id", err, codes.FailedPrecondition, client.KindUnknownProducer)

	// Fetch.
	recs := readAll(t, c, "orders", 2)
	if len(recs) != 3 {
		t.Fatalf("partition 2 holds %d records", len(recs))
	}
	if recs[0].Key != nil || string(recs[0].Value) != "explicit" || len(recs[0].Headers) != 2 || string(recs[0].Headers[1].Value) != "w" {
		t.Fatalf("record 0 = %+v", recs[0])
	}
	if recs[1].Key == nil || len(recs[1].Key) != 0 {
		t.Fatalf("empty key not kept distinct from null: %+v", recs[1])
	}
	if recs[2].Timestamp != 1234 || recs[0].Timestamp == 0 || recs[0].Topic != "orders" || recs[0].Partition != 2 {
		t.Fatalf("timestamps/positions: %+v %+v", recs[0], recs[2])
	}
	res, err := c.Fetch(ctx, client.FetchRequest{Topic: "orders", Partition: 2, Offset: client.OffsetLatest})
	if err != nil || len(res.Records) != 0 || res.NextOffset != 3 || res.HighWatermark != 3 {
		t.Fatalf("fetch latest: %+v %v", res, err)
	}
	res, err = c.Fetch(ctx, client.FetchRequest{Topic: "orders", Partition: 2, Offset: client.OffsetEarliest, MaxRecords: 1})
	if err != nil || len(res.Records) != 1 || res.NextOffset != 1 {
		t.Fatalf("fetch earliest: %+v %v", res, err)
	}
	_, err = c.Fetch(ctx, client.FetchRequest{Topic: "orders", Partition: 2, Offset: 50})
	wantCode(t, "fetch past the end", err, codes.OutOfRange, client.KindOffsetOutOfRange)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.HighWatermark == nil || *ce.HighWatermark != 3 || ce.LowWatermark == nil || *ce.LowWatermark != 0 {
		t.Fatalf("out-of-range error does not carry the range: %+v", ce)
	}
	_, err = c.Fetch(ctx, client.FetchRequest{Topic: "missing", Partition: 0, Offset: 0})
	wantCode(t, "fetch unknown topic", err, codes.NotFound, "")
	_, err = c.Fetch(ctx, client.FetchRequest{Topic: "orders", Partition: 9, Offset: 0})
	wantCode(t, "fetch unknown partition", err, codes.NotFound, "")
	_, err = c.Fetch(ctx, client.FetchRequest{Topic: "orders", Partition: -1, Offset: 0})
	wantCode(t, "fetch negative partition", err, codes.InvalidArgument, "")

	// Subscribe: from the end, sees a record produced afterwards.
	subCtx, stopSub := context.WithCancel(ctx)
	got := make(chan client.FetchResult, 1)
	subErr := make(chan error, 1)
	go func() {
		subErr <- c.Subscribe(subCtx, client.SubscribeRequest{Topic: "orders", Partition: 2, Offset: 3}, func(r client.FetchResult) error {
			got <- r
			return errors.New("stop")
		})
	}()
	if _, err := p.Produce(ctx, "orders", client.Record{Value: []byte("streamed")}.ToPartition(2)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if len(r.Records) != 1 || string(r.Records[0].Value) != "streamed" || r.Records[0].Offset != 3 {
			t.Fatalf("subscribe got %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("subscribe saw nothing")
	}
	if err := <-subErr; err == nil || err.Error() != "stop" {
		t.Fatalf("subscribe returned %v, want the handler's error", err)
	}
	stopSub()
	err = c.Subscribe(ctx, client.SubscribeRequest{Topic: "missing", Partition: 0}, func(client.FetchResult) error { return nil })
	wantCode(t, "subscribe unknown topic", err, codes.NotFound, "")

	// Consumer groups. Partition 2 now has 4 records.
	if err := c.CommitOffsets(ctx, "g", client.OffsetCommit{Topic: "orders", Partition: 2, Offset: 1, Metadata: "m"}); err != nil {
		t.Fatal(err)
	}
	err = c.CommitOffsets(ctx, "g", client.OffsetCommit{Topic: "orders", Partition: 2, Offset: 99})
	wantCode(t, "commit past the high watermark", err, codes.InvalidArgument, "")
	err = c.CommitOffsets(ctx, "", client.OffsetCommit{Topic: "orders", Partition: 2, Offset: 1})
	wantCode(t, "commit without group", err, codes.InvalidArgument, "")
	err = c.CommitOffsets(ctx, "g", client.OffsetCommit{Topic: "missing", Partition: 0, Offset: 0})
	wantCode(t, "commit unknown topic", err, codes.NotFound, "")
	co, err := c.FetchOffsets(ctx, "g", "orders")
	if err != nil || len(co) != 1 || co[0].Offset != 1 || co[0].Metadata != "m" || co[0].CommittedAtMs == 0 {
		t.Fatalf("fetch offsets: %+v %v", co, err)
	}
	_, err = c.FetchOffsets(ctx, "nope", "")
	wantCode(t, "fetch offsets of unknown group", err, codes.NotFound, "")
	gs, err := c.ListGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Group != "g" || gs[0].TotalLag != 3 || gs[0].Partitions != 1 {
		t.Fatalf("list groups: %+v %v", gs, err)
	}
	d, err := c.DescribeGroup(ctx, "g")
	if err != nil || d.TotalLag != 3 || len(d.Partitions) != 1 || d.Partitions[0].HighWatermark != 4 || d.Partitions[0].Lag != 3 {
		t.Fatalf("describe group: %+v %v", d, err)
	}
	_, err = c.DescribeGroup(ctx, "nope")
	wantCode(t, "describe unknown group", err, codes.NotFound, "")
	for _, tc := range []struct {
		r    client.GroupReset
		want int64
	}{
		{client.GroupReset{Strategy: client.ResetLatest, Topic: "orders", Partitions: []int32{2}}, 4},
		{client.GroupReset{Strategy: client.ResetEarliest, Topic: "orders", Partitions: []int32{2}}, 0},
		{client.GroupReset{Strategy: client.ResetOffset, Topic: "orders", Partitions: []int32{2}, Offset: 2}, 2},
		{client.GroupReset{Strategy: client.ResetTimestamp, Topic: "orders", Partitions: []int32{2}, TimestampMs: time.Now().Add(time.Hour).UnixMilli()}, 4},
	} {
		d, err := c.ResetGroup(ctx, "g", tc.r)
		if err != nil || len(d.Partitions) != 1 || d.Partitions[0].Offset != tc.want {
			t.Fatalf("reset %s: %+v %v", tc.r.Strategy, d, err)
		}
	}
	d, err = c.ResetGroup(ctx, "g", client.GroupReset{Strategy: client.ResetEarliest, Topic: "orders"})
	if err != nil || len(d.Partitions) != 3 {
		t.Fatalf("reset every partition: %+v %v", d, err)
	}
	_, err = c.ResetGroup(ctx, "g", client.GroupReset{Strategy: client.ResetEarliest, Topic: "missing"})
	wantCode(t, "reset unknown topic", err, codes.NotFound, "")
	_, err = c.ResetGroup(ctx, "g", client.GroupReset{Strategy: "sideways", Topic: "orders"})
	wantCode(t, "reset bad strategy", err, codes.InvalidArgument, "")
	_, err = c.ResetGroup(ctx, "g", client.GroupReset{Topic: "orders"})
	wantCode(t, "reset without strategy", err, codes.InvalidArgument, "")
	if err := c.DeleteGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeGroup(ctx, "g")
	wantCode(t, "describe deleted group", err, codes.NotFound, "")
	wantCode(t, "delete unknown group", c.DeleteGroup(ctx, "g"), codes.NotFound, "")

	// Delete topic.
	if err := c.DeleteTopic(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "delete deleted topic", c.DeleteTopic(ctx, "other"), codes.NotFound, "")
	wantCode(t, "delete empty name", c.DeleteTopic(ctx, ""), codes.InvalidArgument, "")
	_, _, err = c.DescribeTopic(ctx, "other")
	wantCode(t, "describe deleted topic", err, codes.NotFound, "")

	// The agent still serves after all of that.
	if _, err := p.Produce(ctx, "orders", client.Record{Value: []byte("alive")}.ToPartition(0)); err != nil {
		t.Fatalf("agent no longer serving: %v", err)
	}
	_ = a
}

// produceDropper lets the first Produce call it is armed for reach the
// agent, then answers the client with code instead of the agent's response
// (the response is "dropped"). It records the agent's real responses.
type produceDropper struct {
	code      codes.Code
	armed     atomic.Bool
	mu        sync.Mutex
	requests  []*pb.ProduceRequest
	responses []*pb.ProduceResponse
}

func (d *produceDropper) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if method != pb.StreamHouse_Produce_FullMethodName {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.requests = append(d.requests, req.(*pb.ProduceRequest))
		d.responses = append(d.responses, reply.(*pb.ProduceResponse))
	}
	if err == nil && d.armed.CompareAndSwap(true, false) {
		return status.Error(d.code, "test: the agent's response was dropped")
	}
	return err
}

// A produce whose response is lost after the agent wrote it is retried by
// the idempotent producer with the same sequence; the agent answers the
// retry as a duplicate with the original offset, and the record is stored
// once.
func TestDroppedProduceResponseIsNotDuplicated(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Unknown} {
		t.Run(code.String(), func(t *testing.T) {
			d := &produceDropper{code: code}
			c := dialAgent(t, addr, client.WithDialOptions(grpc.WithChainUnaryInterceptor(d.intercept)))
			ctx := ctxFor(t)
			topic := "drop-" + strings.ToLower(code.String())
			if _, err := c.CreateTopic(ctx, topic, 1, client.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			p := newProducer(t, c, client.ProducerConfig{RetryBackoff: 10 * time.Millisecond})
			if _, err := p.Produce(ctx, topic, client.Record{Value: []byte("first")}.ToPartition(0), client.Record{Value: []byte("second")}.ToPartition(0)); err != nil {
				t.Fatal(err)
			}
			d.mu.Lock()
			d.requests, d.responses = nil, nil
			d.mu.Unlock()
			d.armed.Store(true)

			offs, err := p.Produce(ctx, topic, client.Record{Value: []byte("once")}.ToPartition(0))
			if err != nil {
				t.Fatalf("produce with a dropped response: %v", err)
			}
			d.mu.Lock()
			reqs, resps := d.requests, d.responses
			d.mu.Unlock()
			if len(resps) != 2 {
				t.Fatalf("the agent answered %d produce calls, want 2 (the dropped one and the retry)", len(resps))
			}
			original := firstOffset(t, resps[0])
			if original != 2 || resps[0].GetDuplicate() {
				t.Fatalf("first write: offset %d duplicate %v, want 2/false", original, resps[0].GetDuplicate())
			}
			if !resps[1].GetDuplicate() || firstOffset(t, resps[1]) != original {
				t.Fatalf("retry answer: %+v, want a duplicate at offset %d", resps[1], original)
			}
			if reqs[0].GetBaseSequence() != reqs[1].GetBaseSequence() || reqs[0].GetProducerEpoch() != reqs[1].GetProducerEpoch() {
				t.Fatal("the retry did not resend the same batch (sequence/epoch)")
			}
			if offs[0].Offset != original {
				t.Fatalf("client reported offset %d, the agent wrote it at %d", offs[0].Offset, original)
			}
			recs := readAll(t, c, topic, 0)
			n := 0
			for _, r := range recs {
				if string(r.Value) == "once" {
					n++
					if r.Offset != original {
						t.Fatalf("record at offset %d, want the original %d", r.Offset, original)
					}
				}
			}
			if n != 1 || len(recs) != 3 {
				t.Fatalf("record stored %d times (%d records in the partition), want once", n, len(recs))
			}
			// The sequence continues: the next batch is written normally.
			offs, err = p.Produce(ctx, topic, client.Record{Value: []byte("next")}.ToPartition(0))
			if err != nil || offs[0].Offset != 3 {
				t.Fatalf("next batch: %+v %v", offs, err)
			}
		})
	}
}

func TestProducerFencedByNewEpoch(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	c := dialAgent(t, addr)
	ctx := ctxFor(t)
	if _, err := c.CreateTopic(ctx, "fence", 2, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	old := newProducer(t, c, client.ProducerConfig{})
	if _, err := old.Produce(ctx, "fence", client.Record{Value: []byte("a")}.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	id := old.Identity()
	bumped, err := c.InitProducer(ctx, id.ID)
	if err != nil || bumped.ID != id.ID || bumped.Epoch != id.Epoch+1 {
		t.Fatalf("second InitProducer: %+v %v (first %+v)", bumped, err, id)
	}
	_, err = old.Produce(ctx, "fence", client.Record{Value: []byte("b")}.ToPartition(0))
	if !errors.Is(err, client.ErrFenced) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("old session: %v, want ErrFenced", err)
	}
	// Fenced for good, on every partition, without re-initialising.
	_, err = old.Produce(ctx, "fence", client.Record{Value: []byte("c")}.ToPartition(1))
	if !errors.Is(err, client.ErrFenced) || old.Identity() != id {
		t.Fatalf("after fencing: %v, identity %+v", err, old.Identity())
	}
	if recs := readAll(t, c, "fence", 0); len(recs) != 1 {
		t.Fatalf("partition 0 holds %d records, want only the one written before fencing", len(recs))
	}
	if recs := readAll(t, c, "fence", 1); len(recs) != 0 {
		t.Fatalf("partition 1 holds %d records, want none", len(recs))
	}
}

func TestConsumerGroupResumesAfterCommit(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	c := dialAgent(t, addr)
	ctx := ctxFor(t)
	if _, err := c.CreateTopic(ctx, "cg", 2, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{})
	var recs []client.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, client.Record{Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprint(i))})
	}
	if _, err := p.Produce(ctx, "cg", recs...); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	c1, err := c.NewConsumer(ctx, client.ConsumerConfig{Topic: "cg", Group: "readers", MaxRecords: 10, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := 0
	for first < 25 {
		got, err := c1.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			seen[string(r.Value)]++
		}
		first += len(got)
	}
	if err := c1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pos := map[int32]int64{}
	for _, part := range c1.Assignment() {
		pos[part], _ = c1.Position(part)
	}
	_ = c1.Close()

	c2, err := c.NewConsumer(ctx, client.ConsumerConfig{Topic: "cg", Group: "readers", Start: client.Latest, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for part, want := range pos {
		if got, _ := c2.Position(part); got != want {
			t.Fatalf("partition %d: the new consumer starts at %d, the group committed %d", part, got, want)
		}
	}
	for total := first; total < 100; {
		got, err := c2.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			seen[string(r.Value)]++
		}
		total += len(got)
	}
	for i := 0; i < 100; i++ {
		if n := seen[fmt.Sprint(i)]; n != 1 {
			t.Fatalf("record %d consumed %d times across the two consumers, want exactly once", i, n)
		}
	}
	if err := c2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeGroup(ctx, "readers")
	if err != nil || d.TotalLag != 0 {
		t.Fatalf("group after consuming everything: %+v %v", d, err)
	}

	// A consumer starting at Latest without a group sees only new records.
	late, err := c.NewConsumer(ctx, client.ConsumerConfig{Topic: "cg", Start: client.Latest, MaxWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if _, err := p.Produce(ctx, "cg", client.Record{Value: []byte("new")}.ToPartition(1)); err != nil {
		t.Fatal(err)
	}
	got, err := late.Poll(ctx)
	if err != nil || len(got) != 1 || string(got[0].Value) != "new" {
		t.Fatalf("latest consumer got %+v %v", got, err)
	}
}

// firstOffset is the offset of a produce answer's first record, from
// either of its forms (the Go client asks for offset ranges).
func firstOffset(t *testing.T, r *pb.ProduceResponse) int64 {
	t.Helper()
	switch {
	case len(r.GetOffsets()) > 0:
		return r.GetOffsets()[0].GetOffset()
	case len(r.GetOffsetRanges()) > 0:
		return r.GetOffsetRanges()[0].GetBaseOffset()
	}
	t.Fatalf("produce answer without offsets: %v", r)
	return -1
}
