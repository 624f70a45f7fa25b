package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	streamhousev1 "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// produceToEvery writes one record to each of the topic's partitions in one
// request.
func produceToEvery(t *testing.T, base, topic string, parts int) {
	t.Helper()
	recs := make([]map[string]any, parts)
	for i := range recs {
		recs[i] = map[string]any{"partition": i, "value": "v"}
	}
	var out struct {
		batchResp
		apiError
	}
	if code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": topic, "records": recs}, &out); code != 200 || len(out.Offsets) != parts {
		t.Fatalf("produce to %d partitions of %s: %d (%d offsets) %+v", parts, topic, code, len(out.Offsets), out.Error)
	}
}

// createProduceDelete is one create/produce/delete cycle.
func createProduceDelete(t *testing.T, base, topic string, parts int) {
	t.Helper()
	createTopic(t, base, topic, parts)
	produceToEvery(t, base, topic, parts)
	if code := call(t, "DELETE", base+"/api/v1/topics/"+topic, nil, nil); code != 204 {
		t.Fatalf("delete %s: %d", topic, code)
	}
}

// liveBytes is the heap and stack memory in use after a collection.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// After create/produce/delete cycles over many partitions the agent's
// goroutine count (its own go_goroutines metric) returns to the baseline
// and its heap and stacks do not keep the partitions' resources.
func TestAgentReleasesPartitionResourcesAfterDelete(t *testing.T) {
	c := testConfig(t, t.TempDir())
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	goroutines := func() float64 { return metricValue(scrape(t, base), "go_goroutines") }

	createProduceDelete(t, base, "warmup", 10) // connections, pools, first-use allocations
	baseline := goroutines()
	baseMem := liveBytes()
	const parts, cycles = 1000, 3
	for i := 0; i < cycles; i++ {
		createProduceDelete(t, base, fmt.Sprintf("cycle-%d", i), parts)
		waitFor(t, 20*time.Second, fmt.Sprintf("goroutines back to the baseline %v after cycle %d", baseline, i),
			func() bool { return goroutines() <= baseline+20 })
	}
	grown := int64(liveBytes()) - int64(baseMem)
	if grown > 16<<20 {
		t.Fatalf("heap+stack grew by %d MiB over %d cycles of %d partitions", grown>>20, cycles, parts)
	}
	t.Logf("heap+stack after %d cycles of %d partitions: %+d KiB", cycles, parts, grown>>10)
}

// MAX_TOPICS, MAX_PARTITIONS and MAX_GROUPS refuse creations past the
// cluster-wide totals: REST 409 limit_exceeded (JSON), gRPC
// RESOURCE_EXHAUSTED; deleting a topic frees its share.
func TestClusterLimitsRefuseWithClearErrors(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.MaxTopics, c.MaxPartitions, c.MaxGroups = 2, 5, 1
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	create := func(name string, parts int, want int) apiError {
		t.Helper()
		var e apiError
		if code := call(t, "POST", base+"/api/v1/topics", map[string]any{"name": name, "partitions": parts}, &e); code != want {
			t.Fatalf("create %s (%d partitions) = %d, want %d (%+v)", name, parts, code, want, e)
		}
		return e
	}
	create("a", 2, 201)
	e := create("b", 4, 409)
	if e.Error.Code != "limit_exceeded" || !strings.Contains(e.Error.Message, "MAX_PARTITIONS") {
		t.Fatalf("partition limit error = %+v", e.Error)
	}
	create("b", 3, 201)
	e = create("c", 1, 409)
	if e.Error.Code != "limit_exceeded" || !strings.Contains(e.Error.Message, "MAX_TOPICS") {
		t.Fatalf("topic limit error = %+v", e.Error)
	}

	conn, err := grpc.NewClient(a.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = streamhousev1.NewStreamHouseClient(conn).CreateTopic(ctx, &streamhousev1.CreateTopicRequest{Name: "c"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MAX_TOPICS") {
		t.Fatalf("gRPC CreateTopic past MAX_TOPICS: %v", err)
	}

	if code := call(t, "DELETE", base+"/api/v1/topics/a", nil, nil); code != 204 {
		t.Fatalf("delete a: %d", code)
	}
	create("c", 2, 201)

	commit := func(group string, want int) apiError {
		t.Helper()
		var e apiError
		if code := call(t, "POST", base+"/api/v1/consumer-groups/"+group+"/commit", map[string]any{"topic": "c", "partition": 0, "offset": 0}, &e); code != want {
			t.Fatalf("commit %s = %d, want %d (%+v)", group, code, want, e)
		}
		return e
	}
	commit("g1", 200)
	commit("g1", 200)
	if e := commit("g2", 409); e.Error.Code != "limit_exceeded" || !strings.Contains(e.Error.Message, "MAX_GROUPS") {
		t.Fatalf("group limit error = %+v", e.Error)
	}
}

// By default /metrics carries per-topic aggregates, not per-partition
// series: a topic with thousands of partitions adds a few lines.
func TestMetricsStayBoundedWithManyPartitions(t *testing.T) {
	c := testConfig(t, t.TempDir())
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	commitAll := func(topic string, parts int) {
		t.Helper()
		offs := make([]map[string]any, parts)
		for i := range offs {
			offs[i] = map[string]any{"topic": topic, "partition": i, "offset": 0}
		}
		if code := call(t, "POST", base+"/api/v1/consumer-groups/g/commit", map[string]any{"offsets": offs}, nil); code != 200 {
			t.Fatalf("commit %s: %d", topic, code)
		}
	}
	call(t, "POST", base+"/api/v1/topics", map[string]any{"name": "small", "partitions": 4}, nil)
	commitAll("small", 4)
	before := len(scrape(t, base))
	const parts = 5000
	createTopic(t, base, "big", parts)
	commitAll("big", parts)
	text := scrape(t, base)
	if grown := len(text) - before; grown > 8<<10 {
		t.Fatalf("/metrics grew by %d bytes for one topic of %d partitions", grown, parts)
	}
	for _, want := range []string{`streamhouse_topic_partitions{topic="big"} 5000`, `streamhouse_consumer_group_topic_lag{group="g",topic="big"} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
