package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// The shared test helpers, under the names this package's tests use.
var waitFor = testkit.WaitFor

var sameIDs = testkit.SameIDs

var httpClient = &http.Client{Timeout: 60 * time.Second}

// call does one JSON request and decodes the JSON answer into out (if
// non-nil). It returns the status code.
func call(t testing.TB, method, url string, body any, out any) int {
	t.Helper()
	code, err := doCall(method, url, body, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return code
}

// createTopic creates a topic through the REST API at base, failing the
// test unless the agent answers 201.
func createTopic[N int | int32](t testing.TB, base, name string, partitions N) {
	t.Helper()
	if code := call(t, "POST", base+"/api/v1/topics", map[string]any{"name": name, "partitions": partitions}, nil); code != 201 {
		t.Fatalf("create topic %s: status %d", name, code)
	}
}

func doCall(method, url string, body any, out any) (int, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		p, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(p)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %q: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

type apiError struct {
	Error struct {
		Code          string `json:"code"`
		Message       string `json:"message"`
		LowWatermark  *int64 `json:"low_watermark"`
		HighWatermark *int64 `json:"high_watermark"`
	} `json:"error"`
}

type produceResp struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

type batchResp struct {
	Offsets []produceResp `json:"offsets"`
}

type consumedRecord struct {
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Timestamp     int64             `json:"timestamp"`
	Key           *string           `json:"key"`
	Value         string            `json:"value"`
	Headers       map[string]string `json:"headers"`
	KeyEncoding   string            `json:"key_encoding"`
	ValueEncoding string            `json:"value_encoding"`
}

type consumeResp struct {
	Records       []consumedRecord `json:"records"`
	NextOffset    int64            `json:"next_offset"`
	HighWatermark int64            `json:"high_watermark"`
	LowWatermark  int64            `json:"low_watermark"`
}

// consumeAll reads partition p of topic from offset 0 to its high watermark
// (skipping gaps: a read may advance next_offset without records).
func consumeAll(t testing.TB, base, topic string, p int32) []consumedRecord {
	t.Helper()
	var all []consumedRecord
	next := int64(0)
	for {
		var r consumeResp
		code := call(t, "GET", fmt.Sprintf("%s/api/v1/consume?topic=%s&partition=%d&offset=%d&max_records=1000", base, topic, p, next), nil, &r)
		if code != 200 {
			t.Fatalf("consume %s/%d at %d: status %d", topic, p, next, code)
		}
		all = append(all, r.Records...)
		if r.NextOffset >= r.HighWatermark || (len(r.Records) == 0 && r.NextOffset <= next) {
			return all
		}
		next = r.NextOffset
	}
}
