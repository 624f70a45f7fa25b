package transport

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestHealthLiveReady(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/health", "/live"} {
		rec := e.do(t, "GET", path, "")
		wantStatus(t, rec, http.StatusOK)
		if got := jsonBody(t, rec); !reflect.DeepEqual(got, map[string]any{"status": "ok"}) {
			t.Fatalf("%s body = %v", path, got)
		}
	}
	rec := e.do(t, "GET", "/ready", "")
	wantStatus(t, rec, http.StatusOK)
	if got := jsonBody(t, rec); !reflect.DeepEqual(got, map[string]any{"status": "ready"}) {
		t.Fatalf("/ready body = %v", got)
	}

	e.agent.set(func(f *fakeAgent) { f.ready, f.readyReason = false, "no raft leader yet" })
	rec = e.do(t, "GET", "/ready", "")
	wantStatus(t, rec, http.StatusServiceUnavailable)
	want := map[string]any{"status": "not_ready", "reason": "no raft leader yet"}
	if got := jsonBody(t, rec); !reflect.DeepEqual(got, want) {
		t.Fatalf("/ready body = %v, want %v", got, want)
	}
	// Liveness does not depend on readiness.
	wantStatus(t, e.do(t, "GET", "/live", ""), http.StatusOK)

	e.agent.set(func(f *fakeAgent) { f.readyReason = "" })
	if got := jsonBody(t, e.do(t, "GET", "/ready", ""))["reason"]; got == "" || got == nil {
		t.Fatalf("empty reason must be replaced by a human one, got %v", got)
	}
}

func TestCreateTopic(t *testing.T) {
	e := newEnv(t)
	rec := e.do(t, "POST", "/api/v1/topics", `{"name":"orders","partitions":3,"retention_ms":60000,
		"config":{"compression":"lz4","retention.bytes":"1048576"}}`)
	wantStatus(t, rec, http.StatusCreated)
	got := jsonBody(t, rec)
	want := map[string]any{
		"name": "orders", "id": json.Number("10"), "partitions": json.Number("3"),
		"retention_ms": json.Number("60000"), "retention_bytes": json.Number("1048576"),
		"compression": "lz4", "created_at": "2023-11-14T22:13:20.123Z",
		"configs": map[string]any{"cleanup.policy": "delete", "compression.type": "lz4", "max.message.bytes": "0",
			"retention.bytes": "1048576", "retention.ms": "60000"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("topic JSON = %v\nwant %v", got, want)
	}
	if loc := rec.Header().Get("Location"); loc != "/api/v1/topics/orders" {
		t.Fatalf("Location = %q", loc)
	}
	wantCall := createCall{"orders", 3, fsm.TopicConfig{RetentionMs: 60000, RetentionBytes: 1 << 20, Compression: "lz4"}}
	if e.agent.lastCreate != wantCall {
		t.Fatalf("CreateTopic called with %+v, want %+v", e.agent.lastCreate, wantCall)
	}

	// Partitions default to 1; an empty compression is shown as the default.
	rec = e.do(t, "POST", "/api/v1/topics", `{"name":"logs","config":{"retention.ms":5}}`)
	wantStatus(t, rec, http.StatusCreated)
	got = jsonBody(t, rec)
	if got["partitions"] != json.Number("1") || got["compression"] != "zstd" || got["retention_ms"] != json.Number("5") {
		t.Fatalf("defaults not applied: %v", got)
	}
	if e.agent.lastCreate.partitions != 1 {
		t.Fatalf("CreateTopic got %d partitions, want default 1", e.agent.lastCreate.partitions)
	}

	// Same name again: 409.
	wantError(t, e.do(t, "POST", "/api/v1/topics", `{"name":"orders","partitions":3}`), http.StatusConflict, CodeTopicExists)
}

func TestCreateTopicBadInput(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		code       string
		msgHas     string
	}{
		{"missing name", `{"partitions":2}`, 400, CodeBadRequest, "name"},
		{"empty name", `{"name":""}`, 400, CodeBadRequest, "name"},
		{"name not a string", `{"name":7}`, 400, CodeBadRequest, "name"},
		{"partitions not an integer", `{"name":"a","partitions":"3"}`, 400, CodeBadRequest, "partitions"},
		{"partitions fraction", `{"name":"a","partitions":1.5}`, 400, CodeBadRequest, "partitions"},
		{"zero partitions (agent rejects)", `{"name":"a","partitions":0}`, 400, CodeBadRequest, "partition"},
		{"unknown field", `{"name":"a","partitons":3}`, 400, CodeBadRequest, "partitons"},
		{"unknown config key", `{"name":"a","config":{"cleanup.policy":"compact"}}`, 400, CodeBadRequest, "cleanup.policy"},
		{"config not an object", `{"name":"a","config":[1]}`, 400, CodeBadRequest, "config"},
		{"config retention garbage", `{"name":"a","config":{"retention.ms":"soon"}}`, 400, CodeBadRequest, "retention.ms"},
		{"config compression number", `{"name":"a","config":{"compression":1}}`, 400, CodeBadRequest, "compression"},
		{"conflicting retention", `{"name":"a","retention_ms":1,"config":{"retention.ms":2}}`, 400, CodeBadRequest, "disagree"},
		{"malformed JSON", `{"name":"a",}`, 400, CodeBadRequest, "malformed"},
		{"trailing garbage", `{"name":"a"} x`, 400, CodeBadRequest, "after the JSON object"},
		{"empty body", ``, 400, CodeBadRequest, "empty"},
		{"array body", `[]`, 400, CodeBadRequest, "object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			errObj := wantError(t, e.do(t, "POST", "/api/v1/topics", tc.body), tc.status, tc.code)
			if msg := errObj["message"].(string); !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("message %q does not mention %q", msg, tc.msgHas)
			}
		})
	}
}

func TestListGetDeleteTopics(t *testing.T) {
	e := newEnv(t)
	rec := e.do(t, "GET", "/api/v1/topics", "")
	wantStatus(t, rec, http.StatusOK)
	if got := rec.Body.String(); strings.TrimSpace(got) != `{"topics":[]}` {
		t.Fatalf("empty list = %s, want an empty array (not null)", got)
	}

	e.agent.addTopic("b", 2)
	e.agent.addTopic("a", 1)
	got := jsonBody(t, e.do(t, "GET", "/api/v1/topics", ""))
	list := got["topics"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["name"] != "a" || list[1].(map[string]any)["name"] != "b" {
		t.Fatalf("topics = %v", list)
	}
	wantTopicKeys := []string{"compression", "configs", "created_at", "id", "name", "partitions", "retention_bytes", "retention_ms"}
	if k := keys(list[0].(map[string]any)); !sameKeys(k, wantTopicKeys) {
		t.Fatalf("topic keys = %v, want %v", k, wantTopicKeys)
	}

	// One topic with its partitions.
	e.agent.set(func(f *fakeAgent) { f.low["b"][1] = 0 })
	rec = e.do(t, "GET", "/api/v1/topics/b", "")
	wantStatus(t, rec, http.StatusOK)
	got = jsonBody(t, rec)
	if got["name"] != "b" || got["partitions"] != json.Number("2") {
		t.Fatalf("topic b = %v", got)
	}
	parts := got["partition_info"].([]any)
	if len(parts) != 2 || parts[1].(map[string]any)["partition"] != json.Number("1") {
		t.Fatalf("partition_info = %v", parts)
	}
	wantError(t, e.do(t, "GET", "/api/v1/topics/nope", ""), http.StatusNotFound, CodeNotFound)

	// Delete: 204 with no body, then 404.
	rec = e.do(t, "DELETE", "/api/v1/topics/b", "")
	wantStatus(t, rec, http.StatusNoContent)
	if rec.Body.Len() != 0 {
		t.Fatalf("204 with body %q", rec.Body.String())
	}
	wantError(t, e.do(t, "DELETE", "/api/v1/topics/b", ""), http.StatusNotFound, CodeNotFound)
}

func TestTopicPartitions(t *testing.T) {
	e := newEnv(t)
	e.partitionWithRange(t, 1, 3)
	rec := e.do(t, "GET", "/api/v1/topics/t/partitions", "")
	wantStatus(t, rec, http.StatusOK)
	var body struct {
		Partitions []map[string]any `json:"partitions"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Partitions) != 2 {
		t.Fatalf("partitions = %v", body.Partitions)
	}
	want := map[string]any{
		"partition": 1.0, "leader": "node-1", "leader_epoch": 2.0, "low_watermark": 1.0,
		"high_watermark": 3.0, "flushed_offset": 1.0, "segments": 1.0,
	}
	if !reflect.DeepEqual(body.Partitions[1], want) {
		t.Fatalf("partition 1 = %v\nwant %v", body.Partitions[1], want)
	}
	wantError(t, e.do(t, "GET", "/api/v1/topics/missing/partitions", ""), http.StatusNotFound, CodeNotFound)
}

func TestCreateTopicAgentErrors(t *testing.T) {
	e := newEnv(t)
	e.agent.set(func(f *fakeAgent) {
		f.createErr = errors.Join(errors.New("raft"), fsm.ErrUnavailable)
	})
	rec := e.do(t, "POST", "/api/v1/topics", `{"name":"x"}`)
	wantError(t, rec, http.StatusServiceUnavailable, CodeUnavailable)
	if rec.Header().Get("Retry-After") != "1" {
		t.Fatal("503 without Retry-After: 1")
	}
}

func sameKeys(got, want []string) bool {
	g := append([]string(nil), got...)
	w := append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	return reflect.DeepEqual(g, w)
}
