package grpcapi

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// countingFetcher counts the reads that reach the backend.
type countingFetcher struct {
	*fakeAgent
	n atomic.Int64
}

func (c *countingFetcher) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	c.n.Add(1)
	return c.fakeAgent.Fetch(ctx, req)
}

// TestQuotaGRPCThrottlesOneKey: key a, over its quotas, gets
// RESOURCE_EXHAUSTED with ErrorDetail.code quota_exceeded and nothing is
// done; key b, with the same defaults but its own buckets, is served.
func TestQuotaGRPCThrottlesOneKey(t *testing.T) {
	tokA, a, _ := transport.NewAPIKey("a", transport.ScopeAdmin, nil)
	tokB, b, _ := transport.NewAPIKey("b", transport.ScopeAdmin, nil)
	clock := time.Unix(1_700_000_000, 0) // never advanced: nothing refills
	var quotas *transport.Quotas
	var fetcher *countingFetcher
	e := newEnv(t, func(c *Config) {
		quotas = transport.NewQuotas(transport.QuotaRates{transport.QuotaProduce: 10, transport.QuotaFetch: 10, transport.QuotaMutations: 1},
			c.Registerer, func() time.Time { return clock })
		keys := []transport.APIKey{a, b}
		quotas.SetKeys(keys)
		fetcher = &countingFetcher{fakeAgent: c.Topics.(*fakeAgent)}
		c.Auth, c.Quotas, c.Fetcher = transport.NewAuthenticator(keys, false), quotas, fetcher
	})
	if _, err := e.agent.CreateTopic(context.Background(), "orders", 2, fsm.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
	}
	part := int32(0)
	produce := func(tok string) error {
		_, err := e.client.Produce(as(tok), &pb.ProduceRequest{Topic: "orders",
			Records: []*pb.ProduceRecord{{Partition: &part, Value: []byte("0123456789")}}})
		return err
	}
	fetch := func(tok string) error {
		_, err := e.client.Fetch(as(tok), &pb.FetchRequest{Topic: "orders", Partition: 0, Offset: 0})
		return err
	}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	throttled := func(err error) {
		t.Helper()
		wantCode(t, err, codes.ResourceExhausted, transport.CodeQuotaExceeded)
	}

	ok(produce(tokA)) // empties a's bucket (into debt)
	stored := len(e.agent.stored("orders", 0))
	throttled(produce(tokA))
	if len(e.agent.stored("orders", 0)) != stored {
		t.Fatal("a throttled produce was applied")
	}
	ok(produce(tokB))

	ok(fetch(tokA)) // charged after the read
	reads := fetcher.n.Load()
	throttled(fetch(tokA))
	if fetcher.n.Load() != reads {
		t.Fatal("a throttled fetch reached the fetcher")
	}
	ok(fetch(tokB))

	three := int32(3)
	_, err := e.client.CreateTopic(as(tokA), &pb.CreateTopicRequest{Name: "t3", Partitions: &three})
	ok(err)
	_, err = e.client.DeleteTopic(as(tokA), &pb.DeleteTopicRequest{Name: "orders"})
	throttled(err)
	if _, err := e.agent.Topic("orders"); err != nil {
		t.Fatal("a throttled topic delete was applied")
	}
	_, err = e.client.DeleteTopic(as(tokB), &pb.DeleteTopicRequest{Name: "t3"})
	ok(err)

	errs := transport.NewErrorsCounter(e.reg)
	if got := testutil.ToFloat64(errs.WithLabelValues(transport.CodeQuotaExceeded)); got != 3 {
		t.Fatalf("errors_total{kind=quota_exceeded} = %v, want 3", got)
	}
}
