package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestProduceSingle(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 4)
	rec := e.do(t, "POST", "/api/v1/produce",
		`{"topic":"t","key":"k1","value":"hello","partition":2,"headers":{"h":"v"},"timestamp":1700000000000}`)
	wantStatus(t, rec, http.StatusOK)
	if got, want := jsonBody(t, rec), map[string]any{"partition": json.Number("2"), "offset": json.Number("0")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("produce response = %v, want %v", got, want)
	}
	want := []fsm.ProduceRecord{{Partition: 2, Record: fsm.Record{
		Timestamp: 1700000000000, Key: []byte("k1"), Value: []byte("hello"),
		Headers: []fsm.Header{{Key: "h", Value: []byte("v")}},
	}}}
	if got := e.agent.produced(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Produce got %+v\nwant %+v", got, want)
	}

	// Minimal record: partitioner chooses (-1), null key, no timestamp.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":""}`), http.StatusOK)
	got := e.agent.produced()[0]
	if got.Partition != -1 || got.Record.Key != nil || got.Record.Value == nil || len(got.Record.Value) != 0 ||
		got.Record.Timestamp != 0 || got.Record.Headers != nil {
		t.Fatalf("minimal record = %+v", got)
	}
	// A null value is a tombstone, distinct from the empty value above.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","key":"k","value":null}`), http.StatusOK)
	if got := e.agent.produced()[0]; got.Record.Value != nil || string(got.Record.Key) != "k" {
		t.Fatalf("null value = %+v", got)
	}
	// Explicit null partition also means "partitioner chooses".
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"x","partition":null}`), http.StatusOK)
	if p := e.agent.produced()[0].Partition; p != -1 {
		t.Fatalf("partition null → %d, want -1", p)
	}
}

func TestProduceBatch(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 3)
	rec := e.do(t, "POST", "/api/v1/produce/batch", `{"topic":"t","records":[
		{"value":"a","partition":1},
		{"value":"b","partition":0},
		{"value":"c","partition":1,"key":"k","timestamp":42,"headers":[{"key":"x","value":"y"}]}
	]}`)
	wantStatus(t, rec, http.StatusOK)
	want := `{"offsets":[{"partition":1,"offset":0},{"partition":0,"offset":0},{"partition":1,"offset":1}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Fatalf("batch response = %s\nwant %s", got, want)
	}
	recs := e.agent.produced()
	if len(recs) != 3 || string(recs[0].Record.Value) != "a" || string(recs[2].Record.Value) != "c" ||
		recs[2].Record.Timestamp != 42 || string(recs[2].Record.Key) != "k" ||
		!reflect.DeepEqual(recs[2].Record.Headers, []fsm.Header{{Key: "x", Value: []byte("y")}}) {
		t.Fatalf("records passed to Produce: %+v", recs)
	}
}

// Every kind of JSON string value reaches Produce as encoding/json decodes
// it: plain, escaped, \u escapes, invalid UTF-8 (replaced by U+FFFD),
// empty, null, and base64; the batch's records are decoded in one pass.
func TestProduceBatchValuesDecodeAsJSON(t *testing.T) {
	values := []string{`"plain"`, `"quo\"te\\n"`, `"\u00e9\n"`, "\"bad\xff utf8\"", `""`, `"multi ☃ byte"`}
	var body strings.Builder
	body.WriteString(`{"topic":"t","records":[`)
	for _, v := range values {
		fmt.Fprintf(&body, `{"value":%s,"key":%s},`, v, v)
	}
	body.WriteString(`{"value":null},{"value":"aGk=","value_encoding":"base64"}]}`)
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	wantStatus(t, e.do(t, "POST", "/api/v1/produce/batch", body.String()), http.StatusOK)
	recs := e.agent.produced()
	if len(recs) != len(values)+2 {
		t.Fatalf("%d records produced, want %d", len(recs), len(values)+2)
	}
	for i, v := range values {
		var want string
		if err := json.Unmarshal([]byte(v), &want); err != nil {
			t.Fatal(err)
		}
		if r := recs[i].Record; string(r.Value) != want || r.Value == nil || string(r.Key) != want {
			t.Errorf("record %d: value %q key %q, want %q", i, r.Value, r.Key, want)
		}
	}
	if r := recs[len(values)].Record; r.Value != nil {
		t.Errorf("null value produced as %q", r.Value)
	}
	if r := recs[len(values)+1].Record; string(r.Value) != "hi" {
		t.Errorf("base64 value produced as %q", r.Value)
	}
}

// A null key and an empty key must stay distinct from the produce JSON,
// through the agent, to the consume JSON.
func TestNullVersusEmptyKeyRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"absent"}`), http.StatusOK)
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"null","key":null}`), http.StatusOK)
	wantStatus(t, e.do(t, "POST", "/api/v1/produce/batch",
		`{"topic":"t","records":[{"value":"empty","key":""},{"value":"empty-b64","key":"","key_encoding":"base64"}]}`), http.StatusOK)

	e.agent.mu.Lock()
	stored := e.agent.logs["t"][0]
	e.agent.mu.Unlock()
	wantNil := []bool{true, true, false, false}
	for i, r := range stored {
		if (r.Key == nil) != wantNil[i] || len(r.Key) != 0 {
			t.Fatalf("stored record %d (%s): key %#v, want nil=%v and empty", i, r.Value, r.Key, wantNil[i])
		}
	}

	body := consumeRaw(t, e, "t")
	wantKeys := []string{`null`, `null`, `""`, `""`}
	if len(body.Records) != len(wantKeys) {
		t.Fatalf("consumed %d records: %v", len(body.Records), body.Records)
	}
	for i, r := range body.Records {
		k, ok := r["key"]
		if !ok || string(k) != wantKeys[i] {
			t.Fatalf("record %d key = %s (present=%v), want %s", i, k, ok, wantKeys[i])
		}
		if _, ok := r["key_encoding"]; ok {
			t.Fatalf("record %d has key_encoding for a null/empty key", i)
		}
	}
}

func TestBase64InAndOut(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	binVal := []byte{0xff, 0x00, 0xfe, 'a'} // not UTF-8
	binKey := []byte{0xc3, 0x28}            // invalid 2-byte sequence
	body := `{"topic":"t","value":"` + base64.StdEncoding.EncodeToString(binVal) + `","value_encoding":"base64",` +
		`"key":"` + base64.StdEncoding.EncodeToString(binKey) + `","key_encoding":"base64"}`
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", body), http.StatusOK)
	got := e.agent.produced()[0].Record
	if !bytes.Equal(got.Value, binVal) || !bytes.Equal(got.Key, binKey) {
		t.Fatalf("decoded key/value = %x/%x, want %x/%x", got.Key, got.Value, binKey, binVal)
	}
	// A text record next to it.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","key":"ключ","value":"héllo ✓"}`), http.StatusOK)

	type out struct {
		Key           *string `json:"key"`
		Value         string  `json:"value"`
		KeyEncoding   string  `json:"key_encoding"`
		ValueEncoding string  `json:"value_encoding"`
	}
	consume := func(q string) []out {
		t.Helper()
		rec := e.do(t, "GET", "/api/v1/consume?topic=t"+q, "")
		wantStatus(t, rec, http.StatusOK)
		var b struct{ Records []out }
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if len(b.Records) != 2 {
			t.Fatalf("want 2 records: %s", rec.Body.String())
		}
		return b.Records
	}

	// Auto: invalid UTF-8 falls back to base64 and says so; text stays text.
	rs := consume("")
	if rs[0].ValueEncoding != "base64" || rs[0].KeyEncoding != "base64" ||
		rs[0].Value != base64.StdEncoding.EncodeToString(binVal) || *rs[0].Key != base64.StdEncoding.EncodeToString(binKey) {
		t.Fatalf("binary record = %+v", rs[0])
	}
	if rs[1].ValueEncoding != "" || rs[1].KeyEncoding != "" || rs[1].Value != "héllo ✓" || *rs[1].Key != "ключ" {
		t.Fatalf("text record = %+v", rs[1])
	}

	// Forced: everything base64.
	rs = consume("&encoding=base64")
	if rs[1].ValueEncoding != "base64" || rs[1].KeyEncoding != "base64" ||
		rs[1].Value != base64.StdEncoding.EncodeToString([]byte("héllo ✓")) {
		t.Fatalf("forced base64 text record = %+v", rs[1])
	}
}

func TestHeaders(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	// Object form keeps document order (not sorted), duplicates included.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"v","headers":{"zeta":"1","alpha":"2","mid":"3","alpha":"4"}}`), http.StatusOK)
	want := []fsm.Header{{Key: "zeta", Value: []byte("1")}, {Key: "alpha", Value: []byte("2")}, {Key: "mid", Value: []byte("3")}, {Key: "alpha", Value: []byte("4")}}
	if got := e.agent.produced()[0].Record.Headers; !reflect.DeepEqual(got, want) {
		t.Fatalf("object headers = %+v, want %+v", got, want)
	}
	// Array form.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"v","headers":[{"key":"b","value":"1"},{"key":"a","value":""}]}`), http.StatusOK)
	want2 := []fsm.Header{{Key: "b", Value: []byte("1")}, {Key: "a", Value: []byte{}}}
	if got := e.agent.produced()[0].Record.Headers; !reflect.DeepEqual(got, want2) {
		t.Fatalf("array headers = %+v, want %+v", got, want2)
	}
	// Base64 header values, one not UTF-8.
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"v","headers_encoding":"base64","headers":{"bin":"/w==","txt":"aGk="}}`), http.StatusOK)
	want3 := []fsm.Header{{Key: "bin", Value: []byte{0xff}}, {Key: "txt", Value: []byte("hi")}}
	if got := e.agent.produced()[0].Record.Headers; !reflect.DeepEqual(got, want3) {
		t.Fatalf("base64 headers = %+v, want %+v", got, want3)
	}

	body := consumeRaw(t, e, "t")
	// The raw JSON shows member order.
	wantHeaders := []string{
		`{"zeta":"1","alpha":"2","mid":"3","alpha":"4"}`,
		`{"b":"1","a":""}`,
		`{"bin":"/w==","txt":"aGk="}`,
	}
	for i, w := range wantHeaders {
		if got := string(body.Records[i]["headers"]); got != w {
			t.Fatalf("record %d headers = %s, want %s", i, got, w)
		}
	}
	if enc := string(body.Records[2]["headers_encoding"]); enc != `"base64"` {
		t.Fatalf("record 2 headers_encoding = %s, want \"base64\"", enc)
	}
	if _, ok := body.Records[0]["headers_encoding"]; ok {
		t.Fatal("text headers must not carry headers_encoding")
	}
}

func TestProduceBadInput(t *testing.T) {
	cases := []struct {
		name, path, body string
		msgHas           string
	}{
		{"malformed JSON", "", `{"topic":"t","value":}`, "malformed JSON"},
		{"truncated JSON", "", `{"topic":"t","value":"x"`, "unexpected end"},
		{"trailing garbage", "", `{"topic":"t","value":"x"}garbage`, "after the JSON object"},
		{"second object", "", `{"topic":"t","value":"x"}{}`, "after the JSON object"},
		{"empty body", "", ``, "empty"},
		{"array body", "", `[{"topic":"t"}]`, "JSON object"},
		{"missing topic", "", `{"value":"x"}`, "topic"},
		{"topic wrong type", "", `{"topic":5,"value":"x"}`, "topic: expected a string"},
		{"missing value", "", `{"topic":"t"}`, "value is required"},
		{"value wrong type", "", `{"topic":"t","value":123}`, "value: expected a string or null"},
		{"key wrong type", "", `{"topic":"t","value":"x","key":{}}`, "key: expected a string"},
		{"partition wrong type", "", `{"topic":"t","value":"x","partition":"1"}`, "partition: expected a 32-bit integer"},
		{"partition overflow", "", `{"topic":"t","value":"x","partition":4294967296}`, "partition: expected a 32-bit integer, got number 4294967296"},
		{"negative partition", "", `{"topic":"t","value":"x","partition":-1}`, "partition must not be negative"},
		{"negative timestamp", "", `{"topic":"t","value":"x","timestamp":-5}`, "timestamp"},
		{"timestamp wrong type", "", `{"topic":"t","value":"x","timestamp":"now"}`, "timestamp"},
		{"bad base64 value", "", `{"topic":"t","value":"not base64!","value_encoding":"base64"}`, "value: invalid base64"},
		{"bad base64 key", "", `{"topic":"t","value":"x","key":"%%%","key_encoding":"base64"}`, "key: invalid base64"},
		{"bad base64 header", "", `{"topic":"t","value":"x","headers":{"h":"??"},"headers_encoding":"base64"}`, "invalid base64"},
		{"unknown encoding", "", `{"topic":"t","value":"x","value_encoding":"hex"}`, "value_encoding"},
		{"unknown field", "", `{"topic":"t","value":"x","valeu":"y"}`, `unknown field "valeu"`},
		{"headers wrong type", "", `{"topic":"t","value":"x","headers":"h=v"}`, "headers"},
		{"header value not string", "", `{"topic":"t","value":"x","headers":{"h":1}}`, `headers["h"]`},
		{"header value null", "", `{"topic":"t","value":"x","headers":{"h":null}}`, `headers["h"]`},
		{"header array missing key", "", `{"topic":"t","value":"x","headers":[{"value":"v"}]}`, "headers[0].key"},
		{"header array missing value", "", `{"topic":"t","value":"x","headers":[{"key":"k"}]}`, "headers[0].value"},
		{"header array unknown field", "", `{"topic":"t","value":"x","headers":[{"key":"k","value":"v","x":1}]}`, "unknown field"},
		{"header array item not object", "", `{"topic":"t","value":"x","headers":["k"]}`, "headers[0]"},

		{"batch empty records", "/batch", `{"topic":"t","records":[]}`, "must not be empty"},
		{"batch missing records", "/batch", `{"topic":"t"}`, "records is required"},
		{"batch records not array", "/batch", `{"topic":"t","records":{}}`, "records: expected an array"},
		{"batch missing topic", "/batch", `{"records":[{"value":"x"}]}`, "topic"},
		{"batch null record", "/batch", `{"topic":"t","records":[{"value":"x"},null]}`, "records[1]"},
		{"batch record missing value", "/batch", `{"topic":"t","records":[{"value":"x"},{"key":"k"}]}`, "records[1].value is required"},
		{"batch record wrong type", "/batch", `{"topic":"t","records":[{"value":"x"},{"value":"y"},{"value":"z","partition":"2"}]}`, "records[2].partition"},
		{"batch record negative partition", "/batch", `{"topic":"t","records":[{"value":"x","partition":-3}]}`, "records[0].partition"},
		{"batch record unknown field", "/batch", `{"topic":"t","records":[{"value":"x","topic":"u"}]}`, "records[0].topic"},
		{"batch record bad base64", "/batch", `{"topic":"t","records":[{"value":"@@","value_encoding":"base64"}]}`, "records[0].value: invalid base64"},
		{"batch trailing garbage", "/batch", `{"topic":"t","records":[{"value":"x"}]}]`, "after the JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.agent.addTopic("t", 1)
			errObj := wantError(t, e.do(t, "POST", "/api/v1/produce"+tc.path, tc.body), http.StatusBadRequest, CodeBadRequest)
			if msg := errObj["message"].(string); !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("message %q does not mention %q", msg, tc.msgHas)
			}
			if e.agent.produced() != nil {
				t.Fatal("bad input reached the producer")
			}
			if got := testutilCount(t, e, CodeBadRequest); got != 1 {
				t.Fatalf("errors_total{kind=bad_request} = %v, want 1", got)
			}
		})
	}
}

// consumeRaw consumes topic from its start and returns the records' raw
// JSON members (to see null against "" and member order).
func consumeRaw(t *testing.T, e *testEnv, topic string) (body struct {
	Records []map[string]json.RawMessage `json:"records"`
}) {
	t.Helper()
	rec := e.do(t, "GET", "/api/v1/consume?topic="+topic, "")
	wantStatus(t, rec, http.StatusOK)
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	return body
}

// A batch that names "records" twice is decoded as encoding/json decodes
// it into raw values: the last array wins whole; nothing of the first
// array's records leaks into the second's (a repeated array decoded into
// the same struct slice would keep fields the second leaves out).
func TestProduceBatchRepeatedRecordsKey(t *testing.T) {
	cases := []struct {
		body   string
		status int
	}{
		{`{"topic":"t","records":[{"value":"a","key":"k","partition":0,"timestamp":5}],"records":[{"value":"b"}]}`, http.StatusOK},
		{`{"topic":"t","records":[{"value":"a","key":"k"}],"Records":[{"value":"b"}]}`, http.StatusOK},
		{`{"topic":"t","records":[{"value":"a"}],"records":[null]}`, http.StatusBadRequest},
		{`{"topic":"t","records":[{"value":"a"}],"records":[{}]}`, http.StatusBadRequest},
	}
	for _, c := range cases {
		e := newEnv(t)
		e.agent.addTopic("t", 1)
		wantStatus(t, e.do(t, "POST", "/api/v1/produce/batch", c.body), c.status)
		recs := e.agent.produced()
		if c.status != http.StatusOK {
			if len(recs) != 0 {
				t.Errorf("%s: %d records produced from a refused batch", c.body, len(recs))
			}
			continue
		}
		if len(recs) != 1 {
			t.Fatalf("%s: %d records produced, want 1", c.body, len(recs))
		}
		if r := recs[0].Record; string(r.Value) != "b" || r.Key != nil || r.Timestamp == 5 {
			t.Errorf("%s: produced value %q key %q timestamp %d, want only the last array's record", c.body, r.Value, r.Key, r.Timestamp)
		}
	}
}

// A declared Content-Length is not allocated before the bytes arrive: a
// request that declares the whole body limit and sends ten bytes costs
// about ten bytes, not the limit.
func TestProduceBodyNotPresizedFromTheHeader(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	h := e.handle
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20
	for range n {
		req := httptest.NewRequest("POST", "/api/v1/produce/batch", io.NopCloser(strings.NewReader(`{"topic":"`)))
		req.ContentLength = 30 << 20
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > n*(4<<20) {
		t.Fatalf("%d requests declaring 30 MiB and sending 10 bytes allocated %d MiB", n, got>>20)
	}
}
