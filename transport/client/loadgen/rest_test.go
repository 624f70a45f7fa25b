package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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
