package kafka

import (
	"bufio"
	"context"
	"io"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// pagedFetcher serves recs 1,000 at a time, as partition.Fetcher does with
// its default MaxRecords, without the partition layer's own cost.
type pagedFetcher struct{ recs []fsm.FetchedRecord }

func (f pagedFetcher) Fetch(_ context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	hw := int64(len(f.recs))
	res := fsm.FetchResult{HighWatermark: hw, NextOffset: req.Offset, Records: make([]fsm.FetchedRecord, 0, 1000)}
	bytes := 0
	for i := req.Offset; i < hw && len(res.Records) < 1000; i++ {
		if req.MaxBytes > 0 && len(res.Records) > 0 && bytes+f.recs[i].Size() > req.MaxBytes {
			break
		}
		bytes += f.recs[i].Size()
		res.Records = append(res.Records, f.recs[i])
		res.NextOffset = i + 1
	}
	return res, nil
}

func benchRecords() []fsm.FetchedRecord {
	recs := make([]fsm.FetchedRecord, 40000)
	for i := range recs {
		recs[i] = fsm.FetchedRecord{Offset: int64(i), Record: fsm.Record{Timestamp: 1700000000000 + int64(i), Key: []byte("k"), Value: make([]byte, 100)}}
	}
	return recs
}

// BenchmarkReadPart is one partition of a Fetch filling a 4 MiB partition
// limit with 100 B records (about 29 Fetcher calls), encoded as record
// batches: the Kafka layer's share of a consume. The buffer goes back to
// its pool afterwards, as it does once a response is written.
func BenchmarkReadPart(b *testing.B) {
	s := &Server{cfg: Config{Fetcher: pagedFetcher{benchRecords()}}}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out := kmsg.NewFetchResponseTopicPartition()
		p := &fetchPart{topic: "t", maxBytes: 4 << 20, out: &out}
		n, _ = s.readPart(context.Background(), p, 0)
		putBuf(out.RecordBatches)
	}
	b.SetBytes(int64(n))
}

// BenchmarkFetchAnswer is a whole Fetch answer of 8 partitions of 1 MiB
// (franz-go's default partition limit), read, encoded and written, as
// conn.go serves it.
func BenchmarkFetchAnswer(b *testing.B) {
	s := &Server{cfg: Config{Fetcher: pagedFetcher{benchRecords()}}}
	bw := bufio.NewWriter(io.Discard)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 16
		t := kmsg.NewFetchResponseTopic()
		t.Partitions = make([]kmsg.FetchResponseTopicPartition, 8)
		resp.Topics = append(resp.Topics, t)
		var parts []*fetchPart
		for i := range t.Partitions {
			t.Partitions[i] = kmsg.NewFetchResponseTopicPartition()
			parts = append(parts, &fetchPart{topic: "t", maxBytes: 1 << 20, out: &t.Partitions[i]})
		}
		n = s.readParts(context.Background(), parts, 0, 0)
		if err := writeAnswer(bw, io.Discard, requestHeader{key: 1, version: 16}, resp); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(n))
}

func TestReserveRest(t *testing.T) {
	buf := make([]byte, 1000) // the encoding of 10 records
	for _, tc := range []struct {
		name           string
		rest           int64
		maxBytes       int
		minCap, maxCap int
	}{
		{"estimate", 90, 1 << 20, 1000 + 9000, 1000 + 9000*9/8},
		{"partition limit", 1 << 30, 1 << 20, 1 << 20, 1<<20 + 1<<17},
		{"absolute cap", 1 << 40, 1 << 30, fetchReserveMax, fetchReserveMax + 1000},
		{"nothing left", 0, 1 << 20, 1000, 1000},
		{"limit reached", 90, 1000, 1000, 1000},
	} {
		got := reserveRest(slices.Clone(buf), 10, tc.rest, tc.maxBytes)
		if len(got) != len(buf) || cap(got) < tc.minCap || cap(got) > max(tc.maxCap*5/4+1, 1<<minPooledShift) { // a pooled buffer is at most a quarter larger
			t.Errorf("%s: len %d cap %d, want len %d cap in [%d, %d]", tc.name, len(got), cap(got), len(buf), tc.minCap, tc.maxCap)
		}
	}
}
