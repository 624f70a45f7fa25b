package grpcapi

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestFetchOffsets(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	e.produce(t, "t", 0, "a", "b", "c")

	latest, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: OffsetLatest})
	if err != nil {
		t.Fatal(err)
	}
	if len(latest.Records) != 0 || latest.NextOffset != 3 || latest.HighWatermark != 3 {
		t.Errorf("latest = %v", latest)
	}
	mid, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: 1, MaxRecords: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(mid.Records) != 1 || string(mid.Records[0].Value) != "b" || mid.NextOffset != 2 {
		t.Errorf("fetch from 1 = %v", mid)
	}

	// Retention moves the low watermark: old offsets are out of range, with
	// the valid range in the error detail; earliest follows it.
	e.agent.truncate("t", 0, 1)
	_, err = e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: 0})
	d := wantCode(t, err, codes.OutOfRange, transport.CodeOffsetOutOfRange)
	if d.GetRequestedOffset() != 0 || d.GetLowWatermark() != 1 || d.GetHighWatermark() != 3 {
		t.Errorf("out of range detail = %v", d)
	}
	_, err = e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: 4})
	d = wantCode(t, err, codes.OutOfRange, transport.CodeOffsetOutOfRange)
	if d.GetRequestedOffset() != 4 || d.GetLowWatermark() != 1 || d.GetHighWatermark() != 3 {
		t.Errorf("out of range detail = %v", d)
	}
	earliest, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: OffsetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	if len(earliest.Records) != 2 || earliest.Records[0].Offset != 1 || earliest.LowWatermark != 1 {
		t.Errorf("earliest = %v", earliest)
	}
}

func TestFetchLongPoll(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	type result struct {
		resp *pb.FetchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := e.client.Fetch(ctxT(t), &pb.FetchRequest{Topic: "t", Offset: 0, MaxWaitMs: 20_000})
		done <- result{resp, err}
	}()
	waitFor(t, 5*time.Second, "the fetch to long-poll", func() bool { return e.agent.numWaiters() == 1 })
	select {
	case r := <-done:
		t.Fatalf("fetch returned before any produce: %v %v", r.resp, r.err)
	default:
	}
	e.produce(t, "t", 0, "wake up")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.resp.Records) != 1 || string(r.resp.Records[0].Value) != "wake up" || r.resp.NextOffset != 1 {
		t.Fatalf("long poll = %v", r.resp)
	}
}

func TestFetchEndsWhenStopping(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Fetch(ctxT(t), &pb.FetchRequest{Topic: "t", MaxWaitMs: 20_000})
		done <- err
	}()
	waitFor(t, 5*time.Second, "the fetch to long-poll", func() bool { return e.agent.numWaiters() == 1 })
	e.stop()
	wantCode(t, <-done, codes.Unavailable, transport.CodeUnavailable)
}

func TestFetchBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 2)
	cases := []errCase[*pb.FetchRequest]{
		{"no topic", &pb.FetchRequest{}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative partition", &pb.FetchRequest{Topic: "t", Partition: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"offset -3", &pb.FetchRequest{Topic: "t", Offset: -3}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative max_records", &pb.FetchRequest{Topic: "t", MaxRecords: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative max_bytes", &pb.FetchRequest{Topic: "t", MaxBytes: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative wait", &pb.FetchRequest{Topic: "t", MaxWaitMs: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"unknown topic", &pb.FetchRequest{Topic: "nope"}, codes.NotFound, transport.CodeNotFound},
		{"unknown topic, latest", &pb.FetchRequest{Topic: "nope", Offset: OffsetLatest}, codes.NotFound, transport.CodeNotFound},
		{"unknown partition", &pb.FetchRequest{Topic: "t", Partition: 2}, codes.NotFound, transport.CodeNotFound},
		{"unknown partition, earliest", &pb.FetchRequest{Topic: "t", Partition: 7, Offset: OffsetEarliest}, codes.NotFound, transport.CodeNotFound},
		{"past the end", &pb.FetchRequest{Topic: "t", Offset: 1}, codes.OutOfRange, transport.CodeOffsetOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.Fetch(ctx, c.in)
			wantCode(t, err, c.code, c.kind)
		})
	}
}

// recvRecords reads stream messages until n records arrived.
func recvRecords(t *testing.T, stream interface {
	Recv() (*pb.SubscribeResponse, error)
}, n int) []*pb.FetchedRecord {
	t.Helper()
	var out []*pb.FetchedRecord
	for len(out) < n {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d records: %v", len(out), err)
		}
		if len(msg.Records) == 0 {
			t.Fatalf("empty batch %v", msg)
		}
		if last := msg.Records[len(msg.Records)-1]; msg.NextOffset != last.Offset+1 {
			t.Fatalf("next_offset %d after offset %d", msg.NextOffset, last.Offset)
		}
		out = append(out, msg.Records...)
	}
	return out
}

func TestSubscribeStreamsNewRecords(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	e.produce(t, "t", 0, "old-0", "old-1")

	ctx, cancel := context.WithCancel(ctxT(t))
	stream, err := e.client.Subscribe(ctx, &pb.SubscribeRequest{Topic: "t", Offset: OffsetLatest, MaxRecords: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The header says where the subscription starts; records produced from
	// now on are in the stream.
	hdr, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(StartOffsetHeader); len(got) != 1 || got[0] != "2" {
		t.Fatalf("start offset header = %v", got)
	}
	e.produce(t, "t", 0, "new-2")
	e.produce(t, "t", 0, "new-3", "new-4", "new-5")
	recs := recvRecords(t, stream, 4)
	for i, r := range recs {
		if want := "new-" + strconv.Itoa(i+2); r.Offset != int64(i+2) || string(r.Value) != want {
			t.Fatalf("record %d = offset %d %q, want %d %q", i, r.Offset, r.Value, i+2, want)
		}
	}

	// The client cancels: the stream ends and the server stops polling.
	cancel()
	if _, err := stream.Recv(); !isCanceled(err) {
		t.Fatalf("Recv after cancel = %v, want Canceled", err)
	}
	waitFor(t, 5*time.Second, "the Subscribe handler to end", func() bool {
		return e.agent.numWaiters() == 0 && e.requests(t, pb.StreamHouse_Subscribe_FullMethodName, codes.Canceled.String()) == 1
	})
	// A client's own cancel is not an error response.
	if v := testutil.ToFloat64(e.errs.WithLabelValues(transport.CodeTimeout)); v != 0 {
		t.Errorf("errors_total{kind=timeout} = %v after a client cancel", v)
	}
}

func TestSubscribeFromEarliest(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	e.produce(t, "t", 0, "a", "b", "c")
	e.agent.truncate("t", 0, 1)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := e.client.Subscribe(ctx, &pb.SubscribeRequest{Topic: "t", Offset: OffsetEarliest, MaxWaitMs: 50})
	if err != nil {
		t.Fatal(err)
	}
	recs := recvRecords(t, stream, 2)
	if recs[0].Offset != 1 || recs[1].Offset != 2 {
		t.Fatalf("records = %v", recs)
	}
	e.produce(t, "t", 0, "d")
	if recs := recvRecords(t, stream, 1); recs[0].Offset != 3 || string(recs[0].Value) != "d" {
		t.Fatalf("record after the backlog = %v", recs)
	}
}

func TestSubscribeErrors(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	e.produce(t, "t", 0, "a")
	cases := []errCase[*pb.SubscribeRequest]{
		{"no topic", &pb.SubscribeRequest{}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative partition", &pb.SubscribeRequest{Topic: "t", Partition: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"bad offset", &pb.SubscribeRequest{Topic: "t", Offset: -5}, codes.InvalidArgument, transport.CodeBadRequest},
		{"negative wait", &pb.SubscribeRequest{Topic: "t", MaxWaitMs: -1}, codes.InvalidArgument, transport.CodeBadRequest},
		{"unknown topic", &pb.SubscribeRequest{Topic: "nope"}, codes.NotFound, transport.CodeNotFound},
		{"unknown partition", &pb.SubscribeRequest{Topic: "t", Partition: 3}, codes.NotFound, transport.CodeNotFound},
		{"out of range", &pb.SubscribeRequest{Topic: "t", Offset: 10}, codes.OutOfRange, transport.CodeOffsetOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream, err := e.client.Subscribe(ctxT(t), c.in)
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			d := wantCode(t, err, c.code, c.kind)
			if c.code == codes.OutOfRange && (d.GetLowWatermark() != 0 || d.GetHighWatermark() != 1) {
				t.Errorf("detail = %v", d)
			}
		})
	}
}

func TestSubscribeEndsWhenStopping(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "t", 1)
	stream, err := e.client.Subscribe(ctxT(t), &pb.SubscribeRequest{Topic: "t", MaxWaitMs: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the subscription to long-poll", func() bool { return e.agent.numWaiters() == 1 })
	e.stop()
	_, err = stream.Recv()
	if err == io.EOF {
		t.Fatal("stream ended cleanly; want UNAVAILABLE")
	}
	wantCode(t, err, codes.Unavailable, transport.CodeUnavailable)
}
