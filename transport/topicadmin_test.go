package transport

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestTopicConfigGetAndPatch(t *testing.T) {
	e := newEnv(t, func(c *HTTPConfig) { c.MaxRecordBytes = 1 << 20 })
	e.agent.addTopic("orders", 2)
	got := jsonBody(t, e.do(t, "GET", "/api/v1/topics/orders/config", ""))
	want := map[string]any{"topic": "orders",
		"configs": map[string]any{"cleanup.policy": "delete", "compression.type": "zstd", "max.message.bytes": "1048576",
			"retention.bytes": "-1", "retention.ms": "-1"},
		"defaults": []any{"cleanup.policy", "compression.type", "max.message.bytes", "retention.bytes", "retention.ms"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config = %v\nwant %v", got, want)
	}
	// Incremental: only the named keys change; a number is taken as its text.
	rec := e.do(t, "PATCH", "/api/v1/topics/orders/config", `{"retention.ms":"3600000","compression.type":"lz4"}`)
	wantStatus(t, rec, http.StatusOK)
	rec = e.do(t, "PATCH", "/api/v1/topics/orders/config", `{"max.message.bytes":4096}`)
	wantStatus(t, rec, http.StatusOK)
	got = jsonBody(t, rec)
	configs := got["configs"].(map[string]any)
	if configs["retention.ms"] != "3600000" || configs["compression.type"] != "lz4" || configs["max.message.bytes"] != "4096" {
		t.Fatalf("configs after two patches = %v", configs)
	}
	if d := got["defaults"].([]any); !reflect.DeepEqual(d, []any{"cleanup.policy", "retention.bytes"}) {
		t.Fatalf("defaults = %v", d)
	}
	// The topic's description carries the same map.
	topic := jsonBody(t, e.do(t, "GET", "/api/v1/topics/orders", ""))
	if !reflect.DeepEqual(topic["configs"], configs) || topic["retention_ms"] != json.Number("3600000") {
		t.Fatalf("describe = %v", topic)
	}
}

func TestTopicConfigPatchBadInput(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("orders", 1)
	cases := map[string]string{
		"unknown key":     `{"segment.ms":"1"}`,
		"bad value":       `{"retention.ms":"1h"}`,
		"bad compression": `{"compression.type":"gzip"}`,
		"compact":         `{"cleanup.policy":"compact"}`,
		"empty object":    `{}`,
		"not an object":   `["retention.ms"]`,
		"bool value":      `{"retention.ms":true}`,
		"malformed":       `{"retention.ms":`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.do(t, "PATCH", "/api/v1/topics/orders/config", body), http.StatusBadRequest, CodeBadRequest)
		})
	}
	msg := wantError(t, e.do(t, "PATCH", "/api/v1/topics/orders/config", `{"segment.ms":"1"}`), http.StatusBadRequest, CodeBadRequest)["message"].(string)
	if !strings.Contains(msg, "segment.ms") || !strings.Contains(msg, "retention.ms") {
		t.Fatalf("unknown-key message %q names neither the key nor the supported ones", msg)
	}
	if c := jsonBody(t, e.do(t, "GET", "/api/v1/topics/orders/config", ""))["configs"].(map[string]any); c["retention.ms"] != "-1" {
		t.Fatalf("a refused patch changed the config: %v", c)
	}
	wantError(t, e.do(t, "PATCH", "/api/v1/topics/nope/config", `{"retention.ms":"1"}`), http.StatusNotFound, CodeNotFound)
	wantError(t, e.do(t, "GET", "/api/v1/topics/nope/config", ""), http.StatusNotFound, CodeNotFound)
}

func TestCreatePartitionsREST(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("orders", 2)
	rec := e.do(t, "POST", "/api/v1/topics/orders/partitions", `{"count":5}`)
	wantStatus(t, rec, http.StatusOK)
	got := jsonBody(t, rec)
	if got["partitions"] != json.Number("5") || len(got["partition_info"].([]any)) != 5 {
		t.Fatalf("after adding partitions = %v", got)
	}
	for name, body := range map[string]string{
		"lower":         `{"count":3}`,
		"same":          `{"count":5}`,
		"missing count": `{}`,
		"text count":    `{"count":"6"}`,
		"unknown field": `{"count":6,"add":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.do(t, "POST", "/api/v1/topics/orders/partitions", body), http.StatusBadRequest, CodeBadRequest)
		})
	}
	msg := wantError(t, e.do(t, "POST", "/api/v1/topics/orders/partitions", `{"count":3}`), http.StatusBadRequest, CodeBadRequest)["message"].(string)
	if !strings.Contains(msg, "only be raised") {
		t.Fatalf("lower-count message = %q", msg)
	}
	wantError(t, e.do(t, "POST", "/api/v1/topics/nope/partitions", `{"count":3}`), http.StatusNotFound, CodeNotFound)
}

// Creating a topic accepts the same Kafka-named keys under "config".
func TestCreateTopicWithKafkaConfigKeys(t *testing.T) {
	e := newEnv(t)
	rec := e.do(t, "POST", "/api/v1/topics", `{"name":"k","config":{"max.message.bytes":"2048","compression.type":"lz4","cleanup.policy":"delete"}}`)
	wantStatus(t, rec, http.StatusCreated)
	c := jsonBody(t, rec)["configs"].(map[string]any)
	if c["max.message.bytes"] != "2048" || c["compression.type"] != "lz4" {
		t.Fatalf("configs = %v", c)
	}
	wantError(t, e.do(t, "POST", "/api/v1/topics", `{"name":"k2","config":{"cleanup.policy":"compact"}}`), http.StatusBadRequest, CodeBadRequest)
	wantError(t, e.do(t, "POST", "/api/v1/topics", `{"name":"k3","config":{"max.message.bytes":true}}`), http.StatusBadRequest, CodeBadRequest)
}
