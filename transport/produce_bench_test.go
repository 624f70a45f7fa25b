package transport

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkDecodeBatchFast decodes the body the REST load generator sends:
// 500 records of 100-byte values, each with a partition and a timestamp.
func BenchmarkDecodeBatchFast(b *testing.B) {
	type rec struct {
		Partition int32  `json:"partition"`
		Timestamp int64  `json:"timestamp"`
		Value     string `json:"value"`
	}
	var req struct {
		Records []rec  `json:"records"`
		Topic   string `json:"topic"`
	}
	req.Topic = "bench"
	for i := range 500 {
		req.Records = append(req.Records, rec{Partition: int32(i % 16), Timestamp: 1_700_000_000_000 + int64(i), Value: strings.Repeat(fmt.Sprint(i%10), 100)})
	}
	body, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	s := &HTTPServer{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, recs, ok, _ := s.decodeBatchFast(body, func(string) error { return nil }); !ok || len(recs) != 500 {
			b.Fatal("not decoded")
		}
	}
}
