package main

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// TestProducerIDsBelongToTheirKey: an idempotent producer id is tied to
// the API key that created it. A key for another topic that guesses the id
// (ids are Raft indexes) cannot bump its epoch, so it cannot fence the
// owner's session, nor produce under it (which would move its sequences);
// the owner still can do both.
func TestProducerIDsBelongToTheirKey(t *testing.T) {
	dir := t.TempDir()
	keys := writeTenantKeys(t, dir, "a", "b")
	c := testConfig(t, filepath.Join(dir, "data"))
	c.APIKeysFile = keys.file
	a, _ := startTestAgent(t, c)
	defer a.Close(context.Background())

	ctx := context.Background()
	dial := func(tok string) *client.Client {
		cl, err := client.Dial(ctx, []string{a.grpcAddr()}, client.WithToken(tok))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	ca, cb := dial(keys.a), dial(keys.b)
	for _, topic := range []string{"a", "b"} {
		if _, err := dial(keys.admin).CreateTopic(ctx, topic, 1, client.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	id, err := ca.InitProducer(ctx, 0)
	if err != nil {
		t.Fatalf("tenant a: InitProducer: %v", err)
	}

	_, err = cb.InitProducer(ctx, id.ID)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != codes.PermissionDenied {
		t.Fatalf("tenant b re-initialised tenant a's producer %d: %v", id.ID, err)
	}
	again, err := ca.InitProducer(ctx, id.ID)
	if err != nil || again.ID != id.ID || again.Epoch != id.Epoch+1 {
		t.Fatalf("tenant a bumping its own producer: %+v %v (before: %+v)", again, err, id)
	}

	produce := idempotentProducer(t, a.grpcAddr(), again, 0)
	if err := produce(keys.b, "b"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("tenant b produced under tenant a's producer %d: %v", again.ID, err)
	}
	if err := produce(keys.a, "a"); err != nil {
		t.Fatalf("tenant a producing under its producer: %v", err)
	}
}

// tenantKeys is an api_keys file with an admin key and the write keys of
// two tenants, and their tokens.
type tenantKeys struct{ file, admin, a, b string }

// writeTenantKeys writes dir/api_keys: "ops" (admin), "tenant-a" allowed to
// write topicA and "tenant-b" allowed to write topicB.
func writeTenantKeys(t *testing.T, dir, topicA, topicB string) tenantKeys {
	t.Helper()
	tokAdmin, kAdmin := newKey(t, "ops", transport.ScopeAdmin)
	tokA, kA := newKey(t, "tenant-a", transport.ScopeWrite, topicA)
	tokB, kB := newKey(t, "tenant-b", transport.ScopeWrite, topicB)
	file := filepath.Join(dir, "api_keys")
	writeKeys(t, file, kAdmin, kA, kB)
	return tenantKeys{file: file, admin: tokAdmin, a: tokA, b: tokB}
}

// idempotentProducer returns a function that sends one idempotent record
// to partition 0 of a topic, as the given token, under producer id (the
// next base sequence each time it succeeds), through the agent at addr.
func idempotentProducer(t *testing.T, addr string, id client.ProducerIdentity, seq int64) func(tok, topic string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return func(tok, topic string) error {
		part := int32(0)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		_, err := pb.NewStreamHouseClient(conn).Produce(ctx, &pb.ProduceRequest{
			Topic: topic, ProducerId: &id.ID, ProducerEpoch: id.Epoch, BaseSequence: seq,
			Records: []*pb.ProduceRecord{{Partition: &part, Value: []byte("x")}},
		})
		if err == nil {
			seq++
		}
		return err
	}
}

// TestProducerOwnerSurvivesForwarding: in a two-agent cluster, an
// idempotent batch sent to the agent that does not lead the partition is
// forwarded with its caller's key, so the leader still refuses another
// key's batch under a producer id and accepts the owner's.
func TestProducerOwnerSurvivesForwarding(t *testing.T) {
	dir := t.TempDir()
	keys := writeTenantKeys(t, dir, "shared", "shared")
	gossip := []int{freePort(t), freePort(t)}
	var agents []*agent
	for i := range 2 {
		c := testConfig(t, filepath.Join(dir, strconv.Itoa(i)))
		c.NodeID, c.GossipPort, c.BootstrapExpect = "agent-"+strconv.Itoa(i), gossip[i], 2
		c.Join, c.APIKeysFile = "127.0.0.1:"+strconv.Itoa(gossip[1-i]), keys.file
		a, err := startAgent(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close(context.Background())
		agents = append(agents, a)
	}
	ctx := context.Background()
	admin, err := client.Dial(ctx, []string{agents[0].grpcAddr()}, client.WithToken(keys.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	waitFor(t, 60*time.Second, "the cluster creates a topic", func() bool {
		_, err := admin.CreateTopic(ctx, "shared", 1, client.TopicConfig{})
		return err == nil
	})
	ca, err := client.Dial(ctx, []string{agents[0].grpcAddr()}, client.WithToken(keys.a))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	id, err := ca.InitProducer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One of the two agents leads partition 0; the other forwards.
	for i, a := range agents {
		produce := idempotentProducer(t, a.grpcAddr(), id, int64(i))
		waitFor(t, 30*time.Second, "tenant a's batch through agent "+strconv.Itoa(i), func() bool {
			return produce(keys.a, "shared") == nil
		})
		if err := produce(keys.b, "shared"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("through agent %d, tenant b produced under tenant a's producer: %v", i, err)
		}
	}
}
