package grpcapi

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestGetMetadata(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.agent.cluster = transport.ClusterStatus{NodeID: "agent-2", Leader: "agent-1", Members: []transport.ClusterMember{
		{ID: "agent-3", GRPCAddr: "10.0.0.3:9090", HTTPAddr: "10.0.0.3:8080", GossipState: "alive"},
		{ID: "agent-1", GRPCAddr: "10.0.0.1:9090", HTTPAddr: "10.0.0.1:8080", GossipState: "alive", RaftLeader: true},
		{ID: "agent-2", GRPCAddr: "10.0.0.2:9090", HTTPAddr: "10.0.0.2:8080", GossipState: "suspect"},
	}}
	e.createTopic(t, "b", 1)
	e.createTopic(t, "a", 2)
	e.agent.setLeader("a", 1, "agent-3")

	md, err := e.client.GetMetadata(ctx, &pb.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.NodeId != "agent-2" || md.RaftLeader != "agent-1" || len(md.Agents) != 3 {
		t.Fatalf("metadata = %v", md)
	}
	for i, a := range md.Agents {
		n := string(rune('1' + i))
		if a.NodeId != "agent-"+n || a.GrpcAddress != "10.0.0."+n+":9090" || a.HttpAddress != "10.0.0."+n+":8080" || a.RaftLeader != (i == 0) {
			t.Errorf("agent %d = %v", i, a)
		}
	}
	if md.Agents[1].GossipState != "suspect" {
		t.Errorf("gossip state = %q", md.Agents[1].GossipState)
	}
	if len(md.Topics) != 2 || md.Topics[0].Name != "a" || md.Topics[1].Name != "b" || len(md.Topics[0].Partitions) != 2 {
		t.Fatalf("topics = %v", md.Topics)
	}
	if p := md.Topics[0].Partitions[1]; p.Partition != 1 || p.Leader != "agent-3" || p.LeaderEpoch != 2 {
		t.Errorf("a/1 = %v", p)
	}
	if p := md.Topics[0].Partitions[0]; p.Leader != "agent-1" || p.LeaderEpoch != 1 {
		t.Errorf("a/0 = %v", p)
	}

	one, err := e.client.GetMetadata(ctx, &pb.GetMetadataRequest{Topics: []string{"b", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Topics) != 1 || one.Topics[0].Name != "b" || len(one.Agents) != 3 {
		t.Fatalf("metadata for b = %v", one)
	}
	_, err = e.client.GetMetadata(ctx, &pb.GetMetadataRequest{Topics: []string{"b", "nope"}})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.GetMetadata(ctx, &pb.GetMetadataRequest{Topics: []string{""}})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
}

func TestOptionalBackendsMissing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Groups, c.Idempotent, c.Cluster = nil, nil, nil })
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	_, err := e.client.ListGroups(ctx, &pb.ListGroupsRequest{})
	wantCode(t, err, codes.Unimplemented, transport.CodeNotFound)
	_, err = e.client.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g"})
	wantCode(t, err, codes.Unimplemented, transport.CodeNotFound)
	_, err = e.client.InitProducer(ctx, &pb.InitProducerRequest{})
	wantCode(t, err, codes.Unimplemented, transport.CodeNotFound)
	_, err = e.client.Produce(ctx, &pb.ProduceRequest{Topic: "t", ProducerId: u64(1), Records: []*pb.ProduceRecord{{Partition: i32(0)}}})
	wantCode(t, err, codes.Unimplemented, transport.CodeNotFound)
	md, err := e.client.GetMetadata(ctx, &pb.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Agents) != 0 || len(md.Topics) != 1 {
		t.Errorf("metadata without cluster info = %v", md)
	}
	// Plain produce still works.
	e.produce(t, "t", 0, "x")
}

func TestNewServerNeedsBackends(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewServer without backends did not panic")
		}
	}()
	NewServer(Config{})
}

func TestHealth(t *testing.T) {
	old := healthPollInterval
	healthPollInterval = 10 * time.Millisecond
	t.Cleanup(func() { healthPollInterval = old })
	e := newEnv(t)
	ctx := ctxT(t)
	hc := healthpb.NewHealthClient(e.conn)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return resp.Status
	}
	serving, notServing := healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	if check("") != serving || check(ServiceName) != serving {
		t.Fatal("a ready agent is not SERVING")
	}
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope.Service"})
	wantCode(t, err, codes.NotFound, "")

	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if s := next(); s != serving {
		t.Fatalf("first watch status = %s", s)
	}

	e.agent.setReady(false, "replaying the log")
	if check("") != notServing || check(ServiceName) != notServing {
		t.Fatal("a not-ready agent is SERVING")
	}
	if s := next(); s != notServing {
		t.Fatalf("watch after readiness lost = %s", s)
	}
	list, err := hc.List(ctx, &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Statuses) != 2 || list.Statuses[""].Status != notServing || list.Statuses[ServiceName].Status != notServing {
		t.Errorf("List = %v", list.Statuses)
	}

	e.agent.setReady(true, "")
	if s := next(); s != serving {
		t.Fatalf("watch after readiness regained = %s", s)
	}
	if check("") != serving {
		t.Fatal("not SERVING after readiness regained")
	}
	// A not-ready answer is a state report, not an error response.
	if v := testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeUnavailable)); v != 0 {
		t.Errorf("errors_total{unavailable} = %v", v)
	}

	// Stopping: NOT_SERVING, and the watch ends.
	e.stop()
	if s := next(); s != notServing {
		t.Fatalf("watch after stop = %s", s)
	}
	if _, err := watch.Recv(); err == nil {
		t.Fatal("watch did not end when the agent stopped")
	} else {
		wantCode(t, err, codes.Unavailable, "")
	}
	if check(ServiceName) != notServing {
		t.Fatal("a stopping agent is SERVING")
	}
}

func TestReflection(t *testing.T) {
	e := newEnv(t)
	rc := reflectionpb.NewServerReflectionClient(e.conn)
	stream, err := rc.ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{ServiceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("services %v lack %s", names, want)
		}
	}
	// grpcurl describes the service from its file descriptor.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: ServiceName}}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if fds := resp.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fds) == 0 || !bytes.Contains(fds[0], []byte("Subscribe")) {
		t.Errorf("file descriptor for %s: %v", ServiceName, resp)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	if _, err := e.client.ListTopics(ctx, &pb.ListTopicsRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
	_, err = e.client.Produce(ctx, &pb.ProduceRequest{Topic: "t"})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
	e.agent.setErr("Produce", fsm.ErrUnavailable)
	_, err = e.client.Produce(ctx, &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{{}}})
	wantCode(t, err, codes.Unavailable, transport.CodeUnavailable)

	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{pb.StreamHouse_CreateTopic_FullMethodName, "OK", 1},
		{pb.StreamHouse_ListTopics_FullMethodName, "OK", 1},
		{pb.StreamHouse_DescribeTopic_FullMethodName, "NotFound", 2},
		{pb.StreamHouse_Produce_FullMethodName, "InvalidArgument", 1},
		{pb.StreamHouse_Produce_FullMethodName, "Unavailable", 1},
		{pb.StreamHouse_Produce_FullMethodName, "OK", 0},
	} {
		if got := e.requests(t, c.method, c.code); got != c.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	for kind, want := range map[string]float64{transport.CodeNotFound: 2, transport.CodeBadRequest: 1, transport.CodeUnavailable: 1, transport.CodeInternal: 0} {
		if got := testutil.ToFloat64(e.errs.WithLabelValues(kind)); got != want {
			t.Errorf("errors_total{%s} = %v, want %v", kind, got, want)
		}
	}
	if n := testkit.Metric(t, e.reg, "streamhouse_grpc_request_duration_seconds", "method", pb.StreamHouse_Produce_FullMethodName); n != 2 {
		t.Errorf("duration samples for Produce = %v, want 2", n)
	}
}

// A message over gRPC's size limit never reaches the interceptor; the stats
// handler still counts it.
func TestOversizeMessageCounted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRequestBytes = 1000 })
	e.createTopic(t, "t", 1)
	big := bytes.Repeat([]byte("x"), 200<<10) // > 1000 + 64 KiB
	_, err := e.client.Produce(ctxT(t), &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{{Value: big}}})
	wantCode(t, err, codes.ResourceExhausted, "")
	waitFor(t, 5*time.Second, "the rejected message to be counted", func() bool {
		return e.requests(t, pb.StreamHouse_Produce_FullMethodName, "ResourceExhausted") == 1 &&
			testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeRequestTooLarge)) == 1
	})
	if n := len(e.agent.stored("t", 0)); n != 0 {
		t.Errorf("stored %d records", n)
	}
}

// REST and gRPC servers given one gauge report into one
// streamhouse_active_connections.
func TestActiveConnectionsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	gauge := transport.NewActiveConnectionsGauge(reg)
	e := newEnv(t, func(c *Config) {
		// As in the agent (the REST server is never started: only its
		// collectors matter here).
		transport.NewHTTPServer(transport.HTTPConfig{Registerer: reg, Connections: gauge}, c.Topics, c.Producer, c.Fetcher, c.Readiness)
		c.Registerer, c.Connections = reg, gauge
	})
	if _, err := e.client.ListTopics(ctxT(t), &pb.ListTopicsRequest{}); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(gauge); v != 1 {
		t.Fatalf("active connections = %v with one client, want 1", v)
	}
	if n, err := testutil.GatherAndCount(reg, "streamhouse_active_connections"); err != nil || n != 1 {
		t.Fatalf("active connection series = %d, %v", n, err)
	}
	if err := e.conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the connection to close", func() bool { return testutil.ToFloat64(gauge) == 0 })
}

func TestPanicBecomesInternal(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)

	e.agent.setPanic("Topics")
	_, err := e.client.ListTopics(ctx, &pb.ListTopicsRequest{})
	wantCode(t, err, codes.Internal, transport.CodeInternal)
	if strings.Contains(err.Error(), "exploded") {
		t.Errorf("panic text leaked to the client: %v", err)
	}
	if !strings.Contains(e.logs.String(), "panic in gRPC handler") || !strings.Contains(e.logs.String(), "fake: Topics exploded") {
		t.Errorf("panic not logged:\n%s", e.logs)
	}

	// In a stream handler too.
	e.agent.setPanic("Fetch")
	stream, err := e.client.Subscribe(ctx, &pb.SubscribeRequest{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.Internal, transport.CodeInternal)

	// The server is still up.
	e.agent.setPanic("")
	list, err := e.client.ListTopics(ctx, &pb.ListTopicsRequest{})
	if err != nil || len(list.Topics) != 1 {
		t.Fatalf("after panics: %v, %v", list, err)
	}
	if v := testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeInternal)); v != 2 {
		t.Errorf("errors_total{internal} = %v, want 2", v)
	}
	if v := e.requests(t, pb.StreamHouse_Subscribe_FullMethodName, "Internal"); v != 1 {
		t.Errorf("requests_total{Subscribe,Internal} = %v", v)
	}
}

// A panic in a write RPC may come after the write was proposed: the client
// is told the outcome is unknown (invariant 5), not INTERNAL.
func TestPanicInWriteIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	e.agent.setPanic("DeleteTopic")
	_, err := e.client.DeleteTopic(ctxT(t), &pb.DeleteTopicRequest{Name: "t"})
	wantCode(t, err, codes.Unknown, transport.CodeOutcomeUnknown)
	if strings.Contains(err.Error(), "exploded") {
		t.Errorf("panic text leaked to the client: %v", err)
	}
	if !strings.Contains(e.logs.String(), "panic in gRPC handler") {
		t.Errorf("panic not logged:\n%s", e.logs)
	}
}

func TestUnexpectedErrorIsGeneric(t *testing.T) {
	e := newEnv(t)
	e.agent.setErr("DeleteTopic", errDiskOnFire)
	_, err := e.client.DeleteTopic(ctxT(t), &pb.DeleteTopicRequest{Name: "t"})
	wantCode(t, err, codes.Internal, transport.CodeInternal)
	if strings.Contains(err.Error(), "/var/secret") {
		t.Errorf("internal error text leaked: %v", err)
	}
	if !strings.Contains(e.logs.String(), "/var/secret") {
		t.Error("internal error not logged")
	}
}

var errDiskOnFire = errorString("write /var/secret/wal: disk on fire")

type errorString string

func (e errorString) Error() string { return string(e) }

// requests reads streamhouse_grpc_requests_total{method,code} (0 when the
// series does not exist yet).
func (e *env) requests(t *testing.T, method, code string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "streamhouse_grpc_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if got["method"] == method && got["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
