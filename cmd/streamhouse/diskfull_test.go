package main

import (
	"context"
	"os"
	"path/filepath"
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
	dir := t.TempDir()
	httpPort, grpcPort := freePort(t), freePort(t)
	env := []string{
		"HTTP_PORT=" + strconv.Itoa(httpPort), "GRPC_PORT=" + strconv.Itoa(grpcPort), "PEER_PORT=" + strconv.Itoa(freePort(t)),
		"GOSSIP_PORT=" + strconv.Itoa(freePort(t)), "BIND_ADDR=127.0.0.1", "DATA_DIR=" + dir, "NODE_ID=disk-1", "LOG_LEVEL=warn",
		"MIN_FREE_DISK_BYTES=" + strconv.FormatInt(1<<60, 10),
	}
	logPath := filepath.Join(t.TempDir(), "agent.log")
	t.Cleanup(func() { dumpLogOnFailure(t, logPath) })
	p := startProcUntil(t, env, httpPort, logPath, func(code int, body map[string]any) bool {
		return code == 200 || strings.Contains(body["reason"].(string), "MIN_FREE_DISK_BYTES")
	})
	defer p.kill(t)

	var ready map[string]any
	if code := call(t, "GET", p.base+"/ready", nil, &ready); code != 503 || !strings.Contains(ready["reason"].(string), "MIN_FREE_DISK_BYTES") {
		t.Fatalf("/ready = %d %v, want 503 naming MIN_FREE_DISK_BYTES", code, ready)
	}
	// Metadata still works: creating a topic writes almost nothing.
	if code := call(t, "POST", p.base+"/api/v1/topics", map[string]any{"name": "d", "partitions": 1}, nil); code != 201 {
		t.Fatalf("create topic: %d", code)
	}
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

	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// startProcUntil starts an agent process and waits until /ready answers
// something ok(code, body) accepts.
func startProcUntil(t *testing.T, env []string, httpPort int, logPath string, ok func(int, map[string]any) bool) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, nil, env, httpPort, logf)
	waitFor(t, 30*time.Second, "agent process serving", func() bool {
		select {
		case <-p.done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("agent exited early:\n%s", log)
		default:
		}
		body := map[string]any{"reason": ""}
		code, err := tryCall("GET", p.base+"/ready", nil, &body)
		if _, isStr := body["reason"].(string); !isStr {
			body["reason"] = ""
		}
		return err == nil && ok(code, body)
	})
	return p
}
