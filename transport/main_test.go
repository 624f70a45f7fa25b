package transport

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

type syncBuffer = testkit.SyncBuffer

type testEnv struct {
	srv    *HTTPServer
	agent  *fakeAgent
	reg    *prometheus.Registry
	errs   *prometheus.CounterVec
	logs   *syncBuffer
	handle http.Handler
}

func newEnv(t *testing.T, mod ...func(*HTTPConfig)) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	cfg := HTTPConfig{
		Addr:        "127.0.0.1:0",
		Gatherer:    reg,
		Registerer:  reg,
		Errors:      NewErrorsCounter(reg),
		Connections: NewActiveConnectionsGauge(reg),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	agent := newFakeAgent()
	srv := NewHTTPServer(cfg, agent, agent, agent, agent)
	return &testEnv{srv: srv, agent: agent, reg: reg, errs: cfg.Errors, logs: logs, handle: srv.Handler()}
}

// do sends one request through the full handler chain.
func (e *testEnv) do(t *testing.T, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.handle.ServeHTTP(rec, req)
	return rec
}

// jsonBody decodes a response body, keeping numbers exact.
func jsonBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json (body %q)", ct, rec.Body.String())
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("response is not a JSON object: %v (body %q)", err, rec.Body.String())
	}
	return m
}

// wantStatus fails unless rec has the status.
func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", rec.Code, status, rec.Body.String())
	}
}

// wantError checks an error response: status, code, a non-empty message,
// and nothing but "error" at the top level. It returns the error object.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	wantStatus(t, rec, status)
	m := jsonBody(t, rec)
	if len(m) != 1 {
		t.Fatalf("error body has keys %v, want only \"error\"", keys(m))
	}
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("error body %s has no error object", rec.Body.String())
	}
	if e["code"] != code {
		t.Fatalf("error code = %v, want %s (body %s)", e["code"], code, rec.Body.String())
	}
	if msg, _ := e["message"].(string); strings.TrimSpace(msg) == "" {
		t.Fatalf("error message is empty (body %s)", rec.Body.String())
	}
	return e
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// testutilCount reads streamhouse_errors_total{kind}.
func testutilCount(t *testing.T, e *testEnv, kind string) float64 {
	t.Helper()
	return testutil.ToFloat64(e.errs.WithLabelValues(kind))
}
