package natsload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamhouse/streamhouse/transport/client"
	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// ErrNoFetch is Fetch's answer: the comparison measures produce only.
var ErrNoFetch = errors.New("natsload: reading back is not measured for NATS")

// Target publishes each batch as len(recs) async JetStream publishes and
// waits for all their acks. Worker w uses connection w % len(conns); the
// record's partition picks the subject (<topic>.<partition>) of the one
// stream named after the topic.
type Target struct {
	conns []*nats.Conn
	js    []jetstream.JetStream
}

var _ loadgen.Target = (*Target)(nil)

// Dial opens conns connections, spread over urls, each allowed maxPending
// outstanding async publishes.
func Dial(urls []string, conns, maxPending int) (*Target, error) {
	if len(urls) == 0 || conns <= 0 {
		return nil, errors.New("natsload: need at least one URL and one connection")
	}
	t := &Target{}
	for i := 0; i < conns; i++ {
		nc, err := nats.Connect(urls[i%len(urls)], nats.Name("streamhouse-bench"), nats.Timeout(5*time.Second))
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("natsload: connect %s: %w", urls[i%len(urls)], err)
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending))
		if err != nil {
			nc.Close()
			t.Close()
			return nil, err
		}
		t.conns, t.js = append(t.conns, nc), append(t.js, js)
	}
	return t, nil
}

// EnsureStream creates (or updates) the file-backed stream named topic
// over the subjects <topic>.>, with replicas copies. A cluster that has
// just started may not have elected its JetStream meta leader yet: the
// request is repeated for up to streamWait.
func (t *Target) EnsureStream(ctx context.Context, topic string, replicas int) error {
	cfg := jetstream.StreamConfig{
		Name: topic, Subjects: []string{topic + ".>"}, Storage: jetstream.FileStorage, Replicas: replicas,
		MaxBytes: 4 << 30, Discard: jetstream.DiscardOld,
	}
	ctx, cancel := context.WithTimeout(ctx, streamWait)
	defer cancel()
	for {
		attempt, stop := context.WithTimeout(ctx, 5*time.Second)
		_, err := t.js[0].CreateOrUpdateStream(attempt, cfg)
		stop()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsload: stream %s: %w", topic, err)
		case <-time.After(500 * time.Millisecond): // retry pacing while the cluster elects
		}
	}
}

// streamWait bounds EnsureStream's retries.
const streamWait = 30 * time.Second

// Send publishes recs asynchronously and waits for every ack: one batch
// keeps len(recs) acks outstanding, as one StreamHouse produce call keeps
// len(recs) records unacknowledged.
func (t *Target) Send(ctx context.Context, worker int, topic string, recs []client.Record) (retries int64, err error) {
	js := t.js[worker%len(t.js)]
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	for _, r := range recs {
		f, err := js.PublishAsync(topic+"."+strconv.Itoa(int(r.Partition)), r.Value)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return 0, nil
}

// Fetch is not measured for NATS (the tail reader then stops at once).
func (t *Target) Fetch(context.Context, client.FetchRequest) (client.FetchResult, error) {
	return client.FetchResult{}, ErrNoFetch
}

// Close closes every connection.
func (t *Target) Close() {
	for _, nc := range t.conns {
		nc.Close()
	}
}
