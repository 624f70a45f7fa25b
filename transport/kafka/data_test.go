package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// testRecords covers null and empty keys and values, headers and explicit
// timestamps.
func testRecords(topic string, n int) []*kgo.Record {
	base := time.UnixMilli(1_700_000_000_000)
	out := make([]*kgo.Record, n)
	for i := range out {
		r := &kgo.Record{Topic: topic, Partition: 0, Timestamp: base.Add(time.Duration(i) * time.Second)}
		switch i % 4 {
		case 0:
			r.Key, r.Value = []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i))
		case 1:
			r.Value = bytes.Repeat([]byte{byte(i)}, 300) // null key
		case 2:
			r.Key = []byte(fmt.Sprintf("k%d", i)) // null value (tombstone)
		case 3:
			r.Key, r.Value = []byte{}, []byte{} // empty, not null
		}
		if i%3 == 0 {
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte("x")}, {Key: "n", Value: []byte(fmt.Sprint(i))}}
		}
		out[i] = r
	}
	return out
}

func consumeN(t *testing.T, e *env, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := e.client(t, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})}, opts...)...)
	ctx := ctxT(t)
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(got), n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		got = append(got, fs.Records()...)
	}
	return got
}

func sameRecord(a, b *kgo.Record) error {
	switch {
	case (a.Key == nil) != (b.Key == nil) || !bytes.Equal(a.Key, b.Key):
		return fmt.Errorf("key %q (nil %v), want %q (nil %v)", b.Key, b.Key == nil, a.Key, a.Key == nil)
	case (a.Value == nil) != (b.Value == nil) || !bytes.Equal(a.Value, b.Value):
		return fmt.Errorf("value %q (nil %v), want %q (nil %v)", b.Value, b.Value == nil, a.Value, a.Value == nil)
	case !a.Timestamp.Equal(b.Timestamp):
		return fmt.Errorf("timestamp %v, want %v", b.Timestamp, a.Timestamp)
	case len(a.Headers) != len(b.Headers):
		return fmt.Errorf("headers %v, want %v", b.Headers, a.Headers)
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return fmt.Errorf("header %d %v, want %v", i, b.Headers[i], a.Headers[i])
		}
	}
	return nil
}

func TestProduceConsumeEveryCodec(t *testing.T) {
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	e := newEnv(t)
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			e.agent.addTopic(name, 1)
			want := testRecords(name, 40)
			p := e.client(t, kgo.ProducerBatchCompression(codec), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err := p.ProduceSync(ctxT(t), want...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			got := consumeN(t, e, name, len(want))
			for i := range want {
				if got[i].Offset != int64(i) {
					t.Fatalf("record %d at offset %d", i, got[i].Offset)
				}
				if err := sameRecord(want[i], got[i]); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
		})
	}
}

func TestAcksZeroOneAll(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("acks", 1)
	for _, acks := range []kgo.Acks{kgo.NoAck(), kgo.LeaderAck(), kgo.AllISRAcks()} {
		p := e.client(t, kgo.RequiredAcks(acks), kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err := p.ProduceSync(ctxT(t), &kgo.Record{Topic: "acks", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if got := consumeN(t, e, "acks", 3); len(got) != 3 {
		t.Fatalf("%d records", len(got))
	}
}

// produceRaw sends one batch as a v9 produce request to partition 0 and
// returns the partition's answer.
func produceRaw(t *testing.T, e *env, cl *kgo.Client, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	return produceRawTo(t, e, cl, topic, 0, batch)
}

// rawBatch encodes n records as a batch of producer pid/epoch from seq.
func rawBatch(pid int64, epoch int16, seq int32, n int) []byte {
	recs := make([]fsm.FetchedRecord, n)
	for i := range recs {
		recs[i] = fsm.FetchedRecord{Offset: int64(i), Record: fsm.Record{Timestamp: 1000, Value: []byte{byte(i)}}}
	}
	b := appendBatch(nil, recs, -1)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[crcStart:], castagnoli))
	return b
}

func TestIdempotentSequences(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("idem", 1)
	cl := e.client(t)
	init := kmsg.NewPtrInitProducerIDRequest()
	ir, err := init.RequestWith(ctxT(t), cl)
	if err != nil || ir.ErrorCode != 0 || ir.ProducerID <= 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ir)
	}
	pid, ep := ir.ProducerID, ir.ProducerEpoch
	first := produceRaw(t, e, cl, "idem", rawBatch(pid, ep, 0, 3))
	again := produceRaw(t, e, cl, "idem", rawBatch(pid, ep, 0, 3))
	if first.ErrorCode != 0 || again.ErrorCode != 0 || again.BaseOffset != first.BaseOffset {
		t.Fatalf("retry of a batch: first %+v, again %+v", first, again)
	}
	if p := produceRaw(t, e, cl, "idem", rawBatch(pid, ep, 7, 1)); p.ErrorCode != kerr.NotEnoughReplicas.Code {
		t.Fatalf("gap in sequence: %d, want the retriable NOT_ENOUGH_REPLICAS", p.ErrorCode)
	}
	if p := produceRaw(t, e, cl, "idem", rawBatch(pid+100, 0, 0, 1)); p.ErrorCode != kerr.UnknownProducerID.Code {
		t.Fatalf("unknown producer: %d", p.ErrorCode)
	}
	init.ProducerID, init.ProducerEpoch, init.Version = pid, ep, 4
	if ir, err = init.RequestWith(ctxT(t), cl); err != nil || ir.ProducerID != pid || ir.ProducerEpoch != ep+1 {
		t.Fatalf("epoch bump: %v %+v", err, ir)
	}
	if p := produceRaw(t, e, cl, "idem", rawBatch(pid, ep, 3, 1)); p.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("fenced epoch: %d", p.ErrorCode)
	}
	if got := consumeN(t, e, "idem", 3); len(got) != 3 {
		t.Fatalf("%d records, want 3 (no duplicates)", len(got))
	}
	txn := kmsg.NewPtrInitProducerIDRequest()
	txn.TransactionalID = kmsg.StringPtr("tx")
	// Sent to the broker directly: the client would look for a
	// transaction coordinator first, and FindCoordinator is not served here.
	tr, err := cl.Broker(7).Request(ctxT(t), txn)
	if err != nil || tr.(*kmsg.InitProducerIDResponse).ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("transactional id: %v %+v", err, tr)
	}
}

// A Kafka sequence wraps to 0 after MaxInt32; the batches on both sides of
// the wrap are accepted and a retry after the wrap is still a duplicate.
func TestIdempotentSequenceWrap(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("wrap", 1)
	cl := e.client(t)
	id, _ := e.agent.InitProducer(ctxT(t), 0, "")
	// The producer is near the end of the sequence space: the state machine
	// holds a batch of MaxInt32-1 sequences (one record here).
	e.agent.mu.Lock()
	e.agent.appendLocked("wrap", 0, []fsm.Record{{Value: []byte("a")}})
	if res := e.agent.seqBatchLocked(fsm.IdempotentBatch{Topic: "wrap", Producer: id}, math.MaxInt32-1); res.Err() != nil {
		t.Fatal(res.Err())
	}
	e.agent.mu.Unlock()
	straddle := produceRaw(t, e, cl, "wrap", rawBatch(int64(id.ID), 0, math.MaxInt32-1, 3)) // seqs MaxInt32-1, MaxInt32, 0
	after := produceRaw(t, e, cl, "wrap", rawBatch(int64(id.ID), 0, 1, 2))
	retry := produceRaw(t, e, cl, "wrap", rawBatch(int64(id.ID), 0, 1, 2))
	if straddle.ErrorCode != 0 || after.ErrorCode != 0 || retry.ErrorCode != 0 || retry.BaseOffset != after.BaseOffset {
		t.Fatalf("straddle %+v after %+v retry %+v", straddle, after, retry)
	}
	// A resend of the batch from before the wrap (its answer was lost) is
	// still its duplicate, not a gap the client would resend forever.
	if again := produceRaw(t, e, cl, "wrap", rawBatch(int64(id.ID), 0, math.MaxInt32-1, 3)); again.ErrorCode != 0 || again.BaseOffset != straddle.BaseOffset {
		t.Fatalf("resend of the straddling batch after the wrap: %+v, want its offset %d", again, straddle.BaseOffset)
	}
	if got := consumeN(t, e, "wrap", 6); len(got) != 6 {
		t.Fatalf("%d records", len(got))
	}
}

func TestBadBatchesAreRefused(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("bad", 1)
	cl := e.client(t)
	good := rawBatch(-1, -1, -1, 2)
	crc := bytes.Clone(good)
	crc[len(crc)-1] ^= 0xff
	magic := bytes.Clone(good)
	magic[16] = 1
	short := good[:40]
	cases := map[string]struct {
		batch []byte
		code  int16
	}{
		"crc mismatch":   {crc, kerr.CorruptMessage.Code},
		"magic 1":        {magic, kerr.UnsupportedForMessageFormat.Code},
		"truncated":      {short, kerr.CorruptMessage.Code},
		"unknown topic ": {good, kerr.UnknownTopicOrPartition.Code},
	}
	for name, c := range cases {
		topic := "bad"
		if name == "unknown topic " {
			topic = "nope"
		}
		if p := produceRaw(t, e, cl, topic, c.batch); p.ErrorCode != c.code {
			t.Errorf("%s: code %d, want %d", name, p.ErrorCode, c.code)
		}
	}
	if p := produceRaw(t, e, cl, "bad", good); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("good batch after bad ones: %+v", p)
	}
}

func TestProduceToNonLeaderIsNotLeader(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("moved", 1)
	e.agent.leader["moved/0"] = "agent-2"
	if p := produceRaw(t, e, e.client(t), "moved", rawBatch(-1, -1, -1, 1)); p.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("code %d, want NOT_LEADER_OR_FOLLOWER", p.ErrorCode)
	}
	// Any agent serves reads.
	e.agent.mu.Lock()
	e.agent.appendLocked("moved", 0, []fsm.Record{{Value: []byte("r")}})
	e.agent.mu.Unlock()
	if got := consumeN(t, e, "moved", 1); string(got[0].Value) != "r" {
		t.Fatalf("read %q", got[0].Value)
	}
}

// Produce and Metadata route by leader without the agent's read barrier (a
// produce must not wait for the agent's own apply of the one before it);
// ListOffsets passes it.
func TestProduceAndMetadataSkipTheReadBarrier(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("rb", 1)
	e.agent.mu.Lock()
	e.agent.barrier = fmt.Errorf("%w: behind what this agent acknowledged", fsm.ErrUnavailable)
	e.agent.mu.Unlock()
	if p := produceRaw(t, e, e.client(t), "rb", rawBatch(-1, -1, -1, 1)); p.ErrorCode != 0 {
		t.Fatalf("produce with the read barrier failing: code %d", p.ErrorCode)
	}
	adm := kadm.NewClient(e.client(t))
	md, err := adm.Metadata(ctxT(t), "rb")
	if err != nil || md.Topics["rb"].Err != nil || len(md.Topics["rb"].Partitions) != 1 {
		t.Fatalf("metadata with the read barrier failing: %v %+v", err, md.Topics["rb"])
	}
	// NOT_LEADER_OR_FOLLOWER, retriable: asked once.
	end, err := kadm.NewClient(e.client(t, kgo.RequestRetries(0))).ListEndOffsets(ctxT(t), "rb")
	if o, ok := end.Lookup("rb", 0); err == nil && ok && o.Err == nil {
		t.Fatalf("ListOffsets passed a failing read barrier: %+v", o)
	}
}

func TestListOffsets(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("lo", 1)
	p := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := p.ProduceSync(ctxT(t), testRecords("lo", 10)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(e.client(t))
	start, err := adm.ListStartOffsets(ctxT(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(ctxT(t), "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := start.Lookup("lo", 0); o.Offset != 0 {
		t.Fatalf("earliest %+v", o)
	}
	if o, _ := end.Lookup("lo", 0); o.Offset != 10 {
		t.Fatalf("latest %+v", o)
	}
	// Record i has timestamp base+i s: the first at or after base+4.5 s is 5.
	at, err := adm.ListOffsetsAfterMilli(ctxT(t), 1_700_000_004_500, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := at.Lookup("lo", 0); o.Offset != 5 || o.Timestamp != 1_700_000_005_000 {
		t.Fatalf("by timestamp %+v", o)
	}
	after, err := adm.ListOffsetsAfterMilli(ctxT(t), 1_800_000_000_000, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := after.Lookup("lo", 0); o.Offset != 10 {
		t.Fatalf("after the last record: %+v (kadm maps -1 to the end)", o)
	}
}

// An out-of-range fetch offset answers OFFSET_OUT_OF_RANGE; the client
// resets by its reset policy (here: the start) and reads everything.
func TestOffsetOutOfRangeResets(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("oor", 1)
	p := e.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := p.ProduceSync(ctxT(t), testRecords("oor", 5)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"oor": {0: kgo.NewOffset().At(1000)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxT(t)
	var got []*kgo.Record
	for len(got) < 5 && ctx.Err() == nil {
		got = append(got, cl.PollFetches(ctx).Records()...)
	}
	if len(got) != 5 || got[0].Offset != 0 {
		t.Fatalf("after reset: %d records", len(got))
	}
	f := kmsg.NewPtrFetchRequest()
	f.Version, f.MaxBytes = 11, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "oor", topicUUID(t, e, "oor")
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = 99, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	resp, err := f.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if rp := resp.Topics[0].Partitions[0]; rp.ErrorCode != kerr.OffsetOutOfRange.Code || rp.HighWatermark != 5 || rp.LogStartOffset != 0 {
		t.Fatalf("raw fetch: %+v", rp)
	}
}

// One fetch request long-polls all its partitions at once: data arriving
// on the second partition answers it although the first stays empty for
// longer than the caller waits.
func TestFetchLongPollsPartitionsTogether(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("lp", 2)
	cl := e.client(t)
	f := kmsg.NewPtrFetchRequest()
	f.Version, f.MaxWaitMillis, f.MinBytes, f.MaxBytes = 12, 60_000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "lp", topicUUID(t, e, "lp")
	for p := range int32(2) {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	f.Topics = append(f.Topics, ft)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		resp *kmsg.FetchResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := f.RequestWith(ctx, cl)
		done <- answer{r, err}
	}()
	// Append once the fetch is waiting (its Fetch calls subscribed); the
	// fake log wakes every waiter on any append, so appending early is
	// also answered.
	if _, err := e.agent.Produce(ctx, "lp", []fsm.ProduceRecord{{Partition: 1, Record: fsm.Record{Value: []byte("late")}}}); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil {
		if errors.Is(a.err, context.DeadlineExceeded) {
			t.Fatal("the fetch waited for the empty partition")
		}
		t.Fatal(a.err)
	}
	p1 := a.resp.Topics[0].Partitions[1]
	if p1.HighWatermark != 1 || len(p1.RecordBatches) == 0 {
		t.Fatalf("partition 1: %+v", p1)
	}
}

// Offsets skipped by a restore gap start a new batch with its own base
// offset, which the client decodes as the records' offsets.
func TestFetchedBatchesCarryGapOffsets(t *testing.T) {
	recs := []fsm.FetchedRecord{{Offset: 5}, {Offset: 6}, {Offset: 1_000_006}}
	for i := range recs {
		recs[i].Timestamp, recs[i].Value = 1000+int64(i), []byte{byte(i)}
	}
	data := appendFetched(nil, recs, -1)
	var offsets []int64
	for len(data) > 0 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data); err != nil {
			t.Fatal(err)
		}
		if got := crc32.Checksum(data[crcStart:12+b.Length], castagnoli); uint32(b.CRC) != got {
			t.Fatalf("crc %x, computed %x", b.CRC, got)
		}
		for i := range b.NumRecords {
			offsets = append(offsets, b.FirstOffset+int64(i))
		}
		data = data[12+b.Length:]
	}
	if fmt.Sprint(offsets) != "[5 6 1000006]" {
		t.Fatalf("offsets %v", offsets)
	}
}

func topicUUID(t *testing.T, e *env, name string) [16]byte {
	t.Helper()
	tp, err := e.agent.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	return TopicID(tp.ID)
}

// A partition that fails answers the request at once, without the long
// poll of the others.
func TestFetchErrorAnswersAtOnce(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("fe", 2)
	f := kmsg.NewPtrFetchRequest()
	f.Version, f.MaxWaitMillis, f.MinBytes, f.MaxBytes = 12, 60_000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "fe", topicUUID(t, e, "fe")
	for p, off := range []int64{0, 50} { // partition 1: out of range
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = int32(p), off, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	f.Topics = append(f.Topics, ft)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.RequestWith(ctx, e.client(t))
	if err != nil {
		t.Fatalf("%v (the fetch waited on the empty partition)", err)
	}
	if c := resp.Topics[0].Partitions[1].ErrorCode; c != kerr.OffsetOutOfRange.Code {
		t.Fatalf("partition 1: code %d", c)
	}
}
