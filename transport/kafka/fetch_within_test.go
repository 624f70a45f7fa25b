package kafka

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// partsFetcher serves recs[partition] like pagedFetcher and counts the
// record bytes it returns.
type partsFetcher struct {
	recs map[int32][]fsm.FetchedRecord
	read *atomic.Int64
}

func (f partsFetcher) Fetch(ctx context.Context, req fsm.FetchRequest) (fsm.FetchResult, error) {
	res, err := pagedFetcher{f.recs[req.Partition]}.Fetch(ctx, req)
	for _, r := range res.Records {
		f.read.Add(int64(r.Size()))
	}
	return res, err
}

// withinParts builds n partitions of partMax bytes each, each holding
// records records of 100 B, and the answer they belong to.
func withinParts(n, records, partMax int) (partsFetcher, []*fetchPart) {
	f := partsFetcher{recs: map[int32][]fsm.FetchedRecord{}, read: new(atomic.Int64)}
	t := kmsg.NewFetchResponseTopic()
	t.Partitions = make([]kmsg.FetchResponseTopicPartition, n)
	var parts []*fetchPart
	for i := range t.Partitions {
		f.recs[int32(i)] = benchRecords()[:records]
		t.Partitions[i] = kmsg.NewFetchResponseTopicPartition()
		t.Partitions[i].Partition = int32(i)
		parts = append(parts, &fetchPart{topic: "t", maxBytes: partMax, limit: partMax, out: &t.Partitions[i]})
	}
	return f, parts
}

// A consumer asking 4 MiB for 33 partitions of 1 MiB (all full) gets
// about 4 MiB, and the agent reads about that much, not 33 MiB it then
// drops; nothing read is dropped.
func TestReadWithinReadsOnlyWhatMaxBytesKeeps(t *testing.T) {
	f, parts := withinParts(33, 40000, 1<<20)
	s := &Server{cfg: Config{Fetcher: f}}
	got := s.readWithin(context.Background(), parts, 4<<20)
	if got > 9<<19 || got < 3<<20 {
		t.Fatalf("read %d bytes for a 4 MiB answer", got)
	}
	if r := f.read.Load(); r > 9<<19 {
		t.Fatalf("the Fetcher returned %d record bytes for a 4 MiB answer", r)
	}
	trimToMaxBytes(parts, 4<<20)
	kept := 0
	for _, p := range parts {
		kept += len(p.out.RecordBatches)
		putBuf(p.out.RecordBatches)
	}
	if kept > 4<<20 || kept < got-(200<<10) {
		t.Fatalf("kept %d of %d bytes read (at most a record batch of the last partition may go)", kept, got)
	}
}

// Partitions that hold less than their limit leave the rest of max_bytes
// to the partitions after them: every partition is read.
func TestReadWithinContinuesWithWhatIsLeft(t *testing.T) {
	f, parts := withinParts(12, 1000, 1<<20)
	s := &Server{cfg: Config{Fetcher: f}}
	s.readWithin(context.Background(), parts, 4<<20)
	for i, p := range parts {
		if n := countRecords(t, p.out.RecordBatches); n != 1000 {
			t.Fatalf("partition %d: %d records, want 1000", i, n)
		}
	}
}

// The first partition is read even when one record exceeds max_bytes,
// and nothing else is.
func TestReadWithinDeliversARecordLargerThanMaxBytes(t *testing.T) {
	f, parts := withinParts(3, 1000, 1<<20)
	s := &Server{cfg: Config{Fetcher: f}}
	s.readWithin(context.Background(), parts, 1)
	if n := countRecords(t, parts[0].out.RecordBatches); n != 1 {
		t.Fatalf("first partition: %d records, want 1", n)
	}
	for _, p := range parts[1:] {
		if len(p.out.RecordBatches) != 0 {
			t.Fatalf("partition %d was read", p.out.Partition)
		}
	}
}

// countRecords decodes a record set and counts its records.
func countRecords(t *testing.T, data []byte) int {
	t.Helper()
	n := 0
	for len(data) > 0 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data); err != nil {
			t.Fatal(err)
		}
		n += int(b.NumRecords)
		data = data[12+b.Length:]
	}
	return n
}

// A partition that crosses max_bytes keeps the whole record batches that
// fit, not nothing.
func TestTrimKeepsTheBatchesThatFit(t *testing.T) {
	recs := benchRecords()[:3000]
	first := appendFetched(nil, recs[:1000], -1)
	var second []byte
	for i := 0; i < 3000; i += 1000 {
		second = appendFetched(second, recs[i:i+1000], -1)
	}
	parts := []*fetchPart{{out: &kmsg.FetchResponseTopicPartition{RecordBatches: first}, bytes: len(first)},
		{out: &kmsg.FetchResponseTopicPartition{RecordBatches: second}, bytes: len(second)}}
	trimToMaxBytes(parts, 2*len(first)+10)
	if n := countRecords(t, parts[1].out.RecordBatches); n != 1000 || parts[1].bytes != len(parts[1].out.RecordBatches) {
		t.Fatalf("second partition kept %d records in %d bytes (counted %d)", n, len(parts[1].out.RecordBatches), parts[1].bytes)
	}
	trimToMaxBytes(parts, len(first)+10)
	if len(parts[1].out.RecordBatches) != 0 || countRecords(t, parts[0].out.RecordBatches) != 1000 {
		t.Fatal("a partition of which no batch fits was kept")
	}
}

// Waves stop when less than minWaveBudget of max_bytes is left: each wave
// is a round of reads in series, and the last ones of a long tail read a
// few records each. 33 full partitions of 1 MiB in a 4 MiB answer take
// two waves (4 partitions, then 1), not six.
func TestReadWithinStopsOnASmallRest(t *testing.T) {
	f, parts := withinParts(33, 40000, 1<<20)
	s := &Server{cfg: Config{Fetcher: f}}
	s.readWithin(context.Background(), parts, 4<<20)
	read := 0
	for _, p := range parts {
		if len(p.out.RecordBatches) > 0 {
			read++
		}
		putBuf(p.out.RecordBatches)
	}
	if read < 4 || read > 5 {
		t.Fatalf("%d partitions read for a 4 MiB answer of 1 MiB partitions, want 4 or 5", read)
	}
}
