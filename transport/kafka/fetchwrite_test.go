package kafka

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchAnswer is a Fetch response of version v with two topics: record
// sets of several sizes (one above spliceMin), empty ones, an error and an
// error message.
func fetchAnswer(v int16) *kmsg.FetchResponse {
	f := kmsg.NewPtrFetchResponse()
	f.Version, f.ThrottleMillis = v, 3
	for ti, sizes := range [][]int{{100 << 10, 0, 7}, {0, 3000, 1 << 20}} {
		t := kmsg.NewFetchResponseTopic()
		t.Topic, t.TopicID = fmt.Sprintf("topic-%d", ti), [16]byte{byte(ti + 1)}
		for pi, n := range sizes {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition, p.HighWatermark, p.LastStableOffset, p.LogStartOffset = int32(pi), int64(1000+pi), int64(1000+pi), 5
			p.RecordBatches = bytes.Repeat([]byte{byte(ti*16 + pi + 1)}, n)
			if n == 0 && ti == 1 {
				p.ErrorCode = 1
			}
			t.Partitions = append(t.Partitions, p)
		}
		f.Topics = append(f.Topics, t)
	}
	return f
}

// TestWriteFetchMatchesAppendTo: the vector written by writeFetch is, byte
// for byte, the frame writeResponse copies together, in every served
// version (flexible and not), and the response keeps its record sets.
func TestWriteFetchMatchesAppendTo(t *testing.T) {
	for v := int16(4); v <= 16; v++ {
		f := fetchAnswer(v)
		hdr := requestHeader{key: int16(kmsg.Fetch), version: v, correlationID: 4242 + int32(v)}
		var want, got bytes.Buffer
		bw := bufio.NewWriter(&want)
		if err := writeResponse(bw, hdr, f); err != nil {
			t.Fatal(err)
		}
		before := f.Topics[1].Partitions[2].RecordBatches
		bw = bufio.NewWriter(&got)
		if err := writeFetch(bw, &got, hdr, f); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("v%d: vector of %d bytes differs from the %d-byte frame", v, got.Len(), want.Len())
		}
		if after := f.Topics[1].Partitions[2].RecordBatches; len(after) != 1<<20 || &after[0] != &before[0] {
			t.Fatalf("v%d: record set not restored after writing", v)
		}
		// The frame decodes back to the response.
		dec := kmsg.NewPtrFetchResponse()
		dec.Version = v
		body := got.Bytes()[8:]
		if dec.IsFlexible() {
			body = body[1:]
		}
		if err := dec.ReadFrom(body); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if p := dec.Topics[1].Partitions[1]; p.HighWatermark != 1001 || len(p.RecordBatches) != 3000 || p.RecordBatches[0] != 17+1 {
			t.Fatalf("v%d: decoded partition %+v", v, p.Partition)
		}
	}
}

// TestSpliceRefusesAMissingMarker: an encoding without the markers is
// refused, and writeFetch then writes the ordinary frame.
func TestSpliceRefusesAMissingMarker(t *testing.T) {
	head := make([]byte, 64)
	if _, err := spliceRecordSets(head, [][]byte{{1, 2, 3}}, true); !errors.Is(err, errSplice) {
		t.Fatalf("splice without markers: %v", err)
	}
	m := marker(0)
	head = append(append(head, 0x05), m...) // wrong length prefix before the marker
	if _, err := spliceRecordSets(head, [][]byte{{1, 2, 3}}, true); !errors.Is(err, errSplice) {
		t.Fatalf("splice with a wrong prefix: %v", err)
	}
}

// TestLargeFetchesThroughTheListener: a consumer reads partitions whose
// answers are written as vectors (several MiB, above spliceMin) and gets
// every record, in order, intact.
func TestLargeFetchesThroughTheListener(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("big", 3)
	const perPartition = 3000
	var want []*kgo.Record
	for p := range int32(3) {
		for i := range perPartition {
			want = append(want, &kgo.Record{Topic: "big", Partition: p, Key: []byte(fmt.Sprintf("%d-%d", p, i)),
				Value: bytes.Repeat([]byte{byte(i)}, 200+i%50), Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))})
		}
	}
	pr := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if err := pr.ProduceSync(ctxT(t), want...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"big": {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxPartitionBytes(4<<20))
	consumeInOrder(t, cl, want, perPartition)
}

// consumeInOrder polls cl until it has every record of want (perPartition
// records of each partition, partition by partition) and checks that each
// came once, in order, intact.
func consumeInOrder(t *testing.T, cl *kgo.Client, want []*kgo.Record, perPartition int) {
	t.Helper()
	next := map[int32]int{}
	ctx := ctxT(t)
	for n := 0; n < len(want); {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", n, len(want), err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		for _, r := range fs.Records() {
			i := next[r.Partition]
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, i)
			}
			if err := sameRecord(want[int(r.Partition)*perPartition+i], r); err != nil {
				t.Fatalf("partition %d record %d: %v", r.Partition, i, err)
			}
			next[r.Partition]++
			n++
		}
	}
}

// A consumer with a small max_bytes for many partitions gets every record
// once, in order: the agent reads within the answer's limit in waves and
// cuts the partition that crosses it at a record batch.
func TestSmallMaxBytesThroughTheListener(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("small", 8)
	const perPartition = 500
	var want []*kgo.Record
	from := map[int32]kgo.Offset{}
	for p := range int32(8) {
		from[p] = kgo.NewOffset().AtStart()
		for i := range perPartition {
			want = append(want, &kgo.Record{Topic: "small", Partition: p, Key: []byte(fmt.Sprintf("%d-%d", p, i)),
				Value: bytes.Repeat([]byte{byte(i)}, 100+i%50)})
		}
	}
	pr := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if err := pr.ProduceSync(ctxT(t), want...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"small": from}),
		kgo.FetchMaxPartitionBytes(16<<10), kgo.FetchMaxBytes(40<<10))
	consumeInOrder(t, cl, want, perPartition)
}

// TestBufClasses: a buffer of a class holds what was asked, the class
// below would not, and only buffers of a class size go back to a pool.
func TestBufClasses(t *testing.T) {
	for _, n := range []int{0, 1, 1 << 16, 1<<16 + 1, 80 << 10, 80<<10 + 1, 100000, 1 << 20, 1<<20 + 1, 3 << 20, 1<<26 - 1, 1 << 26} {
		c := bufClass(n)
		if c < 0 || classSize(c) < n || (c > 0 && classSize(c-1) >= n) {
			t.Fatalf("%d bytes: class %d of %d bytes", n, c, classSize(c))
		}
		want := classSize(c)
		if n < smallBuf {
			want = n // small buffers are not pooled
		}
		if b := getBuf(n); len(b) != 0 || cap(b) != want {
			t.Fatalf("%d bytes: buffer len %d cap %d, want cap %d", n, len(b), cap(b), want)
		}
	}
	if c := bufClass(1<<26 + 1); c != -1 {
		t.Fatalf("beyond the largest class: class %d", c)
	}
	if b := getBuf(1<<26 + 1); cap(b) != 1<<26+1 {
		t.Fatalf("unpooled buffer cap %d", cap(b))
	}
	if got := classSize(len(bufPools) - 1); got != 1<<maxPooledShift {
		t.Fatalf("largest class %d bytes", got)
	}
}

// Partitions an answer's max_bytes leaves unread are answered with their
// watermarks, as Kafka fills them, not -1 (franz-go, librdkafka and Sarama
// store a -1 high watermark as the partition's).
func TestFetchUnreadPartitionsCarryWatermarks(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("wm", 8)
	const perPartition = 500
	var recs []*kgo.Record
	for p := range int32(8) {
		for range perPartition {
			recs = append(recs, &kgo.Record{Topic: "wm", Partition: p, Value: bytes.Repeat([]byte{'v'}, 100)})
		}
	}
	pr := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if err := pr.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("wm")
	mreq.Topics = append(mreq.Topics, mt)
	meta, err := mreq.RequestWith(ctxT(t), pr)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MaxBytes = 0, 40<<10
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = "wm", meta.Topics[0].TopicID
	for p := range int32(8) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.LogStartOffset = p, 0, 16<<10, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.FetchRequestTopic{rt}
	resp, err := req.RequestWith(ctxT(t), pr)
	if err != nil {
		t.Fatal(err)
	}
	empty := 0
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 || p.HighWatermark != perPartition || p.LastStableOffset != perPartition || p.LogStartOffset != 0 {
			t.Errorf("partition %d: error %d, watermarks %d/%d/%d, want 0 and %d/%d/0", p.Partition, p.ErrorCode,
				p.HighWatermark, p.LastStableOffset, p.LogStartOffset, perPartition, perPartition)
		}
		if len(p.RecordBatches) == 0 {
			empty++
		}
	}
	if empty == 0 {
		t.Fatal("every partition was read: the test needs max_bytes to leave some unread")
	}
}
