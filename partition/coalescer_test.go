package partition

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

type produced struct {
	offs []fsm.RecordOffset
	err  error
}

func (e *env) produceAsync(topic string, part int32, vals ...string) <-chan produced {
	out := make(chan produced, 1)
	recs := make([]fsm.ProduceRecord, len(vals))
	for i, v := range vals {
		recs[i] = fsm.ProduceRecord{Partition: part, Record: fsm.Record{Value: []byte(v)}}
	}
	go func() {
		offs, err := e.prod.Produce(context.Background(), topic, recs)
		out <- produced{offs, err}
	}()
	return out
}

func waitProduced(t *testing.T, ch <-chan produced) produced {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("produce did not return")
		return produced{}
	}
}

// entriesOf decodes the proposed AppendBatch(es) commands: the batches of
// each Raft entry.
func entriesOf(t *testing.T, log [][]byte) [][]*fsm.AppendBatch {
	t.Helper()
	var out [][]*fsm.AppendBatch
	for _, b := range log {
		cmd, err := fsm.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		switch c := cmd.(type) {
		case *fsm.AppendBatch:
			out = append(out, []*fsm.AppendBatch{c})
		case *fsm.AppendBatches:
			out = append(out, c.Batches)
		}
	}
	return out
}

// While one entry is in flight, the batches of every partition (and of
// several requests to one partition, and an idempotent producer's) ready
// meanwhile go out as ONE AppendBatches entry; each request gets its own
// outcome, and a batch refused for a stale epoch fails alone.
func TestCoalescerGroupsPartitionsIntoOneEntry(t *testing.T) {
	e := newEnv(t, ProducerConfig{BatchSize: 100, Coalescer: CoalescerConfig{MaxInFlight: 1}})
	top := e.topic("t", 8)
	pid, err := e.prod.InitProducer(context.Background(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	gate := newProposeGate(e)

	first := e.produceAsync("t", 0, "p0") // proposed at once, held in "Raft"
	testkit.WaitFor(t, 10*time.Second, "the first proposal in flight", func() bool { return gate.entered.Load() == 1 })
	c := e.prod.coalescer
	queued := func(n int64) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, "batches queued behind the first", func() bool { return c.queued.Load() == n })
	}
	rest := []<-chan produced{e.produceAsync("t", 1, "v")}
	queued(2)
	second := e.produceAsync("t", 1, "w", "x") // a second request (batch) for partition 1
	queued(3)
	for p := int32(2); p < 8; p++ {
		rest = append(rest, e.produceAsync("t", p, "v"))
	}
	idem := make(chan error, 1)
	var idemRes fsm.IdempotentResult
	go func() {
		var err error
		idemRes, err = e.prod.ProduceIdempotent(context.Background(), fsm.IdempotentBatch{Topic: "t", Partition: 5, Producer: pid, BaseSeq: 0, Records: []fsm.Record{{Value: []byte("i")}}})
		idem <- err
	}()
	queued(10)
	// Partition 3 moves on (epoch 2) behind its queued batch's back.
	if _, err := e.prop.Propose(context.Background(), fsm.Encode(&fsm.AssignLeader{TopicID: top.ID, Partition: 3, Leader: "n1", ExpectedEpoch: 1})); err != nil {
		t.Fatal(err)
	}
	gate.open()

	if r := waitProduced(t, first); r.err != nil || r.offs[0].Offset != 0 {
		t.Fatalf("first: %+v", r)
	}
	if err := <-idem; err != nil || idemRes.Count != 1 {
		t.Fatalf("idempotent batch: %+v %v", idemRes, err)
	}
	for i, ch := range rest {
		part := int32(i + 1)
		r := waitProduced(t, ch)
		want := int64(0)
		if part == 5 { // shares the entry with the idempotent batch, in queue order
			want = 1 - idemRes.BaseOffset
		}
		if part == 3 {
			if !errors.Is(r.err, fsm.ErrStaleEpoch) || !errors.Is(r.err, fsm.ErrUnavailable) {
				t.Fatalf("partition 3: %v, want a definite stale-epoch failure", r.err)
			}
			continue
		}
		if r.err != nil || r.offs[0] != (fsm.RecordOffset{Partition: part, Offset: want}) {
			t.Fatalf("partition %d: %+v", part, r)
		}
	}
	if r := waitProduced(t, second); r.err != nil || r.offs[0].Offset != 1 || r.offs[1].Offset != 2 {
		t.Fatalf("second request for partition 1: %+v", r)
	}

	entries := entriesOf(t, e.prop.log)
	last := entries[len(entries)-1]
	if len(entries) != 2 || len(entries[0]) != 1 || len(last) != 9 {
		t.Fatalf("proposed entries of %v batches; want one alone, then one of 9", batchCounts(entries))
	}
	parts := map[int32]int{}
	for _, b := range last {
		parts[b.Partition]++
	}
	if len(parts) != 7 || parts[1] != 2 {
		t.Fatalf("the grouped entry holds partitions %v", parts)
	}
	if got := e.readAll("t", 1); len(got) != 3 || got[0] != "v" || got[2] != "x" {
		t.Fatalf("partition 1 reads %q", got)
	}
}

func batchCounts(entries [][]*fsm.AppendBatch) []int {
	out := make([]int, len(entries))
	for i, e := range entries {
		out[i] = len(e)
	}
	return out
}

// An idle agent adds no wait: with nothing in flight each batch is
// proposed at once, alone, as a plain AppendBatch.
func TestCoalescerProposesAtOnceWhenIdle(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	e.topic("t", 2)
	for i := 0; i < 3; i++ {
		e.produce("t", int32(i%2), "v")
	}
	if got := batchCounts(entriesOf(t, e.prop.log)); len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("entries %v, want three single batches", got)
	}
	for _, b := range e.prop.log[1:] {
		if b[0] != byte(fsm.CmdAppendBatch) {
			t.Fatalf("a lone batch was proposed as %s", fsm.CommandType(b[0]))
		}
	}
}

// A failed entry fails every batch in it with the entry's outcome class.
func TestCoalescerFailsEveryBatchOfAFailedEntry(t *testing.T) {
	e := newEnv(t, ProducerConfig{Coalescer: CoalescerConfig{MaxInFlight: 1}})
	e.topic("t", 4)
	gate := newProposeGate(e)
	first := e.produceAsync("t", 0, "a")
	testkit.WaitFor(t, 10*time.Second, "the first proposal in flight", func() bool { return gate.entered.Load() == 1 })
	var rest []<-chan produced
	for p := int32(1); p < 4; p++ {
		rest = append(rest, e.produceAsync("t", p, "b"))
	}
	testkit.WaitFor(t, 10*time.Second, "three batches queued", func() bool { return e.prod.coalescer.queued.Load() == 4 })
	e.prop.mu.Lock()
	e.prop.fail = errors.Join(fsm.ErrOutcomeUnknown, errors.New("leadership lost"))
	e.prop.mu.Unlock()
	gate.open()
	for _, ch := range append(rest, first) {
		if r := waitProduced(t, ch); !errors.Is(r.err, fsm.ErrOutcomeUnknown) {
			t.Fatalf("produce: %v, want outcome unknown", r.err)
		}
	}
}

// With two entries allowed in flight, the second batch goes out at once
// and what is sealed while both are in flight gathers into the third.
func TestCoalescerKeepsMaxInFlightEntries(t *testing.T) {
	e := newEnv(t, ProducerConfig{Coalescer: CoalescerConfig{MaxInFlight: 2}})
	e.topic("t", 6)
	gate := newProposeGate(e)
	chs := []<-chan produced{e.produceAsync("t", 0, "a")}
	testkit.WaitFor(t, 10*time.Second, "one entry in flight", func() bool { return gate.entered.Load() == 1 })
	chs = append(chs, e.produceAsync("t", 1, "b"))
	testkit.WaitFor(t, 10*time.Second, "two entries in flight", func() bool { return gate.entered.Load() == 2 })
	for p := int32(2); p < 6; p++ {
		chs = append(chs, e.produceAsync("t", p, "c"))
	}
	testkit.WaitFor(t, 10*time.Second, "six batches queued", func() bool { return e.prod.coalescer.queued.Load() == 6 })
	if n := gate.entered.Load(); n != 2 {
		t.Fatalf("%d entries proposed, want 2 in flight", n)
	}
	gate.open()
	for _, ch := range chs {
		if r := waitProduced(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	// The third entry goes out when either of the first two returned;
	// entries are applied in the order they were started.
	got := batchCounts(entriesOf(t, e.prop.log))
	if len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 4 {
		t.Fatalf("entries of %v batches, want 1, 1 and 4", got)
	}
}

// Batches of one partition sealed one after another while earlier ones
// are in flight go out in separate entries, all in flight at once, and are
// applied in sealing order: the coalescer starts entries in order from one
// goroutine (the test node, like Raft's leader, applies in start order).
func TestCoalescerAppliesEntriesInSealingOrder(t *testing.T) {
	e := newEnv(t, ProducerConfig{Coalescer: CoalescerConfig{MaxInFlight: 4}})
	e.topic("t", 1)
	gate := newProposeGate(e)
	var chs []<-chan produced
	for i := 0; i < 4; i++ {
		chs = append(chs, e.produceAsync("t", 0, fmt.Sprint(i)))
		testkit.WaitFor(t, 10*time.Second, "the entry in flight", func() bool { return gate.entered.Load() == int32(i+1) })
	}
	gate.open()
	for i, ch := range chs {
		if r := waitProduced(t, ch); r.err != nil || r.offs[0].Offset != int64(i) {
			t.Fatalf("batch %d: %+v", i, r)
		}
	}
	if got := e.readAll("t", 0); len(got) != 4 || got[0] != "0" || got[3] != "3" {
		t.Fatalf("partition reads %q", got)
	}
}

// AppendBatches entries become one WAL entry each; every batch in them is
// read back per partition, reindexed when the WAL is reopened, and
// delivered to a new agent that installs a snapshot.
func TestStoreHoldsMultiBatchEntries(t *testing.T) {
	e := newEnv(t, ProducerConfig{})
	top := e.topic("t", 3)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		var bs []*fsm.AppendBatch
		for p := int32(0); p < 3; p++ {
			rec := fsm.Record{Value: []byte(fmt.Sprintf("%d-%d", p, i))}
			bs = append(bs, &fsm.AppendBatch{TopicID: top.ID, Partition: p, LeaderEpoch: 1, Count: 1, Records: fsm.AppendRecords(nil, []fsm.Record{rec})})
		}
		res, err := e.prop.Propose(ctx, fsm.Encode(&fsm.AppendBatches{Batches: bs}))
		if err != nil {
			t.Fatal(err)
		}
		for p, r := range res.Batches {
			if r.Err() != nil || r.BaseOffset != int64(i) {
				t.Fatalf("entry %d batch %d: %+v", i, p, r)
			}
		}
	}
	check := func(e *env, when string) {
		t.Helper()
		for p := int32(0); p < 3; p++ {
			got := e.readAll("t", p)
			if len(got) != 5 || got[0] != fmt.Sprintf("%d-0", p) || got[4] != fmt.Sprintf("%d-4", p) {
				t.Fatalf("%s: partition %d reads %q", when, p, got)
			}
		}
	}
	check(e, "written")
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
	if err := e.fsm.Restore(buf.reader()); err != nil {
		t.Fatal(err)
	}
	if e.store.Bytes() != before {
		t.Fatalf("reopened store indexes %d bytes, had %d", e.store.Bytes(), before)
	}
	check(e, "reopened")

	fresh := newEnv(t, ProducerConfig{})
	if err := fresh.fsm.Restore(buf.reader()); err != nil {
		t.Fatal(err)
	}
	check(fresh, "installed on a new agent")
}
