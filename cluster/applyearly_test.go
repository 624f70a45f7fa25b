package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestTwoStepApplyAnswers pins how a two-step answer (status line once the
// command is enqueued, outcome in the body) is read: sendApply returns
// after the first step, and the body's outcome keeps its class.
func TestTwoStepApplyAnswers(t *testing.T) {
	cmd := fsm.Encode(&fsm.DeleteTopic{Name: "t"})
	okBody, _ := EncodeResult(&fsm.Result{TopicID: 7})
	release := make(chan struct{})
	twoStep := func(body func(w http.ResponseWriter)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(applyEarlyHeader) == "" {
				t.Error("the forwarding agent did not ask for a two-step answer")
			}
			w.Header().Set(applyEnqueuedHeader, "1")
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			<-release // the first step is read before the outcome exists
			body(w)
		}
	}
	writeApplied := func(a appliedJSON) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) { _ = json.NewEncoder(w).Encode(a) }
	}
	handlers := map[string]http.HandlerFunc{
		"ok":          twoStep(writeApplied(appliedJSON{Index: 42, Result: okBody})),
		"not_applied": twoStep(writeApplied(appliedJSON{Error: "enqueue timeout", Outcome: outcomeNotApplied})),
		"lost":        twoStep(writeApplied(appliedJSON{Error: "leadership lost", Outcome: outcomeUnknown})),
		"no_outcome":  twoStep(writeApplied(appliedJSON{Error: "?"})),
		"garbage":     twoStep(func(w http.ResponseWriter) { _, _ = w.Write([]byte("{")) }),
		"hangup": twoStep(func(w http.ResponseWriter) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
		}),
	}
	want := map[string]error{"ok": nil, "not_applied": fsm.ErrUnavailable, "lost": fsm.ErrOutcomeUnknown,
		"no_outcome": fsm.ErrOutcomeUnknown, "garbage": fsm.ErrOutcomeUnknown, "hangup": fsm.ErrOutcomeUnknown}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			answer := sendApply(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"), "leader", cmd, 0, 0)
			release <- struct{}{} // sendApply returned before the body was written
			res, index, _, err := answer()
			if want[name] == nil {
				if err != nil || res.TopicID != 7 || index != 42 {
					t.Fatalf("got %+v at %d, %v", res, index, err)
				}
				return
			}
			if !errors.Is(err, want[name]) {
				t.Fatalf("got %v, want an error wrapping %v", err, want[name])
			}
		})
	}
}
