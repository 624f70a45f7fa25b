package grpcapi

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func u64(v uint64) *uint64 { return &v }

func TestProduceAndFetchRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 2)

	resp, err := e.client.Produce(ctx, &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{
		{Partition: i32(0), Key: []byte("a"), Value: []byte("v1"), TimestampMs: 123,
			Headers: []*pb.Header{{Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte{0xff, 0}}, {Key: "z", Value: nil}}},
		{Partition: i32(0), Value: []byte("v2")},
		{Partition: i32(1), Value: []byte{0, 1, 2, 0xff}},
		{Partition: i32(-1), Key: []byte("k"), Value: []byte("by key")},
		{Value: []byte("spread")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Duplicate || len(resp.Offsets) != 5 {
		t.Fatalf("Produce = %v", resp)
	}
	// Offsets are dense per partition, in request order.
	next := map[int32]int64{}
	for i, o := range resp.Offsets {
		if i < 3 && o.Partition != []int32{0, 0, 1}[i] {
			t.Fatalf("record %d went to partition %d", i, o.Partition)
		}
		if o.Offset != next[o.Partition] {
			t.Fatalf("record %d: offset %d in partition %d, want %d", i, o.Offset, o.Partition, next[o.Partition])
		}
		next[o.Partition]++
	}

	f, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Partition: 0})
	if err != nil {
		t.Fatal(err)
	}
	if f.LowWatermark != 0 || f.HighWatermark != next[0] || f.NextOffset != next[0] || int64(len(f.Records)) != next[0] {
		t.Fatalf("Fetch = %v", f)
	}
	r0 := f.Records[0]
	if r0.Partition != 0 || r0.Offset != 0 || string(r0.Key) != "a" || string(r0.Value) != "v1" || r0.TimestampMs != 123 {
		t.Errorf("record 0 = %v", r0)
	}
	if len(r0.Headers) != 3 || r0.Headers[0].Key != "h" || string(r0.Headers[0].Value) != "1" ||
		r0.Headers[1].Key != "h" || !bytes.Equal(r0.Headers[1].Value, []byte{0xff, 0}) || r0.Headers[2].Key != "z" || len(r0.Headers[2].Value) != 0 {
		t.Errorf("headers = %v", r0.Headers)
	}
	if r1 := f.Records[1]; r1.Key != nil || string(r1.Value) != "v2" || r1.TimestampMs != e.agent.clock {
		t.Errorf("record 1 = %v (want null key, agent timestamp)", r1)
	}
	f1, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "t", Partition: 1, MaxRecords: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(f1.Records) != 1 || !bytes.Equal(f1.Records[0].Value, []byte{0, 1, 2, 0xff}) || f1.NextOffset != 1 {
		t.Errorf("partition 1 fetch = %v", f1)
	}
}

func TestNullVersusEmptyKey(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "keys", 1)
	_, err := e.client.Produce(ctx, &pb.ProduceRequest{Topic: "keys", Records: []*pb.ProduceRecord{
		{Partition: i32(0), Value: []byte("null key")},
		{Partition: i32(0), Key: []byte{}, Value: []byte("empty key")},
		{Partition: i32(0), Key: []byte("k"), Value: []byte{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The server hands the backend nil for null and non-nil empty for empty.
	stored := e.agent.stored("keys", 0)
	if stored[0].Key != nil {
		t.Errorf("stored null key = %#v, want nil", stored[0].Key)
	}
	if stored[1].Key == nil || len(stored[1].Key) != 0 {
		t.Errorf("stored empty key = %#v, want non-nil empty", stored[1].Key)
	}
	// And it comes back the same way.
	f, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "keys", Partition: 0})
	if err != nil {
		t.Fatal(err)
	}
	if f.Records[0].Key != nil {
		t.Errorf("fetched null key = %#v, want unset", f.Records[0].Key)
	}
	if f.Records[1].Key == nil || len(f.Records[1].Key) != 0 {
		t.Errorf("fetched empty key = %#v, want set and empty", f.Records[1].Key)
	}
	if string(f.Records[2].Key) != "k" || len(f.Records[2].Value) != 0 {
		t.Errorf("record 2 = %v", f.Records[2])
	}
}

func TestProduceBadInput(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRecordBytes = 100; c.MaxRequestBytes = 1000 })
	ctx := ctxT(t)
	e.createTopic(t, "t", 2)
	rec := func(p int32, size int) *pb.ProduceRecord {
		return &pb.ProduceRecord{Partition: &p, Value: bytes.Repeat([]byte("x"), size)}
	}
	many := make([]*pb.ProduceRecord, 15)
	for i := range many {
		many[i] = rec(0, 80) // 88 bytes each: every record fits, the request does not
	}
	cases := []struct {
		name    string
		req     *pb.ProduceRequest
		code    codes.Code
		kind    string
		msgPart string
	}{
		{"no topic", &pb.ProduceRequest{Records: []*pb.ProduceRecord{rec(0, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "topic is required"},
		{"no records", &pb.ProduceRequest{Topic: "t"}, codes.InvalidArgument, transport.CodeBadRequest, "records must not be empty"},
		{"partition -2", &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{rec(0, 1), rec(-2, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "records[1].partition"},
		{"negative timestamp", &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{{Value: []byte("x"), TimestampMs: -1}}}, codes.InvalidArgument, transport.CodeBadRequest, "records[0].timestamp_ms"},
		{"record too large", &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{rec(0, 1), rec(0, 200)}}, codes.InvalidArgument, transport.CodeRecordTooLarge, "records[1] is 208 bytes, the limit is 100"},
		{"request too large", &pb.ProduceRequest{Topic: "t", Records: many}, codes.ResourceExhausted, transport.CodeRequestTooLarge, "split the batch"},
		{"unknown topic", &pb.ProduceRequest{Topic: "nope", Records: []*pb.ProduceRecord{rec(0, 1)}}, codes.NotFound, transport.CodeNotFound, "nope"},
		{"partition past the count", &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{rec(5, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "partition 5"},
		{"epoch without producer id", &pb.ProduceRequest{Topic: "t", ProducerEpoch: 1, Records: []*pb.ProduceRecord{rec(0, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "producer_id"},
		{"producer id 0", &pb.ProduceRequest{Topic: "t", ProducerId: u64(0), Records: []*pb.ProduceRecord{rec(0, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "producer_id 0"},
		{"idempotent without partition", &pb.ProduceRequest{Topic: "t", ProducerId: u64(1), Records: []*pb.ProduceRecord{{Value: []byte("x")}}}, codes.InvalidArgument, transport.CodeBadRequest, "same explicit partition"},
		{"idempotent with two partitions", &pb.ProduceRequest{Topic: "t", ProducerId: u64(1), Records: []*pb.ProduceRecord{rec(0, 1), rec(1, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "records[1].partition"},
		{"idempotent negative sequence", &pb.ProduceRequest{Topic: "t", ProducerId: u64(1), BaseSequence: -1, Records: []*pb.ProduceRecord{rec(0, 1)}}, codes.InvalidArgument, transport.CodeBadRequest, "base_sequence"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.Produce(ctx, c.req)
			wantCode(t, err, c.code, c.kind)
			if !strings.Contains(err.Error(), c.msgPart) {
				t.Errorf("message %q lacks %q", err, c.msgPart)
			}
		})
	}
	for p := int32(0); p < 2; p++ {
		if n := len(e.agent.stored("t", p)); n != 0 {
			t.Errorf("rejected requests stored %d records in partition %d", n, p)
		}
	}
}

func TestIdempotentProduce(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 2)
	e.produce(t, "t", 1, "plain") // offset 0 of partition 1

	id, err := e.client.InitProducer(ctx, &pb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if id.ProducerId == 0 || id.ProducerEpoch != 0 {
		t.Fatalf("InitProducer = %v", id)
	}
	batch := func(epoch uint32, seq int64, values ...string) *pb.ProduceRequest {
		req := &pb.ProduceRequest{Topic: "t", ProducerId: u64(id.ProducerId), ProducerEpoch: epoch, BaseSequence: seq}
		for _, v := range values {
			req.Records = append(req.Records, &pb.ProduceRecord{Partition: i32(1), Value: []byte(v)})
		}
		return req
	}
	offsets := func(r *pb.ProduceResponse) []int64 {
		var out []int64
		for _, o := range r.Offsets {
			if o.Partition != 1 {
				t.Fatalf("offset in partition %d", o.Partition)
			}
			out = append(out, o.Offset)
		}
		return out
	}

	first, err := e.client.Produce(ctx, batch(0, 0, "a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !slices.Equal(offsets(first), []int64{1, 2, 3}) {
		t.Fatalf("first batch = %v", first)
	}
	retry, err := e.client.Produce(ctx, batch(0, 0, "a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if !retry.Duplicate || !slices.Equal(offsets(retry), []int64{1, 2, 3}) {
		t.Fatalf("retried batch = %v, want duplicate with the original offsets", retry)
	}
	if n := len(e.agent.stored("t", 1)); n != 4 {
		t.Fatalf("partition holds %d records after a retry, want 4", n)
	}
	second, err := e.client.Produce(ctx, batch(0, 3, "d", "e"))
	if err != nil {
		t.Fatal(err)
	}
	if second.Duplicate || !slices.Equal(offsets(second), []int64{4, 5}) {
		t.Fatalf("second batch = %v", second)
	}
	_, err = e.client.Produce(ctx, batch(0, 10, "gap"))
	wantCode(t, err, codes.FailedPrecondition, transport.CodeOutOfOrderSequence)

	// A new epoch fences the old session.
	bumped, err := e.client.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: u64(id.ProducerId)})
	if err != nil {
		t.Fatal(err)
	}
	if bumped.ProducerId != id.ProducerId || bumped.ProducerEpoch != 1 {
		t.Fatalf("bumped = %v", bumped)
	}
	_, err = e.client.Produce(ctx, batch(0, 5, "zombie"))
	wantCode(t, err, codes.FailedPrecondition, transport.CodeProducerFenced)
	fresh, err := e.client.Produce(ctx, batch(1, 0, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets(fresh), []int64{6}) {
		t.Fatalf("new epoch batch = %v", fresh)
	}

	_, err = e.client.Produce(ctx, &pb.ProduceRequest{Topic: "t", ProducerId: u64(999), Records: []*pb.ProduceRecord{{Partition: i32(0), Value: []byte("x")}}})
	wantCode(t, err, codes.FailedPrecondition, transport.CodeUnknownProducer)
	_, err = e.client.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: u64(999)})
	wantCode(t, err, codes.FailedPrecondition, transport.CodeUnknownProducer)
	_, err = e.client.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: u64(0)})
	wantCode(t, err, codes.InvalidArgument, transport.CodeBadRequest)
}

// A null value (value_null) is stored as nil and fetched with value_null
// set; an empty value stays empty; value_null with bytes is refused.
func TestNullVersusEmptyValue(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "vals", 1)
	_, err := e.client.Produce(ctx, &pb.ProduceRequest{Topic: "vals", Records: []*pb.ProduceRecord{
		{Partition: i32(0), Key: []byte("gone"), ValueNull: true},
		{Partition: i32(0), Key: []byte("empty")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	stored := e.agent.stored("vals", 0)
	if stored[0].Value != nil || stored[1].Value == nil {
		t.Fatalf("stored values %#v, %#v: want nil, then non-nil empty", stored[0].Value, stored[1].Value)
	}
	f, err := e.client.Fetch(ctx, &pb.FetchRequest{Topic: "vals", Partition: 0})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Records[0].ValueNull || f.Records[1].ValueNull || len(f.Records[1].Value) != 0 {
		t.Fatalf("fetched %v", f.Records)
	}
	_, err = e.client.Produce(ctx, &pb.ProduceRequest{Topic: "vals", Records: []*pb.ProduceRecord{
		{Partition: i32(0), Value: []byte("x"), ValueNull: true},
	}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("value_null with bytes: %v", err)
	}
}

// A produce that fails with an unclassified error or a panic may have been
// proposed already: the client is told the outcome is unknown, never
// INTERNAL (which clients could take for "not written"), and the error's
// text stays in the log.
func TestProduceUnclassifiedErrorIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.createTopic(t, "t", 1)
	plain := &pb.ProduceRequest{Topic: "t", Records: []*pb.ProduceRecord{{Value: []byte("x")}}}
	p0 := int32(0)
	idem := &pb.ProduceRequest{Topic: "t", ProducerId: u64(1), Records: []*pb.ProduceRecord{{Partition: &p0, Value: []byte("x")}}}
	for _, tc := range []struct {
		name, method string
		req          *pb.ProduceRequest
		panics       bool
	}{
		{"plain error", "Produce", plain, false},
		{"idempotent error", "ProduceIdempotent", idem, false},
		{"plain panic", "Produce", plain, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.panics {
				e.agent.setPanic(tc.method)
				defer e.agent.setPanic("")
			} else {
				e.agent.setErr(tc.method, errDiskOnFire)
				defer e.agent.setErr(tc.method, nil)
			}
			_, err := e.client.Produce(ctx, tc.req)
			wantCode(t, err, codes.Unknown, transport.CodeOutcomeUnknown)
			if strings.Contains(err.Error(), "/var/secret") || strings.Contains(err.Error(), "exploded") {
				t.Errorf("internal error text leaked: %v", err)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "/var/secret") {
		t.Error("internal error not logged")
	}
	// A classified failure keeps its kind.
	_, err := e.client.Produce(ctx, &pb.ProduceRequest{Topic: "nope", Records: []*pb.ProduceRecord{{Value: []byte("x")}}})
	wantCode(t, err, codes.NotFound, transport.CodeNotFound)
}

// TestProduceOffsetRanges: with offset_ranges the answer holds runs of
// consecutive offsets instead of one offset per record, for a plain
// produce spread over partitions and for an idempotent batch and its
// retry; the runs expand to the offsets the same records get without it.
func TestProduceOffsetRanges(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	type run struct {
		partition int32
		base      int64
		count     int32
	}
	runs := func(r *pb.ProduceResponse) []run {
		var out []run
		for _, o := range r.GetOffsetRanges() {
			out = append(out, run{o.Partition, o.BaseOffset, o.Count})
		}
		return out
	}
	parts := []int32{0, 0, 1, 0, 1, 1}
	request := func(topic string, ranges bool) *pb.ProduceRequest {
		req := &pb.ProduceRequest{Topic: topic, OffsetRanges: ranges}
		for i, p := range parts {
			req.Records = append(req.Records, &pb.ProduceRecord{Partition: i32(p), Value: []byte{byte(i)}})
		}
		return req
	}
	var expanded []*pb.RecordOffset
	for _, topic := range []string{"ranges", "offsets"} {
		e.createTopic(t, topic, 2)
		resp, err := e.client.Produce(ctx, request(topic, topic == "ranges"))
		if err != nil {
			t.Fatal(err)
		}
		if topic == "ranges" {
			if len(resp.Offsets) != 0 {
				t.Fatalf("offsets answered with offset_ranges: %v", resp)
			}
			if got, want := runs(resp), []run{{0, 0, 2}, {1, 0, 1}, {0, 2, 1}, {1, 1, 2}}; !slices.Equal(got, want) {
				t.Fatalf("ranges %v, want %v", got, want)
			}
			for _, r := range resp.OffsetRanges {
				for i := range int64(r.Count) {
					expanded = append(expanded, &pb.RecordOffset{Partition: r.Partition, Offset: r.BaseOffset + i})
				}
			}
			continue
		}
		if len(resp.OffsetRanges) != 0 || len(resp.Offsets) != len(expanded) {
			t.Fatalf("answer without offset_ranges: %v", resp)
		}
		for i, o := range resp.Offsets {
			if o.Partition != expanded[i].Partition || o.Offset != expanded[i].Offset {
				t.Fatalf("record %d: offsets answer %v, ranges expand to %v", i, o, expanded[i])
			}
		}
	}

	id, err := e.client.InitProducer(ctx, &pb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	batch := &pb.ProduceRequest{Topic: "ranges", ProducerId: u64(id.ProducerId), OffsetRanges: true}
	for _, v := range []string{"a", "b", "c"} {
		batch.Records = append(batch.Records, &pb.ProduceRecord{Partition: i32(1), Value: []byte(v)})
	}
	for _, dup := range []bool{false, true} {
		resp, err := e.client.Produce(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := runs(resp), []run{{1, 3, 3}}; resp.Duplicate != dup || len(resp.Offsets) != 0 || !slices.Equal(got, want) {
			t.Fatalf("idempotent batch (retry %v): %v, want ranges %v", dup, resp, want)
		}
	}
}
