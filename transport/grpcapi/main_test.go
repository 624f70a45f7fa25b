package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

type syncBuffer = testkit.SyncBuffer

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// env is a gRPC server on a real TCP listener backed by a fakeAgent, and a
// client connected to it.
type env struct {
	agent    *fakeAgent
	reg      *prometheus.Registry
	errs     *prometheus.CounterVec // the server's streamhouse_errors_total
	logs     *syncBuffer
	addr     string
	conn     *grpc.ClientConn
	client   pb.StreamHouseClient
	stopping chan struct{}
	stopOnce sync.Once
}

// newEnv starts a server. mods may change the Config (and the registry,
// before the server registers its collectors).
func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{agent: newFakeAgent(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}, stopping: make(chan struct{})}
	cfg := Config{
		Topics: e.agent, Producer: e.agent, Idempotent: e.agent, Fetcher: e.agent, Groups: e.agent,
		Cluster: e.agent, Readiness: e.agent,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:  e.reg,
		Errors:      transport.NewErrorsCounter(e.reg),
		Connections: transport.NewActiveConnectionsGauge(e.reg),
		Stopping:    e.stopping,
	}
	for _, m := range mods {
		m(&cfg)
	}
	e.errs = cfg.Errors
	srv := NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	e.conn, err = grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.client = pb.NewStreamHouseClient(e.conn)
	t.Cleanup(func() {
		_ = e.conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// stop closes Config.Stopping (the agent begins shutting down).
func (e *env) stop() { e.stopOnce.Do(func() { close(e.stopping) }) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) createTopic(t *testing.T, name string, partitions int32) {
	t.Helper()
	if _, err := e.client.CreateTopic(ctxT(t), &pb.CreateTopicRequest{Name: name, Partitions: &partitions}); err != nil {
		t.Fatalf("CreateTopic %s: %v", name, err)
	}
}

// produce writes values to one partition and returns their offsets.
func (e *env) produce(t *testing.T, topic string, part int32, values ...string) []int64 {
	t.Helper()
	req := &pb.ProduceRequest{Topic: topic}
	for _, v := range values {
		req.Records = append(req.Records, &pb.ProduceRecord{Partition: &part, Value: []byte(v)})
	}
	resp, err := e.client.Produce(ctxT(t), req)
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	out := make([]int64, len(resp.Offsets))
	for i, o := range resp.Offsets {
		out[i] = o.Offset
	}
	return out
}

// errCase is a row of a bad-input table: what the test sends (a request, or
// a call to make) and the gRPC code and error kind it must fail with.
type errCase[In any] struct {
	name string
	in   In
	code codes.Code
	kind string
}

// wantCode fails unless err is a status with code want (and, when kind is
// not "", an ErrorDetail with that code). It returns the detail.
func wantCode(t *testing.T, err error, want codes.Code, kind string) *pb.ErrorDetail {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != want {
		t.Fatalf("code = %s (%q), want %s", st.Code(), st.Message(), want)
	}
	var d *pb.ErrorDetail
	for _, x := range st.Details() {
		if ed, ok := x.(*pb.ErrorDetail); ok {
			d = ed
		}
	}
	if kind != "" {
		if d == nil {
			t.Fatalf("status %s %q has no ErrorDetail", st.Code(), st.Message())
		}
		if d.Code != kind {
			t.Fatalf("ErrorDetail.code = %q, want %q", d.Code, kind)
		}
	}
	return d
}

func isCanceled(err error) bool {
	return status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled)
}
