package transport

import (
	"bytes"
	"net/http/httptest"
	"reflect"
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
	topic, recs, ok := (&HTTPServer{bodyLimit: 1 << 24}).decodeBatchFast(body)
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
// without exhausting the stack.
func TestDecodeBatchFastDeepNesting(t *testing.T) {
	body := []byte(`{"topic":"t","records":[{"value":"a","headers":` + string(bytes.Repeat([]byte("["), 1<<22)) + `}]}`)
	if agree(t, body) {
		t.Fatal("the fast decoder took a deeply nested body")
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
