package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// groupBody is a consumer group as GET /api/v1/consumer-groups/{group} and
// `streamhouse group describe -o json` show it.
type groupBody struct {
	Group      string `json:"group"`
	TotalLag   int64  `json:"total_lag"`
	Partitions []struct {
		Topic         string `json:"topic"`
		Partition     int32  `json:"partition"`
		Offset        int64  `json:"offset"`
		HighWatermark int64  `json:"high_watermark"`
		Lag           int64  `json:"lag"`
	} `json:"partitions"`
}

// TestConsumerGroupsOverREST drives every consumer-group endpoint against a
// real agent: commits replicated through Raft, lag against the high
// watermark, the four reset strategies, and the errors for bad input.
func TestConsumerGroupsOverREST(t *testing.T) {
	c := testConfig(t, t.TempDir())
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	createTopic(t, base, "events", 2)
	t0 := time.Now().UnixMilli()
	for i := 0; i < 10; i++ {
		rec := map[string]any{"topic": "events", "partition": 0, "value": fmt.Sprint(i), "timestamp": t0 + int64(i)*1000}
		if code := call(t, "POST", base+"/api/v1/produce", rec, nil); code != 200 {
			t.Fatalf("produce = %d", code)
		}
	}
	g := base + "/api/v1/consumer-groups/billing"
	if code := call(t, "POST", g+"/commit", map[string]any{"topic": "events", "partition": 0, "offset": 4}, nil); code != 200 {
		t.Fatalf("commit = %d", code)
	}
	var d groupBody
	if code := call(t, "GET", g, nil, &d); code != 200 {
		t.Fatalf("describe = %d", code)
	}
	if d.Group != "billing" || len(d.Partitions) != 1 || d.Partitions[0].Offset != 4 || d.Partitions[0].HighWatermark != 10 || d.Partitions[0].Lag != 6 || d.TotalLag != 6 {
		t.Fatalf("describe = %+v", d)
	}

	// Bad commits: past the high watermark, unknown topic/partition, missing fields.
	for name, tc := range map[string]struct {
		body any
		code int
	}{
		"past high watermark": {map[string]any{"topic": "events", "partition": 0, "offset": 11}, 400},
		"negative offset":     {map[string]any{"topic": "events", "partition": 0, "offset": -1}, 400},
		"unknown topic":       {map[string]any{"topic": "nope", "partition": 0, "offset": 0}, 404},
		"unknown partition":   {map[string]any{"topic": "events", "partition": 7, "offset": 0}, 404},
		"missing offset":      {map[string]any{"topic": "events", "partition": 0}, 400},
		"unknown field":       {map[string]any{"topic": "events", "partition": 0, "offset": 1, "ofset": 2}, 400},
		"empty":               {map[string]any{}, 400},
		"atomic batch":        {map[string]any{"offsets": []any{map[string]any{"topic": "events", "partition": 1, "offset": 0}, map[string]any{"topic": "events", "partition": 0, "offset": 99}}}, 400},
	} {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if code := call(t, "POST", g+"/commit", tc.body, &e); code != tc.code || e.Error.Message == "" {
			t.Errorf("%s: status %d (want %d), error %+v", name, code, tc.code, e.Error)
		}
	}
	call(t, "GET", g, nil, &d)
	if len(d.Partitions) != 1 || d.Partitions[0].Offset != 4 {
		t.Fatalf("a rejected commit changed the group: %+v", d)
	}

	// Resets.
	for _, tc := range []struct {
		body map[string]any
		want int64
	}{
		{map[string]any{"strategy": "latest", "topic": "events", "partitions": []int{0}}, 10},
		{map[string]any{"strategy": "earliest", "topic": "events", "partitions": []int{0}}, 0},
		{map[string]any{"strategy": "offset", "topic": "events", "partitions": []int{0}, "offset": 7}, 7},
		{map[string]any{"strategy": "offset", "topic": "events", "partitions": []int{0}, "offset": 500}, 10}, // clamped
		{map[string]any{"strategy": "timestamp", "topic": "events", "partitions": []int{0}, "timestamp": t0 + 3500}, 4},
	} {
		if code := call(t, "POST", g+"/reset", tc.body, &d); code != 200 {
			t.Fatalf("reset %v = %d", tc.body, code)
		}
		if d.Partitions[0].Offset != tc.want {
			t.Fatalf("reset %v: offset %d, want %d", tc.body, d.Partitions[0].Offset, tc.want)
		}
	}
	// Reset without partitions covers all of the topic's partitions.
	if code := call(t, "POST", g+"/reset", map[string]any{"strategy": "earliest", "topic": "events"}, &d); code != 200 || len(d.Partitions) != 2 {
		t.Fatalf("reset all = %d, %+v", code, d)
	}
	for _, body := range []map[string]any{
		{"strategy": "sideways", "topic": "events"},
		{"strategy": "offset", "topic": "events"},
		{"topic": "events"},
		{"strategy": "latest"},
	} {
		if code := call(t, "POST", g+"/reset", body, nil); code != 400 {
			t.Errorf("reset %v = %d, want 400", body, code)
		}
	}

	var list struct {
		Groups []struct {
			Group      string   `json:"group"`
			Topics     []string `json:"topics"`
			Partitions int      `json:"partitions"`
			TotalLag   int64    `json:"total_lag"`
		} `json:"groups"`
	}
	if code := call(t, "GET", base+"/api/v1/consumer-groups", nil, &list); code != 200 || len(list.Groups) != 1 ||
		list.Groups[0].Group != "billing" || list.Groups[0].Partitions != 2 || list.Groups[0].TotalLag != 10 {
		t.Fatalf("list = %+v", list)
	}
	if code := call(t, "DELETE", g, nil, nil); code != 204 {
		t.Fatalf("delete = %d", code)
	}
	if code := call(t, "GET", g, nil, nil); code != 404 {
		t.Fatalf("describe deleted = %d", code)
	}
	if code := call(t, "DELETE", g, nil, nil); code != 404 {
		t.Fatalf("delete twice = %d", code)
	}
}
