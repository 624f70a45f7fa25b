package grpcapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// TestGRPCOverTLSWithAPIKeys runs the gRPC server on a real TLS listener
// with API keys: health stays open; no or an unknown token is
// Unauthenticated; a key lacking the scope or the topic is
// PermissionDenied; the right key is served (also through the Go client's
// WithTLSCAFile and WithToken); plaintext and untrusting clients fail.
func TestGRPCOverTLSWithAPIKeys(t *testing.T) {
	ca := transporttest.NewCA(t, "test CA")
	files := ca.Issue(t, "agent").Write(t, ca, t.TempDir(), "agent")
	cf, err := transport.LoadCertFiles(files.Cert, files.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokRead, kRead, _ := transport.NewAPIKey("reader", transport.ScopeRead, []string{"orders"})
	tokWrite, kWrite, _ := transport.NewAPIKey("orders-writer", transport.ScopeWrite, []string{"orders"})
	tokAdmin, kAdmin, _ := transport.NewAPIKey("admin", transport.ScopeAdmin, nil)

	agent := newFakeAgent()
	reg := prometheus.NewRegistry()
	errs := transport.NewErrorsCounter(reg)
	srv := NewServer(Config{
		Topics: agent, Producer: agent, Idempotent: agent, Fetcher: agent, Groups: agent, Cluster: agent, Readiness: agent,
		Registerer: reg, Errors: errs, Auth: transport.NewAuthenticator([]transport.APIKey{kRead, kWrite, kAdmin}, false),
	}, grpc.Creds(credentials.NewTLS(transport.ServerTLSConfig(cf))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	addr := ln.Addr().String()
	for _, topic := range []string{"orders", "secret"} {
		if _, err := agent.CreateTopic(context.Background(), topic, 1, fsm.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh := pb.NewStreamHouseClient(conn)
	as := func(token string) context.Context {
		ctx := ctxT(t)
		if token == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	one := int32(0)

	// Health stays open.
	hr, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v %v", hr, err)
	}

	// Unauthenticated.
	_, err = sh.ListTopics(as(""), &pb.ListTopicsRequest{})
	wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)
	_, err = sh.ListTopics(as("sh_unknown"), &pb.ListTopicsRequest{})
	wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)
	_, err = sh.ListTopics(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Basic "+tokRead), &pb.ListTopicsRequest{})
	wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)
	_, err = sh.Produce(as(""), &pb.ProduceRequest{Topic: "orders", Records: []*pb.ProduceRecord{{Value: []byte("x")}}})
	wantCode(t, err, codes.Unauthenticated, transport.CodeUnauthenticated)
	if n := len(agent.stored("orders", 0)); n != 0 {
		t.Fatalf("an unauthenticated produce stored %d records", n)
	}

	// The read key: its topic, read only.
	lt, err := sh.ListTopics(as(tokRead), &pb.ListTopicsRequest{})
	if err != nil || len(lt.GetTopics()) != 1 || lt.GetTopics()[0].GetName() != "orders" {
		t.Fatalf("topics for a key restricted to orders: %v %v", lt, err)
	}
	md, err := sh.GetMetadata(as(tokRead), &pb.GetMetadataRequest{})
	if err != nil || len(md.GetTopics()) != 1 || md.GetTopics()[0].GetName() != "orders" {
		t.Fatalf("metadata for a key restricted to orders: %v %v", md, err)
	}
	_, err = sh.GetMetadata(as(tokRead), &pb.GetMetadataRequest{Topics: []string{"secret"}})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	_, err = sh.DescribeTopic(as(tokRead), &pb.DescribeTopicRequest{Name: "secret"})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := sh.Fetch(as(tokRead), &pb.FetchRequest{Topic: "orders", Partition: 0}); err != nil {
		t.Fatalf("fetch orders with the read key: %v", err)
	}
	_, err = sh.Fetch(as(tokRead), &pb.FetchRequest{Topic: "secret", Partition: 0})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	stream, err := sh.Subscribe(as(tokRead), &pb.SubscribeRequest{Topic: "secret", Partition: 0})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	_, err = sh.Produce(as(tokRead), &pb.ProduceRequest{Topic: "orders", Records: []*pb.ProduceRecord{{Value: []byte("x")}}})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	_, err = sh.InitProducer(as(tokRead), &pb.InitProducerRequest{})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)

	// The write key: per topic; no topic admin.
	if _, err := sh.Produce(as(tokWrite), &pb.ProduceRequest{Topic: "orders", Records: []*pb.ProduceRecord{{Partition: &one, Value: []byte("x")}}}); err != nil {
		t.Fatalf("produce with the write key: %v", err)
	}
	_, err = sh.Produce(as(tokWrite), &pb.ProduceRequest{Topic: "secret", Records: []*pb.ProduceRecord{{Value: []byte("x")}}})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := sh.InitProducer(as(tokWrite), &pb.InitProducerRequest{}); err != nil {
		t.Fatalf("InitProducer with the write key: %v", err)
	}
	_, err = sh.CommitOffsets(as(tokWrite), &pb.CommitOffsetsRequest{Group: "g", Offsets: []*pb.OffsetCommit{{Topic: "secret", Partition: 0, Offset: 0}}})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := sh.CommitOffsets(as(tokWrite), &pb.CommitOffsetsRequest{Group: "g", Offsets: []*pb.OffsetCommit{{Topic: "orders", Partition: 0, Offset: 1}}}); err != nil {
		t.Fatalf("commit with the write key: %v", err)
	}
	_, err = sh.CreateTopic(as(tokWrite), &pb.CreateTopicRequest{Name: "new"})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := sh.CreateTopic(as(tokAdmin), &pb.CreateTopicRequest{Name: "new"}); err != nil {
		t.Fatalf("create topic with the admin key: %v", err)
	}
	_, err = sh.AlterTopicConfig(as(tokWrite), &pb.AlterTopicConfigRequest{Name: "new", Configs: map[string]string{"retention.ms": "1"}})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	_, err = sh.CreatePartitions(as(tokWrite), &pb.CreatePartitionsRequest{Name: "new", Count: 2})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := sh.CreatePartitions(as(tokAdmin), &pb.CreatePartitionsRequest{Name: "new", Count: 2}); err != nil {
		t.Fatalf("add partitions with the admin key: %v", err)
	}
	for kind, min := range map[string]float64{transport.CodeUnauthenticated: 4, transport.CodePermissionDenied: 9} {
		if got := testutil.ToFloat64(errs.WithLabelValues(kind)); got < min {
			t.Errorf("streamhouse_errors_total{kind=%q} = %v, want >= %v", kind, got, min)
		}
	}

	// The Go client: CA file and token.
	c, err := client.Dial(ctxT(t), []string{addr}, client.WithTLSCAFile(files.CA), client.WithToken(tokRead))
	if err != nil {
		t.Fatalf("client with CA and token: %v", err)
	}
	ts, err := c.ListTopics(ctxT(t))
	_ = c.Close()
	if err != nil || len(ts) != 1 || ts[0].Name != "orders" {
		t.Fatalf("client ListTopics: %v %v", ts, err)
	}
	_, err = client.Dial(ctxT(t), []string{addr}, client.WithTLSCAFile(files.CA))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != codes.Unauthenticated || ce.Kind != client.KindUnauthenticated {
		t.Fatalf("client without a token: %v", err)
	}

	// Clients that speak plaintext or do not trust the CA get nothing.
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = pb.NewStreamHouseClient(plain).ListTopics(as(tokRead), &pb.ListTopicsRequest{})
	wantCode(t, err, codes.Unavailable, "")
	_, err = client.Dial(ctxT(t), []string{addr}, client.WithTLS(nil), client.WithToken(tokRead))
	if err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}
}

// TestInitProducerPassesTheCallersKey: InitProducer hands the caller's key
// name to the backend as the producer's owner, so a key for another topic
// cannot bump (fence) a producer another key created: PERMISSION_DENIED.
func TestInitProducerPassesTheCallersKey(t *testing.T) {
	tokA, kA, _ := transport.NewAPIKey("tenant-a", transport.ScopeWrite, []string{"a"})
	tokB, kB, _ := transport.NewAPIKey("tenant-b", transport.ScopeWrite, []string{"b"})
	e := newEnv(t, func(c *Config) { c.Auth = transport.NewAuthenticator([]transport.APIKey{kA, kB}, false) })
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
	}
	id, err := e.client.InitProducer(as(tokA), &pb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.agent.mu.Lock()
	got := e.agent.producerOwners[id.ProducerId]
	e.agent.mu.Unlock()
	if got != "tenant-a" {
		t.Fatalf("producer owner = %q, want tenant-a", got)
	}
	_, err = e.client.InitProducer(as(tokB), &pb.InitProducerRequest{ProducerId: &id.ProducerId})
	wantCode(t, err, codes.PermissionDenied, transport.CodePermissionDenied)
	if _, err := e.client.InitProducer(as(tokA), &pb.InitProducerRequest{ProducerId: &id.ProducerId}); err != nil {
		t.Fatalf("the owner bumping its producer: %v", err)
	}
}
