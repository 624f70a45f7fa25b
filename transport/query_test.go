package transport

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestUnknownQueryParametersRejected: every route refuses a query
// parameter it does not take (a misspelt offset must not read from
// earliest), names it, and never reaches the handler.
func TestUnknownQueryParametersRejected(t *testing.T) {
	cases := []struct {
		method, target, body string
		names                string // what the message must mention
	}{
		{"GET", "/api/v1/consume?topic=t&ofset=2", "", `"ofset"`},
		{"GET", "/api/v1/consume?topic=t&offset=1&offset=2", "", "offset is given 2 times"},
		{"GET", "/api/v1/consume?topic=t&%zz", "", "malformed query string"},
		{"GET", "/api/v1/topics?verbose=1", "", `"verbose"`},
		{"GET", "/api/v1/topics/t?x=1", "", `"x"`},
		{"GET", "/api/v1/topics/t/partitions?x=1", "", "takes no query parameters"},
		{"POST", "/api/v1/topics?dry_run=true", `{"name":"u","partitions":1}`, `"dry_run"`},
		{"POST", "/api/v1/produce?acks=all", `{"topic":"t","value":"x"}`, `"acks"`},
		{"POST", "/api/v1/produce/batch?x=1", `{"topic":"t","records":[{"value":"x"}]}`, `"x"`},
		{"GET", "/api/v1/cluster?x=1", "", `"x"`},
		{"GET", "/api/v1/consumer-groups?x=1", "", `"x"`},
		{"GET", "/health?x=1", "", `"x"`},
		{"GET", "/ready?x=1", "", `"x"`},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			e := newEnv(t)
			e.agent.addTopic("t", 1)
			rec := e.do(t, tc.method, tc.target, tc.body)
			msg := wantError(t, rec, http.StatusBadRequest, CodeBadRequest)["message"].(string)
			if !strings.Contains(msg, tc.names) {
				t.Fatalf("message %q does not mention %s", msg, tc.names)
			}
			if n := len(e.agent.fetches); n != 0 {
				t.Fatalf("the handler ran: %d fetches", n)
			}
			if _, ok := e.agent.topics["u"]; ok {
				t.Fatal("the handler ran: topic u created")
			}
		})
	}

	e := newEnv(t)
	e.agent.addTopic("t", 1)
	msg := wantError(t, e.do(t, "GET", "/api/v1/consume?topic=t&ofset=2", ""), 400, CodeBadRequest)["message"].(string)
	for _, p := range queryParams["GET /api/v1/consume"] {
		if !strings.Contains(msg, p) {
			t.Errorf("message %q does not list the accepted parameter %s", msg, p)
		}
	}
	// The parameters the routes do take still work, and /metrics takes any
	// (scrape configs may add their own).
	wantStatus(t, e.do(t, "GET", "/api/v1/consume?topic=t&partition=0&offset=0&max_records=1&max_bytes=10&wait_ms=0&encoding=auto", ""), http.StatusOK)
	wantStatus(t, e.do(t, "GET", "/metrics?name[]=x", ""), http.StatusOK)
}

// TestErrorsClipEchoedInput: a 300-character name is not echoed whole, on
// REST (whatever built the message) and in the classified failure gRPC uses.
func TestErrorsClipEchoedInput(t *testing.T) {
	long := strings.Repeat("n", 300)
	e := newEnv(t)
	nameErr := fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, fsm.ValidateTopicName(long))
	e.agent.set(func(f *fakeAgent) { f.createErr = nameErr })
	for _, rec := range []*httptest.ResponseRecorder{
		e.do(t, "POST", "/api/v1/topics", `{"name":"`+long+`","partitions":1}`),
		e.do(t, "GET", "/api/v1/consume?topic=t&"+long+"=1", ""),
		e.do(t, "GET", "/"+long, ""),
	} {
		msg := jsonBody(t, rec)["error"].(map[string]any)["message"].(string)
		if strings.Contains(msg, long[:clipLen+1]) || !strings.Contains(msg, "nnn...") {
			t.Errorf("message echoes the name unclipped or not at all: %q", msg)
		}
	}
	f := Classify(OpRead, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, long))
	if _, msg := f.GRPC(); strings.Contains(msg, long[:clipLen+1]) || !strings.Contains(msg, `"`+long[:clipLen]+`..."`) {
		t.Errorf("gRPC message not clipped: %q", msg)
	}
	if got := clipQuoted(`a "é` + strings.Repeat("\\\"", 80) + `" b`); !strings.HasSuffix(got, `..." b`) {
		t.Errorf("escaped quotes: %q", got)
	}
}

// TestClientDisconnectIsNotAnError: a long-poll its client gave up is
// logged at debug, recorded as 499 and not counted in errors_total.
func TestClientDisconnectIsNotAnError(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	ctx, cancel := context.WithCancel(context.Background())
	e.agent.set(func(f *fakeAgent) {
		f.fetchHook = func(fctx context.Context, _ fsm.FetchRequest) (fsm.FetchResult, error) {
			cancel() // the client goes away during the wait
			<-fctx.Done()
			return fsm.FetchResult{}, fctx.Err()
		}
	})
	req := httptest.NewRequest("GET", "/api/v1/consume?topic=t&offset=0&wait_ms=30000", nil).WithContext(ctx)
	e.handle.ServeHTTP(httptest.NewRecorder(), req)

	for _, kind := range []string{CodeTimeout, CodeOutcomeUnknown, CodeInternal} {
		if got := testutilCount(t, e, kind); got != 0 {
			t.Errorf("errors_total{kind=%s} = %v after a client disconnect", kind, got)
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.Requests.WithLabelValues("GET /api/v1/consume", "499")); got != 1 {
		t.Errorf(`http_requests_total{code="499"} = %v, want 1`, got)
	}
	logs := e.logs.String()
	if strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("a client disconnect logged above debug:\n%s", logs)
	}
	if !strings.Contains(logs, "client went away") {
		t.Errorf("no debug line for the disconnect:\n%s", logs)
	}
}
