package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// slowBatch runs the strict decoder (the one that names what is wrong) on
// body.
func slowBatch(t testing.TB, body []byte) (string, []fsm.ProduceRecord, error) {
	s := &HTTPServer{bodyLimit: 1 << 24}
	r := httptest.NewRequest("POST", "/api/v1/produce/batch", bytes.NewReader(body))
	return s.decodeBatch(httptest.NewRecorder(), r)
}

// agree checks the one-pass decoder against the strict one: whatever it
// accepts, the strict decoder accepts with the same topic and records.
func agree(t testing.TB, body []byte) bool {
	t.Helper()
	topic, recs, ok, err := (&HTTPServer{bodyLimit: 1 << 24}).decodeBatchFast(body, func(string) error { return nil })
	if err != nil {
		t.Fatalf("decodeBatchFast: %v", err)
	}
	if !ok {
		return false
	}
	stopic, srecs, err := slowBatch(t, body)
	if err != nil {
		t.Fatalf("the fast decoder accepted what the strict one refuses (%v): %q", err, body)
	}
	if topic != stopic || !reflect.DeepEqual(recs, srecs) {
		t.Fatalf("the decoders disagree on %q:\nfast   %q %+v\nstrict %q %+v", body, topic, recs, stopic, srecs)
	}
	return true
}

// batchBodies: the one-pass decoder must take those marked true; it may
// leave the others to the strict decoder. Either way it must agree with it.
var batchBodies = []struct {
	body string
	fast bool
}{
	{`{"topic":"t","records":[{"value":"a"}]}`, true},
	{` {"records":[{"partition":3,"timestamp":1700000000000,"value":"v"},{"value":"w","partition":0}], "topic":"t"}` + "\n", true},
	{`{"topic":"t","records":[{"key":"k","value":"v","headers":{"h":"1","g":"2"}}]}`, true},
	{`{"topic":"t","records":[{"key":null,"value":null,"partition":null,"timestamp":null,"headers":null}]}`, true},
	{`{"topic":"t","records":[{"key":"","value":"","headers":[{"key":"h","value":"x"}]}]}`, true},
	{`{"topic":"t","records":[{"key":"aGk=","key_encoding":"base64","value":"aGk=","value_encoding":"BASE64","headers":{"h":"aGk="},"headers_encoding":"base64"}]}`, true},
	{`{"topic":"t","records":[{"value":"a\"b\\c\u00e9\ud83d\ude00\n"}]}`, true},
	{`{"topic":"t\u0031","records":[{"key":"\u006b","value":"x","key_encoding":null}]}`, true},
	{`{"topic":"t","records":[{"value":"\ud800"}]}`, true},
	{"{\"topic\":\"t\",\"records\":[{\"value\":\"\xff\xfe\"}]}", true},
	{`{"topic":"t","records":[{"value":"a","partition":-0}]}`, true},
	// edge cases: folded or repeated keys, numbers the strict decoder
	// refuses, wrong types, malformed JSON
	{`{"Topic":"t","records":[{"value":"a"}]}`, false},
	{`{"topic":"t","records":[{"VALUE":"a"}]}`, false},
	{`{"topic":"t","topic":"u","records":[{"value":"a"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","value":"b"}]}`, false},
	{`{"topic":"t","records":[{"value":"a"}],"records":[{"value":"b"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":1.0}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":1e2}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":4294967296}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":-1}]}`, false},
	{`{"topic":"t","records":[{"value":"a","timestamp":-5}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":"1"}]}`, false},
	{`{"topic":"t","records":[{"value":5}]}`, false},
	{`{"topic":"t","records":[{"key":5,"value":"a"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","topic":"t"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","extra":1}]}`, false},
	{`{"topic":"t","records":[{"partition":1}]}`, false},
	{`{"topic":"t","records":[null]}`, false},
	{`{"topic":"t","records":[]}`, false},
	{`{"topic":"t","records":null}`, false},
	{`{"topic":"","records":[{"value":"a"}]}`, false},
	{`{"topic":null,"records":[{"value":"a"}]}`, false},
	{`{"records":[{"value":"a"}]}`, false},
	{`{"topic":"t","records":[{"value":"a"}]} {}`, false},
	{`{"topic":"t","records":[{"value":"a"},]}`, false},
	{`{"topic":"t","records":[{"value":"a" "key":"b"}]}`, false},
	{`{"topic":"t","records":[{"value":"a\x"}]}`, false},
	{"{\"topic\":\"t\",\"records\":[{\"value\":\"a\tb\"}]}", false},
	{`{"topic":"t","records":[{"value":"a","key_encoding":"hex"}]}`, false},
	{`{"topic":"t","records":[{"value":"!!","value_encoding":"base64"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","headers":{"h":1}}]}`, false},
	{`{"topic":"t","records":[{"value":"a","headers":"h"}]}`, false},
	{`{"topic":"t","records":[{"\u0076alue":"a"}]}`, false},
	{`{"\u0074opic":"t","records":[{"value":"a"}]}`, false},
	{`{"topic":"t","records":[{"value":"a","topic":null}]}`, false},
	{`{"topic":"t","records":[{"value":"a","partition":2147483647,"timestamp":9223372036854775807}]}`, true},
	{`{"topic":"t","records":[{"value":"a","partition":2147483648}]}`, false},
	{`{"topic":"t","records":[{"value":"a","timestamp":9223372036854775808}]}`, false},
	{"\r\n{ \"topic\" :\t\"t\" ,\r\n \"records\" : [ { \"value\" : \"a\" , \"partition\" : 1 } ] }\r\n", true},
	{`{"topic":"t","records":[{"value":"a","headers":[{"KEY":"h","value":"x"},{"key":"h","key":"g","value":"y"}]}]}`, false},
	{"{\"topic\":\"t\",\"records\":[{\"k\xffey\":\"a\",\"value\":\"b\"}]}", false},
	{"{\"topic\":\"t\xff\",\"records\":[{\"value\":\"b\",\"headers\":{\"h\xfe\":\"v\"}}]}", true},
	{`{"topic":"t","records":[{"value":"{[[{\"x\":[1]}]]}\\","key":"]]]]"}]}`, true},
	{`[{"topic":"t"}]`, false},
	{`null`, false},
	{``, false},
}

// TestDecodeBatchFastAgreesWithTheStrictDecoder: the one-pass decoder
// takes the common bodies, escapes, headers and encodings included, and
// agrees with the strict decoder on every body it takes.
func TestDecodeBatchFastAgreesWithTheStrictDecoder(t *testing.T) {
	for _, c := range batchBodies {
		if got := agree(t, []byte(c.body)); c.fast && !got {
			_, _, err := slowBatch(t, []byte(c.body))
			t.Errorf("the fast decoder left %q to the strict one (which answered %v)", c.body, err)
		}
	}
}

// A deeply nested body is left to the strict decoder (which refuses it)
// before gjson's validator, which recurses per level, sees it.
func TestDecodeBatchFastDeepNesting(t *testing.T) {
	for _, n := range []int{maxFastDepth, 1 << 16, 1 << 22} {
		body := []byte(`{"topic":"t","records":[{"value":"a","headers":` + strings.Repeat("[", n) + `}]}`)
		if nestedAtMost(body, maxFastDepth) {
			t.Errorf("%d brackets deep: nestedAtMost says within %d", n, maxFastDepth)
		}
		if agree(t, body) {
			t.Fatalf("the fast decoder took a body %d brackets deep", n)
		}
	}
}

// nestedAtMost counts brackets outside strings only, escaped quotes
// included.
func TestNestedAtMost(t *testing.T) {
	for _, c := range []struct {
		body  string
		depth int // the least max it is within
	}{
		{`{}`, 1},
		{`{"a":[{"b":[]}]}`, 4},
		{`{"a":"[[[[{{{{"}`, 1},
		{`{"a":"\"[[[["}`, 1},
		{`{"a":"\\"}`, 1},
		{`{"a":"\\",[[]]}`, 3},
		{`{"a":"\\\"[[[","b":[]}`, 2},
		{`[[[`, 3},
		{`"[[[`, 0},
		{``, 0},
	} {
		if c.depth > 0 && nestedAtMost([]byte(c.body), c.depth-1) {
			t.Errorf("%s: within %d, want deeper", c.body, c.depth-1)
		}
		if !nestedAtMost([]byte(c.body), c.depth) {
			t.Errorf("%s: deeper than %d", c.body, c.depth)
		}
	}
}

// The topic is authorized before any record is decoded, as the strict
// decoder does, and its refusal is the answer.
func TestDecodeBatchFastAuthorizesFirst(t *testing.T) {
	denied := errors.New("denied")
	var asked []string
	_, _, ok, err := (&HTTPServer{}).decodeBatchFast([]byte(`{"topic":"t","records":[{"value":"!!","value_encoding":"base64"}]}`),
		func(topic string) error { asked = append(asked, topic); return denied })
	if !errors.Is(err, denied) || ok || fmt.Sprint(asked) != "[t]" {
		t.Fatalf("decodeBatchFast = ok %v, err %v after asking %q; want the refusal for [t]", ok, err, asked)
	}
}

// FuzzDecodeBatchFast: whatever the one-pass decoder accepts, the strict
// decoder accepts with the same result.
func FuzzDecodeBatchFast(f *testing.F) {
	for _, c := range batchBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { agree(t, body) })
}
