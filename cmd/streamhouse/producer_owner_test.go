package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

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
	tokAdmin, kAdmin := newKey(t, "ops", transport.ScopeAdmin)
	tokA, kA := newKey(t, "tenant-a", transport.ScopeWrite, "a")
	tokB, kB := newKey(t, "tenant-b", transport.ScopeWrite, "b")
	keysFile := filepath.Join(dir, "api_keys")
	writeKeys(t, keysFile, kAdmin, kA, kB)
	c := testConfig(t, filepath.Join(dir, "data"))
	c.APIKeysFile = keysFile
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
	ca, cb := dial(tokA), dial(tokB)
	for _, topic := range []string{"a", "b"} {
		if _, err := dial(tokAdmin).CreateTopic(ctx, topic, 1, client.TopicConfig{}); err != nil {
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

	conn, err := grpc.NewClient(a.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	produce := func(tok, topic string) error {
		part := int32(0)
		_, err := pb.NewStreamHouseClient(conn).Produce(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &pb.ProduceRequest{
			Topic: topic, ProducerId: &again.ID, ProducerEpoch: again.Epoch, BaseSequence: 0,
			Records: []*pb.ProduceRecord{{Partition: &part, Value: []byte("x")}},
		})
		return err
	}
	if err := produce(tokB, "b"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("tenant b produced under tenant a's producer %d: %v", again.ID, err)
	}
	if err := produce(tokA, "a"); err != nil {
		t.Fatalf("tenant a producing under its producer: %v", err)
	}
}
