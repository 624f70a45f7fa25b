package workload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/transport/client"
)

// Client modes (Config.Client): which client the producers and the
// assign-based pollers use. Group consumers, the topic setup, the
// leadership sampler and the final read are the same in every mode.
const (
	// ClientGRPC is StreamHouse's Go client (transport/client, gRPC).
	ClientGRPC = "grpc"
	// ClientKafka is franz-go (kgo) over the agents' Kafka listeners.
	ClientKafka = "kafka"
)

// Clients lists the client modes.
var Clients = []string{ClientGRPC, ClientKafka}

// sendOutcome is the completion of one send, as the history records it.
type sendOutcome struct {
	t   history.Type // ok, fail (definitely not written) or info (unknown)
	off int64        // the offset when t is ok
	err string
	// fatal: the producer cannot send any more (fenced); the session
	// ends and a new producer process starts.
	fatal bool
}

// sender is one producer incarnation (one history process): an idempotent
// producer with acks from the Raft commit.
type sender interface {
	// send sends the value v to partition p; done is called exactly once
	// with the outcome, possibly on another goroutine, possibly before
	// send returns.
	send(p int32, v int64, done func(sendOutcome))
	// close flushes (bounded) and releases the producer; every send's
	// done has been called or will be, without waiting on the network.
	close()
}

// reader is one assign-based poller incarnation: every partition of the
// topic from the earliest offset, no group.
type reader interface {
	// poll returns the next records (possibly none after a wait), in
	// offset order per partition. A non-nil error with records is
	// recorded on an ok poll; errReaderReset ends the incarnation.
	poll(ctx context.Context) ([]history.Rec, error)
	close()
}

// errReaderReset: the reader's position is no longer valid (the cluster
// answered that an offset it already served is out of range); a new
// reader process starts from the earliest offset.
var errReaderReset = errors.New("reader reset")

// driver opens producers and readers of one client mode; proc is the
// history process the producer or reader is (for its logs).
type driver interface {
	newSender(ctx context.Context, proc int) (sender, error)
	newReader(ctx context.Context, proc int) (reader, error)
	close()
}

// openDriver opens the driver of the configured client mode.
func (w *Workload) openDriver(ctx context.Context) (driver, error) {
	switch w.cfg.Client {
	case "", ClientGRPC:
		cl, err := w.dial(ctx)
		if err != nil {
			return nil, err
		}
		return &grpcDriver{w: w, cl: cl}, nil
	case ClientKafka:
		return newKafkaDriver(w.cfg, w.c.KafkaAddrs(), w.log), nil
	}
	return nil, fmt.Errorf("unknown client mode %q (want one of %v)", w.cfg.Client, Clients)
}

// value encodes a workload value as a record value.
func value(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }

// parseValue decodes a record value; -1 for anything not written by the
// workload.
func parseValue(b []byte) int64 {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// grpcDriver is the Go client's driver: one dialed client per workload
// goroutine.
type grpcDriver struct {
	w  *Workload
	cl *client.Client
}

func (d *grpcDriver) close() { _ = d.cl.Close() }

func (d *grpcDriver) newSender(ctx context.Context, _ int) (sender, error) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := d.cl.NewProducer(pctx, client.ProducerConfig{
		Linger: 5 * time.Millisecond, RetryTimeout: 15 * time.Second, RequestTimeout: 5 * time.Second,
		RetryBackoff: 50 * time.Millisecond, BufferBytes: 8 << 20,
	})
	if err != nil {
		return nil, err
	}
	return &grpcSender{ctx: ctx, topic: d.w.cfg.Topic, p: p}, nil
}

func (d *grpcDriver) newReader(ctx context.Context, _ int) (reader, error) {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	k, err := d.cl.NewConsumer(kctx, client.ConsumerConfig{Topic: d.w.cfg.Topic, Start: client.Earliest,
		MaxWait: 500 * time.Millisecond, MaxRecords: 1000})
	if err != nil {
		return nil, err
	}
	return grpcReader{k}, nil
}

type grpcSender struct {
	ctx   context.Context
	topic string
	p     *client.Producer
}

func (s *grpcSender) send(p int32, v int64, done func(sendOutcome)) {
	res := s.p.Send(s.ctx, s.topic, client.Record{Value: value(v)}.ToPartition(p))
	go func() {
		_, off, err := res.Wait(context.Background())
		done(sendOutcome{t: classify(err), off: off, err: errString(err), fatal: errors.Is(err, client.ErrFenced)})
	}()
}

func (s *grpcSender) close() {
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = s.p.Close(cctx)
}

type grpcReader struct{ k *client.Consumer }

func (r grpcReader) poll(ctx context.Context) ([]history.Rec, error) {
	rs, err := r.k.Poll(ctx)
	return toRecs(rs), err
}

func (r grpcReader) close() { _ = r.k.Close() }

func toRecs(rs []client.Record) []history.Rec {
	out := make([]history.Rec, 0, len(rs))
	for _, r := range rs {
		out = append(out, history.Rec{P: r.Partition, O: r.Offset, V: parseValue(r.Value)})
	}
	return out
}
