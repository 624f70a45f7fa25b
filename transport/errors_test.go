package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestErrorMapping(t *testing.T) {
	oor := &fsm.OffsetOutOfRangeError{Requested: 50, LowWatermark: 10, HighWatermark: 20}
	cases := []struct {
		name       string
		err        error
		write      bool // via produce (write) or consume (read)
		status     int
		code       string
		msgHas     string
		retryAfter bool
	}{
		{"invalid argument", fmt.Errorf("%w: partition 9 does not exist", fsm.ErrInvalidArgument), true, 400, CodeBadRequest, "partition 9", false},
		{"invalid command", fmt.Errorf("%w: bad", fsm.ErrInvalidCommand), true, 400, CodeBadRequest, "bad", false},
		{"topic not found", fmt.Errorf("%w: \"x\"", fsm.ErrTopicNotFound), true, 404, CodeNotFound, "topic not found", false},
		{"partition invalid", fsm.ErrPartitionInvalid, false, 404, CodeNotFound, "partition", false},
		{"topic exists", fsm.ErrTopicExists, true, 409, CodeTopicExists, "exists", false},
		{"limit exceeded", fmt.Errorf("%w: the limit (MAX_TOPICS) is 2", fsm.ErrLimitExceeded), true, 409, CodeLimitExceeded, "MAX_TOPICS", false},
		{"quota exceeded", fmt.Errorf("produce: %w", &QuotaError{Key: "k", Quota: QuotaProduce, Rate: 10, RetryAfter: 900 * time.Millisecond}), true, 429, CodeQuotaExceeded, "producer_byte_rate", true},
		{"record too large", fmt.Errorf("%w: record 0 is 9 bytes, the limit is 5", fsm.ErrRecordTooLarge), true, 413, CodeRecordTooLarge, "limit is 5", false},
		{"offset out of range", fmt.Errorf("read: %w", oor), false, 416, CodeOffsetOutOfRange, "10", false},
		{"unavailable write", fmt.Errorf("%w: %w: partition 0 is led by n2", fsm.ErrUnavailable, fsm.ErrNotLeader), true, 503, CodeUnavailable, "NOT applied", true},
		{"unavailable read", fsm.ErrUnavailable, false, 503, CodeUnavailable, "safe to retry", true},
		{"not leader alone", fsm.ErrNotLeader, true, 503, CodeUnavailable, "NOT applied", true},
		{"outcome unknown", fmt.Errorf("%w: leadership lost after enqueue", fsm.ErrOutcomeUnknown), true, 504, CodeOutcomeUnknown, "may or may not", false},
		{"outcome unknown wins", fmt.Errorf("%w: %w", fsm.ErrOutcomeUnknown, fsm.ErrUnavailable), true, 504, CodeOutcomeUnknown, "may or may not", false},
		{"deadline on write", fmt.Errorf("waiting for commit: %w", context.DeadlineExceeded), true, 504, CodeOutcomeUnknown, "may or may not", false},
		{"canceled on write", context.Canceled, true, 504, CodeOutcomeUnknown, "may or may not", false},
		{"deadline on read", context.DeadlineExceeded, false, 504, CodeTimeout, "timed out", false},
		// A produce that failed in an unclassified way may have been
		// proposed: never "internal" (which a client takes for not written).
		{"unknown error write", errors.New("disk on fire at /secret/path"), true, 504, CodeOutcomeUnknown, "may or may not", false},
		{"unknown error read", errors.New("boom"), false, 500, CodeInternal, "internal", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.agent.addTopic("t", 1)
			var rec *httptest.ResponseRecorder
			if tc.write {
				e.agent.set(func(f *fakeAgent) { f.produceErr = tc.err })
				rec = e.do(t, "POST", "/api/v1/produce", `{"topic":"t","value":"x"}`)
			} else {
				e.agent.set(func(f *fakeAgent) { f.fetchErr = tc.err })
				rec = e.do(t, "GET", "/api/v1/consume?topic=t&offset=0", "")
			}
			errObj := wantError(t, rec, tc.status, tc.code)
			msg := errObj["message"].(string)
			if !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("message %q does not mention %q", msg, tc.msgHas)
			}
			if got := rec.Header().Get("Retry-After"); (got == "1") != tc.retryAfter {
				t.Fatalf("Retry-After = %q, want set=%v", got, tc.retryAfter)
			}
			if got := testutilCount(t, e, tc.code); got != 1 {
				t.Fatalf("errors_total{kind=%s} = %v, want 1", tc.code, got)
			}
			if tc.code == CodeOffsetOutOfRange {
				if errObj["low_watermark"] == nil || errObj["high_watermark"] == nil {
					t.Fatalf("416 without watermarks: %v", errObj)
				}
				if !strings.Contains(msg, "20") {
					t.Fatalf("416 message %q does not name the high watermark", msg)
				}
			} else if _, ok := errObj["low_watermark"]; ok {
				t.Fatalf("watermarks on a %s error: %v", tc.code, errObj)
			}
			if strings.Contains(msg, "/secret/path") {
				t.Fatalf("internal error detail leaked to the client: %q", msg)
			}
			if strings.Contains(tc.err.Error(), "/secret/path") && !strings.Contains(e.logs.String(), "/secret/path") {
				t.Fatalf("error not logged:\n%s", e.logs.String())
			}
			if tc.code == CodeInternal {
				if strings.Contains(msg, "/secret/path") {
					t.Fatalf("internal error detail leaked to the client: %q", msg)
				}
				if !strings.Contains(e.logs.String(), "level=ERROR") {
					t.Fatalf("internal error not logged at ERROR:\n%s", e.logs.String())
				}
			}
		})
	}
}

func TestErrorsCounterByKind(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	for range 3 {
		wantError(t, e.do(t, "GET", "/api/v1/topics/none", ""), http.StatusNotFound, CodeNotFound)
	}
	wantError(t, e.do(t, "POST", "/api/v1/topics", `{"name":"t"}`), http.StatusConflict, CodeTopicExists)
	wantError(t, e.do(t, "GET", "/no/such/route", ""), http.StatusNotFound, CodeNotFound)
	for kind, want := range map[string]float64{CodeNotFound: 4, CodeTopicExists: 1, CodeBadRequest: 0} {
		if got := testutilCount(t, e, kind); got != want {
			t.Fatalf("errors_total{kind=%s} = %v, want %v", kind, got, want)
		}
	}
	// A nil counter is allowed.
	e2 := newEnv(t, func(c *HTTPConfig) { c.Errors = nil })
	wantError(t, e2.do(t, "GET", "/api/v1/topics/none", ""), http.StatusNotFound, CodeNotFound)
}

// TestErrorsCounterIsTheGivenOne: the server counts into the counter it
// was given (the agent's one streamhouse_errors_total), registered once.
func TestErrorsCounterIsTheGivenOne(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.do(t, "GET", "/api/v1/topics/none", ""), http.StatusNotFound, CodeNotFound)
	// One series per error code (all exported from the start), not two
	// counters.
	if n, err := testutil.GatherAndCount(e.reg, "streamhouse_errors_total"); err != nil || n != len(errorKinds) {
		t.Fatalf("streamhouse_errors_total series = %d, %v; want %d", n, err, len(errorKinds))
	}
	if got := testutil.ToFloat64(e.errs.WithLabelValues(CodeNotFound)); got != 1 {
		t.Fatalf("errors_total{kind=not_found} = %v, want 1", got)
	}
}

// TestErrorsCounterStartsAtZero: every error code of the table, and the
// extra kinds given, exist at 0 before the first error.
func TestErrorsCounterStartsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewErrorsCounter(reg, "segment_upload")
	var want strings.Builder
	want.WriteString("# HELP streamhouse_errors_total Error responses returned to clients, by kind (the API error code), and background failures by kind.\n# TYPE streamhouse_errors_total counter\n")
	kinds := []string{"segment_upload"}
	for _, k := range errorKinds {
		kinds = append(kinds, k.Code)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&want, "streamhouse_errors_total{kind=%q} 0\n", k)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "streamhouse_errors_total"); err != nil {
		t.Fatal(err)
	}
}
