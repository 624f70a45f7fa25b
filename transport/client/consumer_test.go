package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func produceN(t *testing.T, c *Client, topic string, part int32, n int) {
	t.Helper()
	p := newTestProducer(t, c, ProducerConfig{DisableIdempotence: true})
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Value: []byte(fmt.Sprint(i))}.ToPartition(part)
	}
	if _, err := p.Produce(testCtx(t), topic, recs...); err != nil {
		t.Fatal(err)
	}
}

// newTestConsumer is c.NewConsumer that fails the test on an error.
func newTestConsumer(t *testing.T, c *Client, cfg ConsumerConfig) *Consumer {
	t.Helper()
	k, err := c.NewConsumer(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func offsetsOf(recs []Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Offset)
	}
	return out
}

// Offsets may jump (a disaster restore leaves gaps): the consumer continues
// from next_offset, never from last offset + 1.
func TestConsumerFollowsNextOffsetAcrossGaps(t *testing.T) {
	fc := newFakeCluster(t, 1)
	fc.addTopic("t", 1)
	var (
		mu        sync.Mutex
		requested []int64
	)
	fc.agents[0].onFetch = func(req *pb.FetchRequest) (*pb.FetchResponse, error, bool) {
		mu.Lock()
		requested = append(requested, req.GetOffset())
		mu.Unlock()
		rec := func(off int64) *pb.FetchedRecord {
			return &pb.FetchedRecord{Offset: off, Value: []byte(fmt.Sprint(off))}
		}
		switch req.GetOffset() {
		case 0: // offsets 0, 1, then a gap up to 7
			return &pb.FetchResponse{Records: []*pb.FetchedRecord{rec(0), rec(1)}, NextOffset: 7, HighWatermark: 60}, nil, true
		case 7: // an empty answer that skips a gap
			return &pb.FetchResponse{NextOffset: 50, HighWatermark: 60}, nil, true
		case 50:
			return &pb.FetchResponse{Records: []*pb.FetchedRecord{rec(50), rec(52)}, NextOffset: 60, HighWatermark: 60}, nil, true
		}
		return nil, nil, false
	}
	c := fc.dial(t)
	ctx := testCtx(t)
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Start: AtOffset(0), MaxWait: 20 * time.Millisecond})
	defer k.Close()
	var got []Record
	for i := 0; i < 3; i++ {
		recs, err := k.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
	}
	if fmt.Sprint(offsetsOf(got)) != "[0 1 50 52]" {
		t.Fatalf("consumed offsets %v", offsetsOf(got))
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(requested) != "[0 7 50]" {
		t.Fatalf("fetched from %v, want [0 7 50] (next_offset each time)", requested)
	}
	if pos, _ := k.Position(0); pos != 60 {
		t.Fatalf("position %d, want 60", pos)
	}
}

func TestConsumerGroupResumeAndCommit(t *testing.T) {
	_, c := oneAgent(t, "t", 2)
	ctx := testCtx(t)
	produceN(t, c, "t", 0, 10)
	produceN(t, c, "t", 1, 4)
	if err := c.CommitOffsets(ctx, "g", OffsetCommit{Topic: "t", Partition: 0, Offset: 3}); err != nil {
		t.Fatal(err)
	}
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Group: "g", Start: Latest, MaxWait: 20 * time.Millisecond})
	// Partition 0 resumes at the committed 3; partition 1 has no commit
	// and starts at Latest (4).
	if p0, _ := k.Position(0); p0 != 3 {
		t.Fatalf("partition 0 starts at %d, want the committed 3", p0)
	}
	if p1, _ := k.Position(1); p1 != 4 {
		t.Fatalf("partition 1 starts at %d, want latest (4)", p1)
	}
	recs, err := k.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(offsetsOf(recs)) != "[3 4 5 6 7 8 9]" {
		t.Fatalf("polled %v", offsetsOf(recs))
	}
	if err := k.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	offs, err := c.FetchOffsets(ctx, "g", "t")
	if err != nil {
		t.Fatal(err)
	}
	committed := map[int32]int64{}
	for _, o := range offs {
		committed[o.Partition] = o.Offset
	}
	if committed[0] != 10 || committed[1] != 4 {
		t.Fatalf("committed %v, want 0:10 1:4", committed)
	}
	k2 := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Group: "g", MaxWait: 20 * time.Millisecond})
	if p0, _ := k2.Position(0); p0 != 10 {
		t.Fatalf("new consumer of the group starts at %d, want 10", p0)
	}
	if err := (&Consumer{cfg: ConsumerConfig{Topic: "t"}}).Commit(ctx); err != ErrNoGroup {
		t.Fatalf("commit without a group: %v", err)
	}
}

// One partition with data answers Poll at once even while another
// partition's long-poll would wait for a long time.
func TestConsumerPollAnswersWithoutWaitingForIdlePartitions(t *testing.T) {
	_, c := oneAgent(t, "t", 3)
	produceN(t, c, "t", 1, 5)
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", MaxWait: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := k.Poll(ctx) // would take a minute if it waited for partitions 0 and 2
	if err != nil || len(recs) != 5 || recs[0].Partition != 1 || recs[0].Topic != "t" {
		t.Fatalf("poll: %d records %v", len(recs), err)
	}
	// Idle partitions keep their position.
	if p0, _ := k.Position(0); p0 != 0 {
		t.Fatalf("idle partition moved to %d", p0)
	}
}

func TestConsumerIdlePollWaitsMaxWaitOnce(t *testing.T) {
	fc, c := oneAgent(t, "t", 2)
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", MaxWait: 50 * time.Millisecond})
	recs, err := k.Poll(testCtx(t))
	if err != nil || len(recs) != 0 {
		t.Fatalf("idle poll: %v %v", recs, err)
	}
	fc.agents[0].mu.Lock()
	fetches := fc.agents[0].fetches
	fc.agents[0].mu.Unlock()
	if fetches != 2 {
		t.Fatalf("idle poll made %d fetches, want one long-poll per partition", fetches)
	}
	// Paused partitions are not fetched.
	k.Pause(0, 1)
	if _, err := k.Poll(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	fc.agents[0].mu.Lock()
	defer fc.agents[0].mu.Unlock()
	if fc.agents[0].fetches != fetches {
		t.Fatal("paused partitions were fetched")
	}
}

func TestConsumerBelowLowWatermarkContinuesFromIt(t *testing.T) {
	fc := newFakeCluster(t, 1)
	tp := fc.addTopic("t", 1)
	c := fc.dial(t)
	produceN(t, c, "t", 0, 3)
	fc.mu.Lock()
	// Retention removed offsets 0-9: the partition now starts at 10.
	tp.base[0] = 10
	for i, r := range tp.parts[0] {
		r.Offset = 10 + int64(i)
	}
	fc.mu.Unlock()
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Start: AtOffset(2), MaxWait: 20 * time.Millisecond})
	var got []Record
	for i := 0; i < 2 && len(got) == 0; i++ {
		recs, err := k.Poll(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
	}
	if fmt.Sprint(offsetsOf(got)) != "[10 11 12]" {
		t.Fatalf("consumed %v after retention, want [10 11 12]", offsetsOf(got))
	}
}

func TestConsumerBadInput(t *testing.T) {
	_, c := oneAgent(t, "t", 2)
	if _, err := c.NewConsumer(testCtx(t), ConsumerConfig{Topic: "t", Partitions: []int32{5}}); Kind(err) != KindNotFound {
		t.Fatalf("unknown partition: %v", err)
	}
	if _, err := c.NewConsumer(testCtx(t), ConsumerConfig{Topic: "missing"}); Kind(err) != KindNotFound {
		t.Fatalf("unknown topic: %v", err)
	}
	if _, err := c.NewConsumer(testCtx(t), ConsumerConfig{}); Kind(err) != KindBadRequest {
		t.Fatalf("no topic: %v", err)
	}
}

// A consumer of every partition reads partitions added after it started,
// from their first offset, once the client's metadata shows them.
func TestConsumerPicksUpAddedPartitions(t *testing.T) {
	fc, c := oneAgent(t, "t", 1)
	ctx := testCtx(t)
	k := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Start: Latest, MaxWait: 20 * time.Millisecond})
	defer k.Close()
	fc.mu.Lock()
	tp := fc.topics["t"]
	tp.parts, tp.base, tp.leaders = append(tp.parts, nil), append(tp.base, 0), append(tp.leaders, fc.agents[0].nodeID)
	fc.mu.Unlock()
	if _, err := c.GetMetadata(ctx); err != nil { // what the background refresh does
		t.Fatal(err)
	}
	produceN(t, c, "t", 1, 3)
	var got []Record
	for i := 0; i < 20 && len(got) < 3; i++ {
		recs, err := k.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
	}
	if fmt.Sprint(offsetsOf(got)) != "[0 1 2]" || got[0].Partition != 1 {
		t.Fatalf("consumed %+v, want offsets 0-2 of partition 1", got)
	}
	if a := k.Assignment(); fmt.Sprint(a) != "[0 1]" {
		t.Fatalf("assignment %v", a)
	}
	// An explicit partition list stays as it is.
	k2 := newTestConsumer(t, c, ConsumerConfig{Topic: "t", Partitions: []int32{0}, MaxWait: 20 * time.Millisecond})
	defer k2.Close()
	if _, err := k2.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if a := k2.Assignment(); fmt.Sprint(a) != "[0]" {
		t.Fatalf("explicit assignment became %v", a)
	}
}
