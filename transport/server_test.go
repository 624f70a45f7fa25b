package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/nope", "/api/v1/topics/a/b/c", "/api/v2/produce", "/api/v1/topics/"} {
		wantError(t, e.do(t, "GET", path, ""), http.StatusNotFound, CodeNotFound)
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/health", "GET, HEAD"},
		{"PUT", "/api/v1/topics", "GET, HEAD, POST"},
		{"GET", "/api/v1/produce", "POST"},
		{"POST", "/api/v1/topics/x", "DELETE, GET, HEAD"},
	} {
		rec := e.do(t, tc.method, tc.path, "")
		errObj := wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		if got := rec.Header().Get("Allow"); got != tc.allow {
			t.Fatalf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if !strings.Contains(errObj["message"].(string), tc.method) {
			t.Fatalf("405 message %q does not name the method", errObj["message"])
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("unmatched", "404")); got != 4 {
		t.Fatalf("requests_total{route=unmatched,code=404} = %v, want 4", got)
	}
	if got := testutilCount(t, e, CodeMethodNotAllowed); got != 4 {
		t.Fatalf("errors_total{kind=method_not_allowed} = %v, want 4", got)
	}
	// HEAD works wherever GET does.
	wantStatus(t, e.do(t, "HEAD", "/health", ""), http.StatusOK)
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *HTTPConfig) { c.MaxRequestBytes = 1024 })
	e.agent.addTopic("t", 1)
	big := `{"topic":"t","value":"` + strings.Repeat("x", 2000) + `"}`

	// Declared length over the limit.
	rec := e.do(t, "POST", "/api/v1/produce", big)
	errObj := wantError(t, rec, http.StatusRequestEntityTooLarge, CodeRequestTooLarge)
	if !strings.Contains(errObj["message"].(string), "1024") {
		t.Fatalf("413 message %q does not name the limit", errObj["message"])
	}
	// Unknown length (chunked): caught while reading.
	for _, path := range []string{"/api/v1/produce", "/api/v1/produce/batch", "/api/v1/topics"} {
		req := httptest.NewRequest("POST", path, strings.NewReader(big))
		req.ContentLength = -1
		rec = httptest.NewRecorder()
		e.handle.ServeHTTP(rec, req)
		wantError(t, rec, http.StatusRequestEntityTooLarge, CodeRequestTooLarge)
	}
	// Over the limit only because of trailing bytes after the object.
	req := httptest.NewRequest("POST", "/api/v1/produce", strings.NewReader(`{"topic":"t","value":"x"}`+strings.Repeat(" ", 2000)))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	e.handle.ServeHTTP(rec, req)
	wantError(t, rec, http.StatusRequestEntityTooLarge, CodeRequestTooLarge)

	if e.agent.produced() != nil {
		t.Fatal("an oversized body reached the producer")
	}
	if got := testutilCount(t, e, CodeRequestTooLarge); got != 5 {
		t.Fatalf("errors_total{kind=request_too_large} = %v, want 5", got)
	}
	// Just under the limit is fine.
	ok := `{"topic":"t","value":"` + strings.Repeat("y", 1000) + `"}`
	wantStatus(t, e.do(t, "POST", "/api/v1/produce", ok), http.StatusOK)

	// A large record limit raises the body limit so one maximal record,
	// base64-encoded, still fits.
	e2 := newEnv(t, func(c *HTTPConfig) { c.MaxRequestBytes = 1024; c.MaxRecordBytes = 8 << 10 })
	e2.agent.addTopic("t", 1)
	wantStatus(t, e2.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"`+strings.Repeat("z", 12<<10)+`"}`), http.StatusOK)
	if e2.srv.bodyLimit != 2*(8<<10)+recordBodyOverhead {
		t.Fatalf("body limit = %d", e2.srv.bodyLimit)
	}
	if e3 := newEnv(t); e3.srv.bodyLimit != DefaultMaxRequestBytes {
		t.Fatalf("default body limit = %d, want %d", e3.srv.bodyLimit, DefaultMaxRequestBytes)
	}
}

// A panic in a write handler may come after the write was proposed: the
// client is told the outcome is unknown (invariant 5), not "internal".
func TestPanicInWriteIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	e.agent.set(func(f *fakeAgent) { f.panicWrite = true })
	rec := e.do(t, "POST", "/api/v1/topics", `{"name":"t","partitions":1}`)
	errObj := wantError(t, rec, http.StatusGatewayTimeout, CodeOutcomeUnknown)
	if strings.Contains(errObj["message"].(string), "exploded") {
		t.Fatalf("panic value leaked to the client: %v", errObj["message"])
	}
	if logs := e.logs.String(); !strings.Contains(logs, "panic in REST handler") || !strings.Contains(logs, "create topic exploded") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("POST /api/v1/topics", "504")); got != 1 {
		t.Fatalf("requests_total for the panicking write = %v, want 1", got)
	}
	e.agent.set(func(f *fakeAgent) { f.panicWrite = false })
	if rec := e.do(t, "POST", "/api/v1/topics", `{"name":"t","partitions":1}`); rec.Code/100 != 2 {
		t.Fatalf("after the panic: %d %s", rec.Code, rec.Body)
	}
}

func TestRecoverMiddleware(t *testing.T) {
	e := newEnv(t)
	e.agent.set(func(f *fakeAgent) { f.panicList = true })
	rec := e.do(t, "GET", "/api/v1/topics", "")
	errObj := wantError(t, rec, http.StatusInternalServerError, CodeInternal)
	if strings.Contains(errObj["message"].(string), "exploded") {
		t.Fatalf("panic value leaked to the client: %v", errObj["message"])
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "panic in REST handler") || !strings.Contains(logs, "list topics exploded") || !strings.Contains(logs, "level=ERROR") {
		t.Fatalf("panic not logged at ERROR with its value:\n%s", logs)
	}
	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("GET /api/v1/topics", "500")); got != 1 {
		t.Fatalf("requests_total for the panicking request = %v, want 1", got)
	}
	if got := testutilCount(t, e, CodeInternal); got != 1 {
		t.Fatalf("errors_total{kind=internal} = %v, want 1", got)
	}
	// The server keeps serving.
	e.agent.set(func(f *fakeAgent) { f.panicList = false })
	wantStatus(t, e.do(t, "GET", "/api/v1/topics", ""), http.StatusOK)
}

func TestMetricsEndpointAndRequestMetrics(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	wantStatus(t, e.do(t, "GET", "/health", ""), http.StatusOK)
	wantStatus(t, e.do(t, "GET", "/health", ""), http.StatusOK)
	wantError(t, e.do(t, "GET", "/api/v1/topics/zz", ""), http.StatusNotFound, CodeNotFound)

	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("GET /health", "200")); got != 2 {
		t.Fatalf("requests_total{GET /health,200} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("GET /api/v1/topics/{name}", "404")); got != 1 {
		t.Fatalf("requests_total{GET /api/v1/topics/{name},404} = %v, want 1", got)
	}
	rec := e.do(t, "GET", "/metrics", "")
	wantStatus(t, rec, http.StatusOK)
	body := rec.Body.String()
	for _, want := range []string{
		`streamhouse_http_requests_total{code="200",route="GET /health"} 2`,
		`streamhouse_http_request_duration_seconds_count{route="GET /health"} 2`,
		`streamhouse_errors_total{kind="not_found"} 1`,
		`streamhouse_active_connections 0`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
	// A nil Gatherer serves an empty exposition rather than a global one.
	e2 := newEnv(t, func(c *HTTPConfig) { c.Gatherer = nil })
	rec = e2.do(t, "GET", "/metrics", "")
	wantStatus(t, rec, http.StatusOK)
	if strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatal("nil Gatherer fell back to the global registry")
	}
}

// startEnv starts a real listener on 127.0.0.1:0 and shuts it down at the
// end of the test.
func startEnv(t *testing.T, mod ...func(*HTTPConfig)) (*testEnv, *http.Client) {
	t.Helper()
	e := newEnv(t, mod...)
	if err := e.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e, &http.Client{Transport: tr}
}

func TestActiveConnectionsGauge(t *testing.T) {
	e, _ := startEnv(t)
	gauge := func() float64 { return testutil.ToFloat64(e.srv.cfg.Connections) }
	if gauge() != 0 {
		t.Fatalf("gauge = %v before any connection", gauge())
	}
	c1, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	waitFor(t, 10*time.Second, "gauge to reach 1", func() bool { return gauge() == 1 })

	// Serve a request on it; the kept-alive connection still counts.
	if _, err := io.WriteString(c1, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c1), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health over the raw connection: %d", resp.StatusCode)
	}
	c2, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	waitFor(t, 10*time.Second, "gauge to reach 2", func() bool { return gauge() == 2 })
	if gauge() != 2 {
		t.Fatalf("gauge = %v with two open connections", gauge())
	}

	c1.Close()
	waitFor(t, 10*time.Second, "gauge to drop to 1", func() bool { return gauge() == 1 })
	c2.Close()
	waitFor(t, 10*time.Second, "gauge to drop to 0", func() bool { return gauge() == 0 })
}

func TestRealListenerRoundTrip(t *testing.T) {
	e, client := startEnv(t)
	base := "http://" + e.srv.Addr()
	resp, err := client.Post(base+"/api/v1/topics", "application/json", strings.NewReader(`{"name":"t","partitions":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create topic over TCP: %d", resp.StatusCode)
	}
	resp, err = client.Post(base+"/api/v1/produce", "application/json", strings.NewReader(`{"topic":"t","value":"v","partition":1}`))
	if err != nil {
		t.Fatal(err)
	}
	var off struct{ Partition, Offset int64 }
	err = json.NewDecoder(resp.Body).Decode(&off)
	resp.Body.Close()
	if err != nil || off.Partition != 1 || off.Offset != 0 {
		t.Fatalf("produce over TCP: %+v %v", off, err)
	}
	// A body over the limit over a real connection (no Content-Length).
	e2, client2 := startEnv(t, func(c *HTTPConfig) { c.MaxRequestBytes = 512 })
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, `{"topic":"t","value":"`+strings.Repeat("x", 4096)+`"}`)
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+e2.srv.Addr()+"/api/v1/produce", pr)
	resp, err = client2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized chunked body: %d", resp.StatusCode)
	}
}

func TestStartReportsPortInUse(t *testing.T) {
	e1, _ := startEnv(t)
	e2 := newEnv(t, func(c *HTTPConfig) { c.Addr = e1.srv.Addr() })
	err := e2.srv.Start(context.Background())
	if err == nil {
		_ = e2.srv.Shutdown(context.Background())
		t.Fatal("Start on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), e1.srv.Addr()) {
		t.Fatalf("error %q does not name the address", err)
	}
	if err := e2.srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after a failed Start: %v", err)
	}
}

func TestStartShutdownLifecycle(t *testing.T) {
	e := newEnv(t)
	if got := e.srv.Addr(); got != "127.0.0.1:0" {
		t.Fatalf("Addr before Start = %q", got)
	}
	if err := e.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := e.srv.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "0" || port == "" {
		t.Fatalf("Addr after Start = %q, want the bound port", addr)
	}
	if err := e.srv.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- e.srv.Shutdown(ctx) }()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("concurrent Shutdown: %v", err)
		}
	}
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("third Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
	if err := e.srv.Start(context.Background()); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}

	// Shutdown without Start is fine and makes the server unstartable.
	e2 := newEnv(t)
	if err := e2.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e2.srv.Start(context.Background()); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}

func TestShutdownEndsLongPoll(t *testing.T) {
	e, client := startEnv(t)
	e.agent.addTopic("t", 1)
	entered := make(chan struct{})
	e.agent.set(func(f *fakeAgent) {
		f.fetchHook = func(ctx context.Context, _ fsm.FetchRequest) (fsm.FetchResult, error) {
			close(entered)
			<-ctx.Done()
			return fsm.FetchResult{}, ctx.Err()
		}
	})
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Get("http://" + e.srv.Addr() + "/api/v1/consume?topic=t&offset=0&wait_ms=600000")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("long poll never reached the fetcher")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown did not drain the long poll: %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"code":"unavailable"`) || !strings.Contains(r.body, "shutting down") {
		t.Fatalf("long poll during shutdown: %d %s", r.status, r.body)
	}
}

func TestTLSSeam(t *testing.T) {
	// Borrow httptest's self-signed certificate (valid for 127.0.0.1) and a
	// client that trusts it.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	cert := ts.TLS.Certificates[0]
	client := ts.Client()
	ts.Close()
	defer client.CloseIdleConnections()

	noCert := newEnv(t, func(c *HTTPConfig) { c.TLSConfig = &tls.Config{} })
	if err := noCert.srv.Start(context.Background()); err == nil {
		_ = noCert.srv.Shutdown(context.Background())
		t.Fatal("Start with a TLS config without certificate succeeded")
	}
	_ = noCert.srv.Shutdown(context.Background())

	e, _ := startEnv(t, func(c *HTTPConfig) { c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} })
	resp, err := client.Get("https://" + e.srv.Addr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET /health over TLS: %d tls=%v", resp.StatusCode, resp.TLS != nil)
	}
}

func TestNewHTTPServerNeedsDependencies(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("nil dependency accepted")
		}
	}()
	a := newFakeAgent()
	NewHTTPServer(HTTPConfig{}, a, nil, a, a)
}

func ExampleNewErrorsCounter() {
	errs := NewErrorsCounter(nil)
	errs.WithLabelValues(CodeUnavailable).Inc()
	fmt.Println(testutil.ToFloat64(errs.WithLabelValues(CodeUnavailable)))
	// Output: 1
}
