package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	streamhousev1 "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Below MIN_FREE_DISK_BYTES of free space in DATA_DIR the agent refuses
// produce as "not written, retry" (REST 503 with a JSON body, gRPC
// UNAVAILABLE), says why on /ready and exports the state as metrics. A
// threshold larger than any disk makes every filesystem "low".
func TestLowDiskRefusesProduceAndIsNotReady(t *testing.T) {
	a := newSoloAgent(t, "disk-1", t.TempDir(), "LOG_LEVEL=warn", "MIN_FREE_DISK_BYTES="+strconv.FormatInt(1<<60, 10))
	p := launch(t, nil, a.env, a.httpPort, a.logPath)
	p.waitReady(t, a.logPath, func(code int, body map[string]any) bool {
		return code == 200 || strings.Contains(body["reason"].(string), "MIN_FREE_DISK_BYTES")
	})
	defer p.kill(t)

	var ready map[string]any
	if code := call(t, "GET", p.base+"/ready", nil, &ready); code != 503 || !strings.Contains(ready["reason"].(string), "MIN_FREE_DISK_BYTES") {
		t.Fatalf("/ready = %d %v, want 503 naming MIN_FREE_DISK_BYTES", code, ready)
	}
	// Metadata still works: creating a topic writes almost nothing.
	createTopic(t, p.base, "d", 1)
	var apiErr struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	code := call(t, "POST", p.base+"/api/v1/produce", map[string]any{"topic": "d", "value": "x"}, &apiErr)
	if code != 503 || apiErr.Error.Code != "unavailable" || !strings.Contains(apiErr.Error.Message, "disk") {
		t.Fatalf("produce = %d %+v, want 503 unavailable naming the disk", code, apiErr)
	}
	if got := consumeAll(t, p.base, "d", 0); len(got) != 0 {
		t.Fatalf("a refused produce wrote %d records", len(got))
	}

	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(a.grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = streamhousev1.NewStreamHouseClient(conn).Produce(ctx, &streamhousev1.ProduceRequest{
		Topic: "d", Records: []*streamhousev1.ProduceRecord{{Value: []byte("x")}},
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC produce: %v, want UNAVAILABLE", err)
	}

	metrics := scrape(t, p.base)
	if v := metricValue(metrics, "streamhouse_disk_low"); v != 1 {
		t.Fatalf("streamhouse_disk_low = %v, want 1", v)
	}
	if v := metricValue(metrics, "streamhouse_disk_free_bytes"); v <= 0 {
		t.Fatalf("streamhouse_disk_free_bytes = %v", v)
	}
}
