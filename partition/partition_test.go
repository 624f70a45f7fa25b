package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

func TestProduceFetchRoundTrip(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100})
	e.topic("t", 2)
	offs := e.produce("t", 1, "a", "b", "c")
	if offs[0].Offset != 0 || offs[2].Offset != 2 || offs[1].Partition != 1 {
		t.Fatalf("offsets %+v", offs)
	}
	e.produce("t", 1, "d")
	if got := strings.Join(e.readAll("t", 1), ","); got != "a,b,c,d" {
		t.Fatalf("read %q", got)
	}
	if got := e.readAll("t", 0); len(got) != 0 {
		t.Fatalf("partition 0 has %v", got)
	}
}

func TestConcurrentProduceIsBatchedAndDense(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 500, BatchTimeout: 5 * time.Millisecond, MaxInFlight: 1})
	e.topic("t", 1)
	const clients, per = 32, 50
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				out, err := e.prod.Produce(context.Background(), "t", []fsm.ProduceRecord{{Partition: 0, Record: fsm.Record{Value: []byte(fmt.Sprintf("%d-%d", c, i))}}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[out[0].Offset] {
					t.Errorf("offset %d acknowledged twice", out[0].Offset)
				}
				seen[out[0].Offset] = true
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	offs := sortedInts(seen)
	if len(offs) != clients*per || offs[0] != 0 || offs[len(offs)-1] != clients*per-1 {
		t.Fatalf("offsets not dense: %d acks, first %d last %d", len(offs), offs[0], offs[len(offs)-1])
	}
	// One request per record; batching must have merged some of them.
	if p := e.prop.proposals.Load(); p >= clients*per {
		t.Fatalf("%d proposals for %d records: no batching", p, clients*per)
	}
	if got := e.readAll("t", 0); len(got) != clients*per {
		t.Fatalf("read back %d", len(got))
	}
}

func TestProduceErrors(t *testing.T) {
	e := newEnv(t, ProducerConfig{MaxRecordBytes: 100, MaxUnflushedBytes: 1 << 20})
	e.topic("t", 2)
	ctx := context.Background()
	rec := func(p int32, v string) []fsm.ProduceRecord {
		return []fsm.ProduceRecord{{Partition: p, Record: fsm.Record{Value: []byte(v)}}}
	}
	cases := []struct {
		name  string
		topic string
		recs  []fsm.ProduceRecord
		want  error
	}{
		{"unknown topic", "nope", rec(0, "x"), fsm.ErrTopicNotFound},
		{"bad partition", "t", rec(5, "x"), fsm.ErrInvalidArgument},
		{"too large", "t", rec(0, strings.Repeat("x", 200)), fsm.ErrRecordTooLarge},
		{"empty", "t", nil, fsm.ErrInvalidArgument},
	}
	for _, c := range cases {
		if _, err := e.prod.Produce(ctx, c.topic, c.recs); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v want %v", c.name, err, c.want)
		}
	}
	// A partition led elsewhere: definitely not written.
	tp, _ := e.fsm.Topic("t")
	if _, err := e.prop.Propose(ctx, fsm.Encode(&fsm.AssignLeader{TopicID: tp.ID, Partition: 1, Leader: "n2", ExpectedEpoch: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.prod.Produce(ctx, "t", rec(1, "x")); !errors.Is(err, fsm.ErrUnavailable) || !errors.Is(err, fsm.ErrNotLeader) {
		t.Errorf("not leader: %v", err)
	}
	// Proposal failures pass their outcome class through.
	e.prop.mu.Lock()
	e.prop.fail = fmt.Errorf("%w: leadership lost", fsm.ErrOutcomeUnknown)
	e.prop.mu.Unlock()
	if _, err := e.prod.Produce(ctx, "t", rec(0, "x")); !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Errorf("outcome unknown not propagated: %v", err)
	}
	e.prop.mu.Lock()
	e.prop.fail = nil
	e.prop.mu.Unlock()
	// Backpressure: past the unflushed bound produce answers unavailable.
	for e.store.Bytes() <= 1<<20 {
		e.produce("t", 0, strings.Repeat("y", 90), strings.Repeat("y", 90))
	}
	if _, err := e.prod.Produce(ctx, "t", rec(0, "x")); !errors.Is(err, fsm.ErrUnavailable) {
		t.Errorf("backlog: %v", err)
	}
	if _, err := e.flush.FlushOnce(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if _, err := e.prod.Produce(ctx, "t", rec(0, "x")); err != nil {
		t.Errorf("after flush the backlog is gone but produce fails: %v", err)
	}
}

func TestKeyedAndKeylessRouting(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 8)
	ctx := context.Background()
	out, err := e.prod.Produce(ctx, "t", []fsm.ProduceRecord{
		{Partition: -1, Record: fsm.Record{Key: []byte("user-1"), Value: []byte("a")}},
		{Partition: -1, Record: fsm.Record{Key: []byte("user-1"), Value: []byte("b")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fsm.KeyPartition([]byte("user-1"), 8)
	if out[0].Partition != want || out[1].Partition != want || out[1].Offset != out[0].Offset+1 {
		t.Fatalf("keyed routing %+v, want partition %d", out, want)
	}
	used := map[int32]bool{}
	for i := 0; i < 16; i++ {
		out, err := e.prod.Produce(ctx, "t", []fsm.ProduceRecord{{Partition: -1, Record: fsm.Record{Value: []byte("x")}}})
		if err != nil {
			t.Fatal(err)
		}
		used[out[0].Partition] = true
	}
	if len(used) != 8 {
		t.Fatalf("keyless records used %d of 8 partitions", len(used))
	}
}

func TestFlushCommitsOneObjectForAllPartitionsAndReadsFromIt(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("a", 3)
	e.topic("b", 2)
	ctx := context.Background()
	for p := int32(0); p < 3; p++ {
		e.produce("a", p, "a1", "a2")
	}
	e.produce("b", 1, "b1")
	n, err := e.flush.FlushOnce(ctx, false)
	if err != nil || n != 0 {
		t.Fatalf("flush before age/size should do nothing: %d %v", n, err)
	}
	n, err = e.flush.FlushOnce(ctx, true)
	if err != nil || n != 4 {
		t.Fatalf("forced flush committed %d partitions: %v", n, err)
	}
	if e.segs.puts != 1 {
		t.Fatalf("%d objects for one flush", e.segs.puts)
	}
	if n, _ := e.flush.FlushOnce(ctx, true); n != 0 || e.segs.puts != 1 {
		t.Fatal("an empty flush wrote an object")
	}
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != 0 {
		t.Fatalf("store still holds %d bytes after flush+prune", e.store.Bytes())
	}
	e.produce("a", 0, "a3")
	if got := strings.Join(e.readAll("a", 0), ","); got != "a1,a2,a3" {
		t.Fatalf("read across segment and store: %q", got)
	}
	// A failed upload keeps the records and is retried.
	e.segs.fail = errors.New("s3 down")
	if _, err := e.flush.FlushOnce(ctx, true); err == nil {
		t.Fatal("flush with failing store succeeded")
	}
	e.segs.fail = nil
	if n, err := e.flush.FlushOnce(ctx, true); err != nil || n != 1 {
		t.Fatalf("retry flush: %d %v", n, err)
	}
	if got := strings.Join(e.readAll("a", 0), ","); got != "a1,a2,a3" {
		t.Fatalf("after retry: %q", got)
	}
}

func TestFetchRangeAndLongPoll(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	ctx := context.Background()
	e.produce("t", 0, "a")
	var oor *fsm.OffsetOutOfRangeError
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Offset: 2}); !errors.As(err, &oor) || oor.HighWatermark != 1 {
		t.Fatalf("past end: %v", err)
	}
	if _, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Offset: -1}); !errors.As(err, &oor) {
		t.Fatalf("negative: %v", err)
	}
	res, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Offset: 1})
	if err != nil || len(res.Records) != 0 || res.NextOffset != 1 {
		t.Fatalf("at end without wait: %+v %v", res, err)
	}
	got := make(chan fsm.FetchResult, 1)
	go func() {
		r, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", Offset: 1, WaitMs: 30000})
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	e.produce("t", 0, "b")
	select {
	case r := <-got:
		if len(r.Records) != 1 || string(r.Records[0].Value) != "b" {
			t.Fatalf("long poll got %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long poll not woken by produce")
	}
}

func TestStoreReplayIsIdempotentAndSurvivesReopen(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 2)
	for i := 0; i < 50; i++ {
		e.produce("t", int32(i%2), fmt.Sprint(i))
	}
	if _, err := e.flush.FlushOnce(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 80; i++ {
		e.produce("t", int32(i%2), fmt.Sprint(i))
	}
	// Snapshot now (carries unflushed batches), then reopen the same WAL into
	// a fresh store + FSM and restore: the store must not duplicate batches.
	snap, err := e.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf snapBuf
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	e.stop()
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	before := e.store.Bytes()
	e.open()
	if e.store.Bytes() != before {
		t.Fatalf("reopened store indexes %d bytes, had %d", e.store.Bytes(), before)
	}
	if err := e.fsm.Restore(buf.reader()); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != before {
		t.Fatalf("restore duplicated batches: %d bytes, had %d", e.store.Bytes(), before)
	}
	e.build()
	got := e.readAll("t", 0)
	if len(got) != 40 || got[0] != "0" || got[39] != "78" {
		t.Fatalf("after reopen: %v", got)
	}
	if off := e.produce("t", 0, "new"); off[0].Offset != 40 {
		t.Fatalf("offset after reopen %d", off[0].Offset)
	}
}

func TestPruneRespectsSnapshotPins(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	for i := 0; i < 200; i++ {
		e.produce("t", 0, strings.Repeat("v", 100))
	}
	snap, err := e.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.flush.FlushOnce(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	// The pinned snapshot can still stream every batch it captured.
	var buf snapBuf
	if err := snap.Persist(&buf); err != nil {
		t.Fatalf("persist after prune: %v", err)
	}
	snap.Release()
	first := e.wal.FirstIndex()
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if e.wal.FirstIndex() <= first {
		t.Fatalf("WAL not truncated after the pin was released (first index %d)", e.wal.FirstIndex())
	}
	_ = wal.ErrNotFound
}

// Regression: after a restart the pruner may run before Raft has replayed
// the log, when the FSM does not know the topics yet. It must not treat
// their batches as belonging to deleted topics and truncate them away.
func TestPruneBeforeReplayKeepsUnknownTopics(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 1)
	for i := 0; i < 100; i++ {
		e.produce("t", 0, strings.Repeat("v", 100))
	}
	e.stop()
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	held := e.store.Bytes()
	e.open() // fresh FSM: knows nothing, LastApplied 0
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != held || e.wal.FirstIndex() != 2 {
		t.Fatalf("prune before replay dropped data: %d of %d bytes left, first index %d", e.store.Bytes(), held, e.wal.FirstIndex())
	}
	// Once the deletion of the topic is applied, its batches do go.
	e.prop.index = 0
	e.topic("t", 1)
	if _, err := e.admin.CreateTopic(context.Background(), "other", 1, fsm.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.DeleteTopic(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != 0 {
		t.Fatalf("deleted topic's batches still held: %d bytes", e.store.Bytes())
	}
}

// Regression: a partition added to a topic after the last snapshot
// (CreatePartitions at a later Raft index than the topic's ID) is missing
// from the restored FSM until the log is replayed, although its topic is
// known. A pruner running between the restore and the replay must keep its
// batches: replay cannot bring them back (Materialize skips WAL indexes it
// already holds), so dropping them would lose acknowledged records.
func TestPruneBeforeReplayKeepsAddedPartitions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, ProducerConfig{})
	tp := e.topic("t", 1)
	for i := 0; i < 20; i++ {
		e.produce("t", 0, fmt.Sprintf("a%d", i))
	}
	e.flushAll()
	var snap snapBuf
	persistSnapshot(t, e.fsm, &snap)
	snapIndex := e.prop.index
	if _, err := e.admin.CreatePartitions(ctx, "t", 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		e.produce("t", 1, fmt.Sprintf("b%d", i))
		e.produce("t", 0, fmt.Sprintf("c%d", i))
	}
	want0, want1 := e.readAll("t", 0), e.readAll("t", 1)
	e.stop()
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	e.open()
	k1 := fsm.PartitionKey{TopicID: tp.ID, Partition: 1}
	held := e.store.Unflushed(k1, 0)
	if held.Bytes == 0 {
		t.Fatal("the reopened store does not hold partition 1's batches")
	}
	if err := e.fsm.Restore(snap.reader()); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.fsm.Partition(tp.ID, 1); ok {
		t.Fatal("the snapshot already knows partition 1: the test does not cover the restart window")
	}
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if got := e.store.Unflushed(k1, 0); got != held {
		t.Fatalf("prune before replay dropped batches of the added partition: %+v left of %+v", got, held)
	}
	e.replayFrom(snapIndex)
	if got := e.readAll("t", 1); !slices.Equal(got, want1) {
		t.Fatalf("partition 1 after restart: %d records, want %d", len(got), len(want1))
	}
	if got := e.readAll("t", 0); !slices.Equal(got, want0) {
		t.Fatalf("partition 0 after restart: %d records, want %d", len(got), len(want0))
	}
	// Deleting the topic releases every partition, the added one included,
	// and a namesake created afterwards (a new topic ID) does not keep them.
	if err := e.admin.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	e.topic("t", 2)
	if err := PruneOnce(e.fsm, e.store); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != 0 {
		t.Fatalf("deleted topic's batches still held after a namesake was created: %d bytes", e.store.Bytes())
	}
	if got := e.readAll("t", 1); len(got) != 0 {
		t.Fatalf("re-created topic reads %d records of its deleted namesake", len(got))
	}
}

// persistSnapshot writes an FSM snapshot into buf.
func persistSnapshot(t *testing.T, f *fsm.FSM, buf *snapBuf) {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	if err := snap.Persist(buf); err != nil {
		t.Fatal(err)
	}
}

// replayFrom applies the logged commands after index to the FSM, as Raft
// does after restoring a snapshot taken at index.
func (e *env) replayFrom(index uint64) {
	e.t.Helper()
	for i := index; i < uint64(len(e.prop.log)); i++ {
		e.fsm.Apply(&raft.Log{Index: i + 1, Type: raft.LogCommand, Data: e.prop.log[i]})
	}
}

// A request spanning partitions where one partition's batch applies and
// another's fails must not be reported as "definitely not written".
func TestMultiPartitionPartialFailureIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 2)
	tp, _ := e.fsm.Topic("t")
	ctx := context.Background()
	// Fence partition 1 behind the producer's back: its batch will be
	// rejected with a stale epoch (definitely not applied), while
	// partition 0's batch applies.
	if _, err := e.prop.Propose(ctx, fsm.Encode(&fsm.AssignLeader{TopicID: tp.ID, Partition: 1, Leader: "n1", ExpectedEpoch: 1})); err != nil {
		t.Fatal(err)
	}
	stale := &staleEpochMeta{State: e.fsm, topicID: tp.ID, part: 1}
	e.stop()
	e.tasks = newGroup()
	d := e.deps()
	d.FSM = stale
	e.prod = newProducer(e.cfg, d, e.tasks)
	_, err := e.prod.Produce(ctx, "t", []fsm.ProduceRecord{
		{Partition: 0, Record: fsm.Record{Value: []byte("a")}},
		{Partition: 1, Record: fsm.Record{Value: []byte("b")}},
	})
	if !errors.Is(err, fsm.ErrOutcomeUnknown) || errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("partial failure reported as %v", err)
	}
	// Only partition 1 failing: definitely not written, safe to retry.
	_, err = e.prod.Produce(ctx, "t", []fsm.ProduceRecord{{Partition: 1, Record: fsm.Record{Value: []byte("b")}}})
	if !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("single stale partition: %v", err)
	}
}

// staleEpochMeta reports epoch-1 for one partition, as a producer with an
// outdated view would see it.
type staleEpochMeta struct {
	State
	topicID uint64
	part    int32
}

func (s *staleEpochMeta) Partition(id uint64, p int32) (fsm.PartitionInfo, bool) {
	info, ok := s.State.Partition(id, p)
	if ok && id == s.topicID && p == s.part {
		info.LeaderEpoch--
	}
	return info, ok
}

type fakeForwarder struct {
	mu    sync.Mutex
	calls []string
	recs  [][]fsm.ProduceRecord
	err   error
}

func (f *fakeForwarder) ForwardIdempotent(_ context.Context, node string, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, node+"/"+b.Topic)
	if f.err != nil {
		return fsm.IdempotentResult{}, f.err
	}
	return fsm.IdempotentResult{BaseOffset: 100, Count: int32(len(b.Records))}, nil
}

func (f *fakeForwarder) ForwardProduce(_ context.Context, node, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, node+"/"+topic)
	f.recs = append(f.recs, recs)
	if f.err != nil {
		return nil, f.err
	}
	out := make([]fsm.RecordOffset, len(recs))
	for i, r := range recs {
		out[i] = fsm.RecordOffset{Partition: r.Partition, Offset: int64(100 + i)}
	}
	return out, nil
}

func TestProduceForwardsToPartitionLeader(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 3)
	tp, _ := e.fsm.Topic("t")
	ctx := context.Background()
	for _, p := range []int32{1, 2} {
		if _, err := e.prop.Propose(ctx, fsm.Encode(&fsm.AssignLeader{TopicID: tp.ID, Partition: p, Leader: "n2", ExpectedEpoch: 1})); err != nil {
			t.Fatal(err)
		}
	}
	fw := &fakeForwarder{}
	e.fwd = fw
	e.build()
	in := []fsm.ProduceRecord{
		{Partition: 2, Record: fsm.Record{Value: []byte("r2")}},
		{Partition: 0, Record: fsm.Record{Value: []byte("l0")}},
		{Partition: 1, Record: fsm.Record{Value: []byte("r1")}},
	}
	out, err := e.prod.Produce(ctx, "t", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fw.calls) != 1 || fw.calls[0] != "n2/t" || len(fw.recs[0]) != 2 {
		t.Fatalf("forwarded %v %v: want one call to n2 with both remote records", fw.calls, fw.recs)
	}
	if out[1] != (fsm.RecordOffset{Partition: 0, Offset: 0}) || out[0].Partition != 2 || out[2].Partition != 1 {
		t.Fatalf("offsets not mapped back in request order: %+v", out)
	}
	// The receiving side never forwards again.
	if _, err := e.prod.ProduceLocal(ctx, "t", in[:1]); !errors.Is(err, fsm.ErrUnavailable) || !errors.Is(err, fsm.ErrNotLeader) {
		t.Fatalf("ProduceLocal of a remote partition: %v", err)
	}
	if len(fw.calls) != 1 {
		t.Fatal("ProduceLocal forwarded")
	}
	// Error classes through the hop: a definite failure of the only part
	// stays definite; with a local part applied it becomes unknown.
	fw.err = fmt.Errorf("%w: leader refused", fsm.ErrUnavailable)
	if _, err := e.prod.Produce(ctx, "t", in[2:]); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("definite forward failure: %v", err)
	}
	if _, err := e.prod.Produce(ctx, "t", in); !errors.Is(err, fsm.ErrOutcomeUnknown) || errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("local applied + forward failed: %v", err)
	}
	fw.err = fmt.Errorf("%w: connection reset", fsm.ErrOutcomeUnknown)
	if _, err := e.prod.Produce(ctx, "t", in[2:]); !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("unknown forward failure: %v", err)
	}
}

// A partition refuses records while its unflushed count would exceed
// MaxUnflushedRecords, retriably, on the batched and the idempotent path
// alike (nothing flushes in this environment).
func TestProduceRefusesBeyondMaxUnflushedRecords(t *testing.T) {
	e := newEnv(t, ProducerConfig{MaxUnflushedRecords: 10})
	e.topic("t", 1)
	ctx := context.Background()
	recs := func(n int) []fsm.ProduceRecord {
		out := make([]fsm.ProduceRecord, n)
		for i := range out {
			out[i] = fsm.ProduceRecord{Partition: 0, Record: fsm.Record{Value: []byte("v")}}
		}
		return out
	}
	if _, err := e.prod.Produce(ctx, "t", recs(8)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.prod.Produce(ctx, "t", recs(3)); !errors.Is(err, fsm.ErrUnflushedLimit) || !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("11 unflushed records with a bound of 10: %v", err)
	}
	id, err := e.prod.InitProducer(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	b := fsm.IdempotentBatch{Producer: id, Topic: "t", Partition: 0, BaseSeq: 0, Records: []fsm.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}}
	if _, err := e.prod.ProduceIdempotent(ctx, b); !errors.Is(err, fsm.ErrUnflushedLimit) {
		t.Fatalf("idempotent batch beyond the bound: %v", err)
	}
	if _, err := e.prod.Produce(ctx, "t", recs(2)); err != nil {
		t.Fatalf("filling the bound exactly: %v", err)
	}
	// A request that could never fit is invalid, not "retry later".
	if _, err := e.prod.Produce(ctx, "t", recs(11)); !errors.Is(err, fsm.ErrInvalidArgument) {
		t.Fatalf("11 records in one request with a bound of 10: %v", err)
	}
}

// A byte limit that the next record would cross ends the read with what
// fits (it used to re-read the same record forever).
func TestFetchStopsAtTheByteLimit(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100})
	e.topic("t", 1)
	e.produce("t", 0, "aaaa", "bbbb", "cccc")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Each record is 4 + 8 bytes: 20 bytes hold one, not two.
	res, err := e.fetch.Fetch(ctx, fsm.FetchRequest{Topic: "t", MaxBytes: 20})
	if err != nil || len(res.Records) != 1 || res.NextOffset != 1 {
		t.Fatalf("fetch: %v, %d records, next %d", err, len(res.Records), res.NextOffset)
	}
}
