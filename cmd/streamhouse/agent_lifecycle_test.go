package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/streamhouse/streamhouse/transport"
)

// An agent that served produce and fetch (REST, with pprof on) leaves no
// goroutine behind once Close returns: every component's goroutines end in
// Close, in the reverse order of their start.
func TestAgentCloseLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	c := testConfig(t, t.TempDir())
	c.PprofAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a, base := startTestAgent(t, c)
	createTopic(t, base, "t", 2)
	if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "t", "partition": 1, "value": "v"}, nil); code != 200 {
		t.Fatalf("produce = %d", code)
	}
	if got := consumeAll(t, base, "t", 1); len(got) != 1 {
		t.Fatalf("consumed %d records", len(got))
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(context.Background()); err != nil { // idempotent
		t.Fatal(err)
	}
	httpClient.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// The agent's own background loops — the API_KEYS_FILE watcher and the
// checkpoint loop retrying an unreachable Postgres — end in Close too.
func TestAgentCloseStopsBackgroundLoops(t *testing.T) {
	before := goleak.IgnoreCurrent()
	dir := t.TempDir()
	_, key := newKey(t, "ops", transport.ScopeAdmin)
	c := keyedConfig(t, dir, key)
	c.DatabaseURL = fmt.Sprintf("postgres://streamhouse@127.0.0.1:%d/streamhouse?sslmode=disable", freePort(t))
	a, _ := startTestAgent(t, c)
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	httpClient.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
