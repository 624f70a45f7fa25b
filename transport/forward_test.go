package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

type localProducerFunc func(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error)

func (f localProducerFunc) ProduceLocal(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	return f(ctx, topic, recs)
}

// ProduceIdempotentLocal answers like the FSM would for the first batch of a
// producer: offsets from 0, or a duplicate for sequence 1000 (a test hook).
func (f localProducerFunc) ProduceIdempotentLocal(_ context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	if b.BaseSeq == 1000 {
		return fsm.IdempotentResult{BaseOffset: 7, Count: int32(len(b.Records)), Duplicate: true}, nil
	}
	if b.Producer.Epoch == 0 {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: epoch 0 fenced", fsm.ErrProducerFenced)
	}
	if b.Owner != "" && b.Owner != "owner-of-9" {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: producer %d", fsm.ErrProducerNotOwned, b.Producer.ID)
	}
	return fsm.IdempotentResult{BaseOffset: 0, Count: int32(len(b.Records))}, nil
}

func TestForwardProduceRoundTrip(t *testing.T) {
	var got []fsm.ProduceRecord
	srv := httptest.NewServer(ProduceRPCHandler(localProducerFunc(func(_ context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
		if topic != "orders" {
			t.Errorf("topic %q", topic)
		}
		got = recs
		out := make([]fsm.RecordOffset, len(recs))
		for i, r := range recs {
			out[i] = fsm.RecordOffset{Partition: r.Partition, Offset: int64(40 + i)}
		}
		return out, nil
	})))
	defer srv.Close()
	f := &PeerForwarder{Client: srv.Client(), Resolve: func(string) (string, bool) { return strings.TrimPrefix(srv.URL, "http://"), true }}
	in := []fsm.ProduceRecord{
		{Partition: 3, Record: fsm.Record{Timestamp: 5, Key: nil, Value: []byte("a"), Headers: []fsm.Header{{Key: "h", Value: []byte("v")}}}},
		{Partition: 1, Record: fsm.Record{Timestamp: 6, Key: []byte{}, Value: []byte("b")}},
	}
	out, err := f.ForwardProduce(context.Background(), "n2", "orders", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != (fsm.RecordOffset{Partition: 3, Offset: 40}) || out[1] != (fsm.RecordOffset{Partition: 1, Offset: 41}) {
		t.Fatalf("offsets %+v", out)
	}
	if len(got) != 2 || got[0].Record.Key != nil || got[1].Record.Key == nil || string(got[0].Record.Headers[0].Value) != "v" || got[1].Partition != 1 {
		t.Fatalf("records arrived as %+v", got)
	}
}

func TestForwardProduceErrorClasses(t *testing.T) {
	var calls atomic.Int64
	errFor := map[string]error{
		"unavailable": fsm.ErrUnavailable,
		"unknown":     fsm.ErrOutcomeUnknown,
		"notfound":    fsm.ErrTopicNotFound,
		"internal":    errors.New("boom"),
	}
	srv := httptest.NewServer(ProduceRPCHandler(localProducerFunc(func(_ context.Context, topic string, _ []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
		calls.Add(1)
		return nil, errFor[topic]
	})))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	f := &PeerForwarder{Client: srv.Client(), Resolve: func(string) (string, bool) { return addr, true }}
	rec := []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte("x")}}}
	cases := map[string]error{
		"unavailable": fsm.ErrUnavailable,
		"unknown":     fsm.ErrOutcomeUnknown,
		"notfound":    fsm.ErrTopicNotFound,
		"internal":    fsm.ErrOutcomeUnknown,
	}
	for topic, want := range cases {
		if _, err := f.ForwardProduce(context.Background(), "n2", topic, rec); !errors.Is(err, want) {
			t.Errorf("%s: got %v want %v", topic, err, want)
		}
	}
	// No address and a refused connection: definitely not applied.
	f.Resolve = func(string) (string, bool) { return "", false }
	if _, err := f.ForwardProduce(context.Background(), "n9", "t", rec); !errors.Is(err, fsm.ErrUnavailable) {
		t.Errorf("unknown node: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	f.Resolve = func(string) (string, bool) { return dead, true }
	if _, err := f.ForwardProduce(context.Background(), "n2", "t", rec); !errors.Is(err, fsm.ErrUnavailable) {
		t.Errorf("refused connection: %v", err)
	}
	// Garbage bodies are rejected without calling the producer.
	before := calls.Load()
	resp, err := http.Post(srv.URL, "application/octet-stream", strings.NewReader("\xff\xff\xff"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || calls.Load() != before {
		t.Errorf("garbage: status %d, producer called %d times", resp.StatusCode, calls.Load()-before)
	}
}

func TestForwardIdempotentRoundTripAndErrors(t *testing.T) {
	srv := httptest.NewServer(IdempotentRPCHandler(localProducerFunc(nil)))
	defer srv.Close()
	f := &PeerForwarder{Client: srv.Client(), Resolve: func(string) (string, bool) { return strings.TrimPrefix(srv.URL, "http://"), true }}
	b := fsm.IdempotentBatch{Topic: "t", Partition: 2, Producer: fsm.ProducerIdentity{ID: 9, Epoch: 1}, BaseSeq: 0,
		Records: []fsm.Record{{Value: []byte("a")}, {Key: []byte{}, Value: []byte("b")}}}
	res, err := f.ForwardIdempotent(context.Background(), "n2", b)
	if err != nil || res != (fsm.IdempotentResult{BaseOffset: 0, Count: 2}) {
		t.Fatalf("first: %+v %v", res, err)
	}
	b.BaseSeq = 1000
	res, err = f.ForwardIdempotent(context.Background(), "n2", b)
	if err != nil || !res.Duplicate || res.BaseOffset != 7 {
		t.Fatalf("duplicate: %+v %v", res, err)
	}
	b.Producer.Epoch = 0
	b.BaseSeq = 2
	if _, err := f.ForwardIdempotent(context.Background(), "n2", b); !errors.Is(err, fsm.ErrProducerFenced) {
		t.Fatalf("fenced error not restored: %v", err)
	}
	// The caller's key travels with the batch; another key's producer is a
	// definite refusal, not an unknown outcome.
	b.Producer.Epoch, b.BaseSeq = 1, 0
	b.Owner = "owner-of-9"
	if _, err := f.ForwardIdempotent(context.Background(), "n2", b); err != nil {
		t.Fatalf("the owner's batch: %v", err)
	}
	b.Owner = "someone-else"
	if _, err := f.ForwardIdempotent(context.Background(), "n2", b); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("another key's batch: %v", err)
	}
	// A malformed body is a definite bad request, never applied.
	resp, err := srv.Client().Post(srv.URL, "application/octet-stream", strings.NewReader("\xff\xff"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("malformed body: status %d", resp.StatusCode)
	}
}
