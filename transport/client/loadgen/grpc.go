package loadgen

import (
	"context"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// GRPC is the Go client as a Target: batches go through its idempotent
// producer (batched per partition and sent straight to each partition's
// leader), reads through Fetch.
type GRPC struct {
	c *client.Client
	p *client.Producer // nil when the run does not produce
}

var _ Target = (*GRPC)(nil)

// NewGRPC wraps c; with produce it starts an idempotent producer (1 ms
// linger), which Close closes.
func NewGRPC(ctx context.Context, c *client.Client, produce bool) (*GRPC, error) {
	g := &GRPC{c: c}
	if produce {
		p, err := c.NewProducer(ctx, client.ProducerConfig{Linger: time.Millisecond})
		if err != nil {
			return nil, err
		}
		g.p = p
	}
	return g, nil
}

// Send produces recs and waits for their acknowledgement; the producer
// retries by itself, so retries is always 0.
func (g *GRPC) Send(ctx context.Context, _ int, topic string, recs []client.Record) (retries int64, err error) {
	_, err = g.p.Produce(ctx, topic, recs...)
	return 0, err
}

// Fetch reads one page of a partition.
func (g *GRPC) Fetch(ctx context.Context, req client.FetchRequest) (client.FetchResult, error) {
	return g.c.Fetch(ctx, req)
}

// Close closes the producer (not the client).
func (g *GRPC) Close() error {
	if g.p == nil {
		return nil
	}
	return g.p.Close(context.Background())
}
