package grpcapi

import (
	"context"
	"errors"
	"sync"
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

	if got := testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeQuotaExceeded)); got != 3 {
		t.Fatalf("errors_total{kind=quota_exceeded} = %v, want 3", got)
	}
}

// TestQuotaSubscribePausesInsteadOfFailing: a Subscribe stream whose key is
// in debt on its fetch quota is not ended: it waits (counted as
// throttled) and delivers once the bucket allows reading again.
func TestQuotaSubscribePausesInsteadOfFailing(t *testing.T) {
	tokA, a, _ := transport.NewAPIKey("a", transport.ScopeAdmin, nil)
	var mu sync.Mutex
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	var quotas *transport.Quotas
	e := newEnv(t, func(c *Config) {
		quotas = transport.NewQuotas(transport.QuotaRates{transport.QuotaFetch: 1000}, c.Registerer, now)
		quotas.SetKeys([]transport.APIKey{a})
		c.Auth, c.Quotas = transport.NewAuthenticator([]transport.APIKey{a}, false), quotas
	})
	if _, err := e.agent.CreateTopic(context.Background(), "orders", 1, fsm.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.Produce(context.Background(), "orders", []fsm.ProduceRecord{{Record: fsm.Record{Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	// One token of debt: the retry time is 1 ms, but the clock stands still,
	// so the stream stays paused until the test moves it.
	quotas.Charge(transport.WithPrincipal(context.Background(), &transport.Principal{Key: a}), transport.QuotaFetch, 1001)

	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tokA))
	defer cancel()
	stream, err := e.client.Subscribe(ctx, &pb.SubscribeRequest{Topic: "orders", Partition: 0, Offset: 0})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		resp, err := stream.Recv()
		if err == nil && len(resp.GetRecords()) != 1 {
			err = errors.New("no record in the first response")
		}
		got <- err
	}()
	waitFor(t, 10*time.Second, "the stream to be throttled", func() bool {
		return throttledCount(t, e, "consumer_byte_rate") >= 2
	})
	select {
	case err := <-got:
		t.Fatalf("the stream answered while its key was in debt: %v", err)
	default:
	}
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("after the debt was repaid: %v", err)
	}
}

// throttledCount reads streamhouse_quota_throttled_total{quota} from the
// env's registry.
func throttledCount(t *testing.T, e *env, quota string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "streamhouse_quota_throttled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "quota" && l.GetValue() == quota {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
