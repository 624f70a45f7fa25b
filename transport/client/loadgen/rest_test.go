package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

func TestRESTSendResendsWhileOverloaded(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/produce/batch" || r.Method != http.MethodPost {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if len(bodies) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"unavailable: the write was NOT applied and is safe to retry"}}`)
		}
	}))
	defer srv.Close()
	rest := REST{Client: srv.Client(), Servers: []string{"http://unused.invalid", srv.URL}}
	recs := []client.Record{client.Record{Value: []byte("ab"), Timestamp: 5}.ToPartition(2)}
	retries, err := rest.Send(context.Background(), 1, "t", recs)
	if err != nil || retries != 2 {
		t.Fatalf("retries %d, err %v; want 2, nil", retries, err)
	}
	want := `{"records":[{"partition":2,"timestamp":5,"value":"ab"}],"topic":"t"}`
	if bodies[2] != want {
		t.Fatalf("body %s, want %s", bodies[2], want)
	}
}

// Only the agent's own unavailable answer says the batch was not written: a
// 503 without it (a proxy that lost the connection to the agent) or a 500
// may come after the write, so the batch is not resent and the error says
// the outcome is unknown.
func TestRESTSendDoesNotResendAnUnknownOutcome(t *testing.T) {
	for name, answer := range map[string]struct {
		status int
		body   string
	}{
		"proxy 503":    {http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers"},
		"internal 500": {http.StatusInternalServerError, `{"error":{"code":"internal","message":"internal error"}}`},
		"timeout 504":  {http.StatusGatewayTimeout, `{"error":{"code":"outcome_unknown","message":"outcome unknown"}}`},
	} {
		t.Run(name, func(t *testing.T) {
			posts := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts++
				w.WriteHeader(answer.status)
				_, _ = io.WriteString(w, answer.body)
			}))
			defer srv.Close()
			rest := REST{Client: srv.Client(), Servers: []string{srv.URL}}
			recs := []client.Record{client.Record{Value: []byte("ab")}.ToPartition(0)}
			retries, err := rest.Send(context.Background(), 0, "t", recs)
			if err == nil || retries != 0 || posts != 1 {
				t.Fatalf("retries %d, posts %d, err %v; want one post and an error", retries, posts, err)
			}
			if !strings.Contains(err.Error(), "outcome unknown") {
				t.Fatalf("error %q does not say the outcome is unknown", err)
			}
		})
	}
}

func TestRESTFetchAsksTheConsumeEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := "topic=t&partition=3&offset=latest&max_records=10&wait_ms=1000"
		if r.URL.Path != "/api/v1/consume" || r.URL.RawQuery != want {
			t.Errorf("got %s?%s, want /api/v1/consume?%s", r.URL.Path, r.URL.RawQuery, want)
		}
		_, _ = io.WriteString(w, `{"records":[{"timestamp":7,"value":"x"},{"timestamp":8}],"next_offset":12,"high_watermark":20}`)
	}))
	defer srv.Close()
	rest := REST{Client: srv.Client(), Servers: []string{srv.URL}}
	r, err := rest.Fetch(context.Background(), client.FetchRequest{Topic: "t", Partition: 3, Offset: client.OffsetLatest, MaxRecords: 10, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Records) != 2 || r.Records[1].Timestamp != 8 || r.NextOffset != 12 || r.HighWatermark != 20 {
		t.Fatalf("got %+v", r)
	}
}
