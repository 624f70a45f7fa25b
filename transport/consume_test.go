package transport

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestConsume(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 2)
	wantStatus(t, e.do(t, "POST", "/api/v1/produce/batch", `{"topic":"t","records":[
		{"value":"r0","partition":1,"key":"k","timestamp":1000,"headers":{"h":"v"}},
		{"value":"r1","partition":1,"timestamp":2000},
		{"value":"r2","partition":1,"timestamp":3000}]}`), http.StatusOK)

	rec := e.do(t, "GET", "/api/v1/consume?topic=t&partition=1&offset=0&max_records=2&wait_ms=250&max_bytes=4096", "")
	wantStatus(t, rec, http.StatusOK)
	want := `{"records":[` +
		`{"partition":1,"offset":0,"timestamp":1000,"key":"k","value":"r0","headers":{"h":"v"}},` +
		`{"partition":1,"offset":1,"timestamp":2000,"key":null,"value":"r1","headers":{}}],` +
		`"next_offset":2,"high_watermark":3,"low_watermark":0}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Fatalf("consume body =\n%s\nwant\n%s", got, want)
	}
	wantReq := fsm.FetchRequest{Topic: "t", Partition: 1, Offset: 0, MaxRecords: 2, MaxBytes: 4096, WaitMs: 250}
	if got := e.agent.lastFetch(); got != wantReq {
		t.Fatalf("FetchRequest = %+v, want %+v", got, wantReq)
	}

	// Defaults: partition 0, offset earliest, max_records 100, no wait.
	rec = e.do(t, "GET", "/api/v1/consume?topic=t", "")
	wantStatus(t, rec, http.StatusOK)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"records":[],"next_offset":0,"high_watermark":0,"low_watermark":0}` {
		t.Fatalf("empty partition body = %s", got)
	}
	wantReq = fsm.FetchRequest{Topic: "t", Partition: 0, Offset: 0, MaxRecords: 100}
	if got := e.agent.lastFetch(); got != wantReq {
		t.Fatalf("default FetchRequest = %+v, want %+v", got, wantReq)
	}
}

func TestConsumeEarliestLatest(t *testing.T) {
	e := newEnv(t)
	e.partitionWithRange(t, 2, 5)

	for _, tc := range []struct {
		query string
		want  int64
	}{
		{"", 2},
		{"&offset=earliest", 2},
		{"&offset=latest", 5},
		{"&offset=3", 3},
	} {
		rec := e.do(t, "GET", "/api/v1/consume?topic=t&partition=1"+tc.query, "")
		wantStatus(t, rec, http.StatusOK)
		if got := e.agent.lastFetch().Offset; got != tc.want {
			t.Fatalf("offset for %q = %d, want %d", tc.query, got, tc.want)
		}
	}
	// earliest/latest on a partition that does not exist: 404.
	wantError(t, e.do(t, "GET", "/api/v1/consume?topic=t&partition=7&offset=latest", ""), http.StatusNotFound, CodeNotFound)
	wantError(t, e.do(t, "GET", "/api/v1/consume?topic=nope", ""), http.StatusNotFound, CodeNotFound)
}

// If retention moves the low watermark between resolving "earliest" and the
// fetch, earliest follows it instead of failing with 416.
func TestConsumeEarliestFollowsRetention(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	calls := 0
	e.agent.set(func(f *fakeAgent) {
		f.fetchHook = func(_ context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
			calls++
			if req.Offset < 7 {
				return fsm.FetchResult{}, &fsm.OffsetOutOfRangeError{Requested: req.Offset, LowWatermark: 7, HighWatermark: 9}
			}
			return fsm.FetchResult{NextOffset: req.Offset, HighWatermark: 9, LowWatermark: 7}, nil
		}
	})
	rec := e.do(t, "GET", "/api/v1/consume?topic=t", "")
	wantStatus(t, rec, http.StatusOK)
	if calls != 2 || e.agent.lastFetch().Offset != 7 {
		t.Fatalf("calls=%d last offset=%d, want a retry at 7", calls, e.agent.lastFetch().Offset)
	}
	// An explicit offset is not adjusted: the client asked for it.
	e2 := e.do(t, "GET", "/api/v1/consume?topic=t&offset=3", "")
	errObj := wantError(t, e2, http.StatusRequestedRangeNotSatisfiable, CodeOffsetOutOfRange)
	if errObj["low_watermark"] != json.Number("7") || errObj["high_watermark"] != json.Number("9") {
		t.Fatalf("416 error object = %v", errObj)
	}
}

func TestConsumeBadInput(t *testing.T) {
	cases := []struct{ name, query, msgHas string }{
		{"missing topic", "partition=0", "topic"},
		{"partition garbage", "topic=t&partition=one", "partition"},
		{"partition negative", "topic=t&partition=-1", "partition"},
		{"partition overflow", "topic=t&partition=99999999999", "partition"},
		{"offset garbage", "topic=t&offset=first", "offset"},
		{"offset negative", "topic=t&offset=-4", "offset"},
		{"offset float", "topic=t&offset=1.5", "offset"},
		{"max_records zero", "topic=t&max_records=0", "max_records"},
		{"max_records negative", "topic=t&max_records=-2", "max_records"},
		{"max_records garbage", "topic=t&max_records=lots", "max_records"},
		{"wait_ms negative", "topic=t&wait_ms=-1", "wait_ms"},
		{"wait_ms garbage", "topic=t&wait_ms=forever", "wait_ms"},
		{"max_bytes negative", "topic=t&max_bytes=-1", "max_bytes"},
		{"encoding unknown", "topic=t&encoding=hex", "encoding"},
		{"malformed query", "topic=t&offset=%zz", "query"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.agent.addTopic("t", 1)
			errObj := wantError(t, e.do(t, "GET", "/api/v1/consume?"+tc.query, ""), http.StatusBadRequest, CodeBadRequest)
			if msg := errObj["message"].(string); !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("message %q does not mention %q", msg, tc.msgHas)
			}
			e.agent.mu.Lock()
			n := len(e.agent.fetches)
			e.agent.mu.Unlock()
			if n != 0 {
				t.Fatal("bad input reached the fetcher")
			}
		})
	}
}

func TestConsumeOutputEncodingDetails(t *testing.T) {
	fr := fsm.FetchedRecord{Partition: 9, Offset: 4, Record: fsm.Record{
		Timestamp: 5, Key: []byte{}, Value: []byte("ok"),
		Headers: []fsm.Header{{Key: "a", Value: []byte("text")}, {Key: "b", Value: []byte{0x80}}},
	}}
	got := toRecordOut(3, &fr, false)
	want := recordOutJSON{
		Partition: 3, Offset: 4, Timestamp: 5, Key: new(string), Value: ptr("ok"),
		Headers:         orderedHeaders{{key: "a", value: "dGV4dA=="}, {key: "b", value: "gA=="}},
		HeadersEncoding: "base64",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("toRecordOut = %+v\nwant %+v", got, want)
	}
}

// partitionWithRange creates topic t with 2 partitions and produces to
// partition 1 until its next offset is next, with low as its low
// watermark.
func (e *testEnv) partitionWithRange(t *testing.T, low, next int64) {
	t.Helper()
	e.agent.addTopic("t", 2)
	for range next {
		wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"v","partition":1}`), http.StatusOK)
	}
	e.agent.set(func(f *fakeAgent) { f.low["t"][1] = low })
}

func ptr[T any](v T) *T { return &v }

// A null value (a tombstone) is JSON null; an empty value is "".
func TestConsumeOutputNullValue(t *testing.T) {
	null := toRecordOut(0, &fsm.FetchedRecord{Record: fsm.Record{Key: []byte("k")}}, false)
	empty := toRecordOut(0, &fsm.FetchedRecord{Record: fsm.Record{Value: []byte{}}}, false)
	nb, _ := json.Marshal(null)
	eb, _ := json.Marshal(empty)
	if !strings.Contains(string(nb), `"value":null`) || !strings.Contains(string(eb), `"value":""`) {
		t.Fatalf("null %s, empty %s", nb, eb)
	}
}
