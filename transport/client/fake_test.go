package client

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// fakeAgent is an in-memory StreamHouse gRPC server with the agent's
// idempotent-produce semantics (sequence check, duplicates answered with
// the original offsets), enough to test the client's logic
// deterministically. Integration tests against a real agent live in
// cmd/streamhouse.
type fakeAgent struct {
	pb.UnimplementedStreamHouseServer
	nodeID string
	addr   string
	srv    *grpc.Server

	mu        sync.Mutex
	cluster   *fakeCluster
	produces  []*pb.ProduceRequest // every Produce call received
	inflight  map[int32]int        // concurrent Produce calls per partition
	maxPerP   map[int32]int
	maxTotal  int
	curTotal  int
	fetches   int
	onProduce func(req *pb.ProduceRequest) error // runs before the write; an error is returned instead
	onFetch   func(req *pb.FetchRequest) (*pb.FetchResponse, error, bool)
}

// fakeCluster is the state shared by the fake agents of one test.
type fakeCluster struct {
	mu        sync.Mutex
	agents    []*fakeAgent
	topics    map[string]*fakeTopic
	producers map[uint64]*fakeProducer
	nextPID   uint64
	groups    map[string]map[string]map[int32]int64
}

type fakeTopic struct {
	id      uint64
	parts   [][]*pb.FetchedRecord // records per partition, dense from offset base[p]
	base    []int64               // offset of parts[p][0] (gaps: set a higher base)
	leaders []string
}

type fakeProducer struct {
	epoch  uint32
	recent map[string][]fakeBatch // "topic/partition" → recent batches
}

type fakeBatch struct {
	seq, count, base int64
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{topics: map[string]*fakeTopic{}, producers: map[uint64]*fakeProducer{}, nextPID: 1000,
		groups: map[string]map[string]map[int32]int64{}}
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := &fakeAgent{nodeID: fmt.Sprintf("fake-%d", i+1), addr: ln.Addr().String(), cluster: fc,
			inflight: map[int32]int{}, maxPerP: map[int32]int{}}
		a.srv = grpc.NewServer()
		pb.RegisterStreamHouseServer(a.srv, a)
		go func() { _ = a.srv.Serve(ln) }()
		t.Cleanup(a.srv.Stop)
		fc.agents = append(fc.agents, a)
	}
	return fc
}

func (fc *fakeCluster) addTopic(name string, partitions int, leaders ...string) *fakeTopic {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	t := &fakeTopic{id: uint64(len(fc.topics) + 1), parts: make([][]*pb.FetchedRecord, partitions), base: make([]int64, partitions),
		leaders: make([]string, partitions)}
	for i := range t.leaders {
		if len(leaders) > 0 {
			t.leaders[i] = leaders[i%len(leaders)]
		} else {
			t.leaders[i] = fc.agents[0].nodeID
		}
	}
	fc.topics[name] = t
	return t
}

// records returns a copy of the stored records of a partition.
func (fc *fakeCluster) records(topic string, p int32) []*pb.FetchedRecord {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]*pb.FetchedRecord(nil), fc.topics[topic].parts[p]...)
}

// oneAgent is a one-agent fake cluster with one topic, and a client of it.
func oneAgent(t *testing.T, topic string, partitions int) (*fakeCluster, *Client) {
	t.Helper()
	fc := newFakeCluster(t, 1)
	fc.addTopic(topic, partitions)
	return fc, fc.dial(t)
}

func (fc *fakeCluster) dial(t *testing.T, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, []string{fc.agents[0].addr}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func detailErr(code codes.Code, kind, msg string) error {
	st, _ := status.New(code, msg).WithDetails(&pb.ErrorDetail{Code: kind})
	return st.Err()
}

func (a *fakeAgent) GetMetadata(_ context.Context, req *pb.GetMetadataRequest) (*pb.GetMetadataResponse, error) {
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := &pb.GetMetadataResponse{NodeId: a.nodeID, RaftLeader: fc.agents[0].nodeID}
	for _, x := range fc.agents {
		out.Agents = append(out.Agents, &pb.Agent{NodeId: x.nodeID, GrpcAddress: x.addr, GossipState: "alive", RaftLeader: x == fc.agents[0]})
	}
	names := req.GetTopics()
	if len(names) == 0 {
		for n := range fc.topics {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	for _, n := range names {
		t := fc.topics[n]
		if t == nil {
			return nil, detailErr(codes.NotFound, KindNotFound, "topic not found: "+n)
		}
		tm := &pb.TopicMetadata{Name: n, Id: t.id}
		for i, l := range t.leaders {
			tm.Partitions = append(tm.Partitions, &pb.PartitionMetadata{Partition: int32(i), Leader: l})
		}
		out.Topics = append(out.Topics, tm)
	}
	return out, nil
}

func (a *fakeAgent) DescribeTopic(_ context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	t := fc.topics[req.GetName()]
	if t == nil {
		return nil, detailErr(codes.NotFound, KindNotFound, "topic not found")
	}
	out := &pb.DescribeTopicResponse{Topic: &pb.Topic{Name: req.GetName(), Id: t.id, Partitions: int32(len(t.parts))}}
	for i := range t.parts {
		out.Partitions = append(out.Partitions, &pb.PartitionInfo{Partition: int32(i), Leader: t.leaders[i],
			LowWatermark: t.base[i], HighWatermark: t.base[i] + int64(len(t.parts[i]))})
	}
	return out, nil
}

func (a *fakeAgent) InitProducer(_ context.Context, req *pb.InitProducerRequest) (*pb.InitProducerResponse, error) {
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if req.ProducerId == nil {
		fc.nextPID++
		fc.producers[fc.nextPID] = &fakeProducer{recent: map[string][]fakeBatch{}}
		return &pb.InitProducerResponse{ProducerId: fc.nextPID}, nil
	}
	p := fc.producers[req.GetProducerId()]
	if p == nil {
		return nil, detailErr(codes.FailedPrecondition, KindUnknownProducer, "unknown producer id")
	}
	p.epoch++
	p.recent = map[string][]fakeBatch{}
	return &pb.InitProducerResponse{ProducerId: req.GetProducerId(), ProducerEpoch: p.epoch}, nil
}

func (a *fakeAgent) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	part := req.GetRecords()[0].GetPartition()
	a.mu.Lock()
	a.produces = append(a.produces, req)
	a.inflight[part]++
	a.curTotal++
	a.maxPerP[part] = max(a.maxPerP[part], a.inflight[part])
	a.maxTotal = max(a.maxTotal, a.curTotal)
	hook := a.onProduce
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inflight[part]--
		a.curTotal--
		a.mu.Unlock()
	}()
	if hook != nil {
		if err := hook(req); err != nil {
			return nil, err
		}
	}
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	t := fc.topics[req.GetTopic()]
	if t == nil {
		return nil, detailErr(codes.NotFound, KindNotFound, "topic not found")
	}
	if part < 0 || int(part) >= len(t.parts) {
		return nil, detailErr(codes.InvalidArgument, KindBadRequest, "bad partition")
	}
	n := int64(len(req.GetRecords()))
	key := fmt.Sprintf("%s/%d", req.GetTopic(), part)
	var prod *fakeProducer
	if req.ProducerId != nil {
		prod = fc.producers[req.GetProducerId()]
		switch {
		case prod == nil:
			return nil, detailErr(codes.FailedPrecondition, KindUnknownProducer, "unknown producer")
		case req.GetProducerEpoch() < prod.epoch:
			return nil, detailErr(codes.FailedPrecondition, KindProducerFenced, "producer fenced by a newer epoch")
		}
		recent := prod.recent[key]
		for _, b := range recent {
			if b.seq == req.GetBaseSequence() && b.count == n {
				return offsetsResp(part, b.base, n, true), nil
			}
		}
		next := int64(0)
		if len(recent) > 0 {
			next = recent[len(recent)-1].seq + recent[len(recent)-1].count
		}
		if req.GetBaseSequence() != next {
			return nil, detailErr(codes.FailedPrecondition, KindOutOfOrderSequence, fmt.Sprintf("sequence %d, expected %d", req.GetBaseSequence(), next))
		}
	}
	base := t.base[part] + int64(len(t.parts[part]))
	for i, r := range req.GetRecords() {
		t.parts[part] = append(t.parts[part], &pb.FetchedRecord{Partition: part, Offset: base + int64(i), Key: r.Key, Value: r.GetValue(),
			Headers: r.GetHeaders(), TimestampMs: r.GetTimestampMs()})
	}
	if prod != nil {
		recent := append(prod.recent[key], fakeBatch{seq: req.GetBaseSequence(), count: n, base: base})
		if len(recent) > fsm.MaxProducerBatches { // the agent remembers the last 5
			recent = recent[len(recent)-fsm.MaxProducerBatches:]
		}
		prod.recent[key] = recent
	}
	return offsetsResp(part, base, n, false), nil
}

func offsetsResp(part int32, base, n int64, dup bool) *pb.ProduceResponse {
	out := &pb.ProduceResponse{Duplicate: dup}
	for i := int64(0); i < n; i++ {
		out.Offsets = append(out.Offsets, &pb.RecordOffset{Partition: part, Offset: base + i})
	}
	return out
}

func (a *fakeAgent) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	a.mu.Lock()
	a.fetches++
	hook := a.onFetch
	a.mu.Unlock()
	if hook != nil {
		if resp, err, ok := hook(req); ok {
			return resp, err
		}
	}
	fc := a.cluster
	fc.mu.Lock()
	t := fc.topics[req.GetTopic()]
	if t == nil || int(req.GetPartition()) >= len(t.parts) {
		fc.mu.Unlock()
		return nil, detailErr(codes.NotFound, KindNotFound, "not found")
	}
	p := req.GetPartition()
	low, high := t.base[p], t.base[p]+int64(len(t.parts[p]))
	off := req.GetOffset()
	if off < low || off > high {
		fc.mu.Unlock()
		st, _ := status.New(codes.OutOfRange, "out of range").WithDetails(&pb.ErrorDetail{Code: KindOffsetOutOfRange,
			RequestedOffset: &off, LowWatermark: &low, HighWatermark: &high})
		return nil, st.Err()
	}
	if off == high {
		fc.mu.Unlock()
		// Long-poll: this fake never gets new records while polled; wait
		// for the deadline or the cancellation.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(req.GetMaxWaitMs()) * time.Millisecond):
		}
		return &pb.FetchResponse{NextOffset: off, HighWatermark: high, LowWatermark: low}, nil
	}
	defer fc.mu.Unlock()
	maxN := int64(req.GetMaxRecords())
	if maxN == 0 {
		maxN = 100
	}
	end := min(high, off+maxN)
	recs := t.parts[p][off-low : end-low]
	return &pb.FetchResponse{Records: recs, NextOffset: end, HighWatermark: high, LowWatermark: low}, nil
}

func (a *fakeAgent) FetchOffsets(_ context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	g := fc.groups[req.GetGroup()]
	if g == nil {
		return nil, detailErr(codes.NotFound, KindNotFound, "consumer group not found")
	}
	out := &pb.FetchOffsetsResponse{}
	for p, off := range g[req.GetTopic()] {
		out.Offsets = append(out.Offsets, &pb.CommittedOffset{Topic: req.GetTopic(), Partition: p, Offset: off})
	}
	return out, nil
}

func (a *fakeAgent) CommitOffsets(_ context.Context, req *pb.CommitOffsetsRequest) (*pb.CommitOffsetsResponse, error) {
	fc := a.cluster
	fc.mu.Lock()
	defer fc.mu.Unlock()
	g := fc.groups[req.GetGroup()]
	if g == nil {
		g = map[string]map[int32]int64{}
		fc.groups[req.GetGroup()] = g
	}
	for _, o := range req.GetOffsets() {
		if g[o.GetTopic()] == nil {
			g[o.GetTopic()] = map[int32]int64{}
		}
		g[o.GetTopic()][o.GetPartition()] = o.GetOffset()
	}
	return &pb.CommitOffsetsResponse{}, nil
}

// produceCalls returns the Produce requests the agent received.
func (a *fakeAgent) produceCalls() []*pb.ProduceRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*pb.ProduceRequest(nil), a.produces...)
}

func (a *fakeAgent) setProduceHook(f func(*pb.ProduceRequest) error) {
	a.mu.Lock()
	a.onProduce = f
	a.mu.Unlock()
}
