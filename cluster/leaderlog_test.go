package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// heldStore is an in-memory log store whose StoreLogs calls can be held
// (each call waits on the hold channel present when it starts) or failed,
// recording the first index of every call that reached the store.
type heldStore struct {
	*raft.InmemStore

	mu      sync.Mutex
	hold    chan struct{} // non-nil: the next calls wait for it to close
	fail    error         // non-nil: calls fail with it
	calls   [][2]uint64   // first and last index of every stored call
	entered chan [2]uint64
}

func newHeldStore() *heldStore {
	return &heldStore{InmemStore: raft.NewInmemStore(), entered: make(chan [2]uint64, 64)}
}

func (s *heldStore) holdNext() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = make(chan struct{})
	return s.hold
}

func (s *heldStore) release(ch chan struct{}) {
	s.mu.Lock()
	if s.hold == ch {
		s.hold = nil
	}
	s.mu.Unlock()
	close(ch)
}

func (s *heldStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *heldStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *heldStore) StoreLogs(logs []*raft.Log) error {
	span := [2]uint64{logs[0].Index, logs[len(logs)-1].Index}
	s.mu.Lock()
	hold, fail := s.hold, s.fail
	s.mu.Unlock()
	select {
	case s.entered <- span:
	default: // a retry loop must not block on a test that stopped reading
	}
	if hold != nil {
		<-hold
	}
	if fail != nil {
		return fail
	}
	s.mu.Lock()
	s.calls = append(s.calls, span)
	s.mu.Unlock()
	return s.InmemStore.StoreLogs(logs)
}

func (s *heldStore) stored() [][2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]uint64(nil), s.calls...)
}

func commands(first, last uint64) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	return logs
}

type leaderLogRig struct {
	store  *heldStore
	log    *leaderLog
	leader atomic.Bool
	halt   chan struct{}
}

func newLeaderLogRig(t *testing.T) *leaderLogRig {
	t.Helper()
	r := &leaderLogRig{store: newHeldStore(), halt: make(chan struct{})}
	r.leader.Store(true)
	l, err := newLeaderLog(r.store, r.leader.Load, slog.New(slog.DiscardHandler), r.halt)
	if err != nil {
		t.Fatal(err)
	}
	l.min, l.max = time.Millisecond, 5*time.Millisecond
	r.log = l
	t.Cleanup(func() {
		r.stop()
		_ = l.Close()
	})
	return r
}

// queue stores first..last through the log and waits until the store
// got the call (held or not).
func (r *leaderLogRig) queue(t *testing.T, first, last uint64) {
	t.Helper()
	if err := r.log.StoreLogs(commands(first, last)); err != nil {
		t.Fatal(err)
	}
	<-r.store.entered
}

func (r *leaderLogRig) stop() {
	select {
	case <-r.halt:
	default:
		close(r.halt)
	}
}

// TestLeaderLogStoresBehindOnTheLeader: the leader's StoreLogs returns
// while its write is still held, the entries are readable from memory,
// and the durable index moves only when the write is done.
func TestLeaderLogStoresBehindOnTheLeader(t *testing.T) {
	r := newLeaderLogRig(t)
	hold := r.store.holdNext()
	if err := r.log.StoreLogs(commands(1, 3)); err != nil {
		t.Fatal(err)
	}
	if got := <-r.store.entered; got != [2]uint64{1, 3} {
		t.Fatalf("store got %v, want [1 3]", got)
	}
	var e raft.Log
	if err := r.log.GetLog(2, &e); err != nil || e.Index != 2 || e.Data[0] != 2 {
		t.Fatalf("GetLog(2) while the write is held: %+v, %v", e, err)
	}
	if last, err := r.log.LastIndex(); err != nil || last != 3 {
		t.Fatalf("LastIndex while held: %d, %v", last, err)
	}
	if first, err := r.log.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("FirstIndex while held: %d, %v", first, err)
	}
	if d := r.log.Durable(); d != 0 {
		t.Fatalf("durable %d while the write is held", d)
	}
	// Queued meanwhile: one store call for both batches.
	if err := r.log.StoreLogs(commands(4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := r.log.StoreLogs(commands(5, 6)); err != nil {
		t.Fatal(err)
	}
	r.store.release(hold)
	if !r.log.awaitDurable(6) {
		t.Fatal("halted")
	}
	if got := r.store.stored(); len(got) != 2 || got[0] != [2]uint64{1, 3} || got[1] != [2]uint64{4, 6} {
		t.Fatalf("store calls %v, want [1 3] then [4 6]", got)
	}
	if err := r.store.GetLog(6, &e); err != nil || e.Index != 6 {
		t.Fatalf("stored entry 6: %+v, %v", e, err)
	}
}

// TestLeaderLogSynchronousWritesWaitForTheQueue: a follower's StoreLogs,
// a leader's configuration entry and DeleteRange all come after what is
// queued, and return only once durable.
func TestLeaderLogSynchronousWritesWaitForTheQueue(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(r *leaderLogRig) error
		want uint64 // durable when the call returns
	}{
		{"follower", func(r *leaderLogRig) error { r.leader.Store(false); return r.log.StoreLogs(commands(3, 3)) }, 3},
		{"configuration", func(r *leaderLogRig) error {
			return r.log.StoreLogs([]*raft.Log{{Index: 3, Term: 1, Type: raft.LogConfiguration}})
		}, 3},
		{"delete suffix", func(r *leaderLogRig) error { r.leader.Store(false); return r.log.DeleteRange(2, 2) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLeaderLogRig(t)
			hold := r.store.holdNext()
			if err := r.log.StoreLogs(commands(1, 2)); err != nil {
				t.Fatal(err)
			}
			<-r.store.entered
			r.store.mu.Lock()
			r.store.hold = nil // only the queued write is held
			r.store.mu.Unlock()
			done := make(chan error, 1)
			var durableAtReturn atomic.Uint64
			go func() {
				err := tc.call(r)
				durableAtReturn.Store(r.log.Durable())
				done <- err
			}()
			close(hold)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := durableAtReturn.Load(); got != tc.want {
				t.Fatalf("durable %d when the call returned, want %d", got, tc.want)
			}
			calls := r.store.stored()
			if len(calls) == 0 || calls[0] != [2]uint64{1, 2} {
				t.Fatalf("store calls %v: the queued [1 2] must be stored first", calls)
			}
		})
	}
}

// TestLeaderLogFollowerWriteWaitsForTheQueuedBatches: batches the writer
// has not taken yet (it is busy with an earlier one) are stored before a
// follower's write, which waits for them rather than for the store's lock.
func TestLeaderLogFollowerWriteWaitsForTheQueuedBatches(t *testing.T) {
	r := newLeaderLogRig(t)
	waiting := make(chan struct{}, 1)
	r.log.drainWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	hold := r.store.holdNext()
	r.queue(t, 1, 1)
	r.store.mu.Lock()
	r.store.hold = nil
	r.store.mu.Unlock()
	if err := r.log.StoreLogs(commands(2, 2)); err != nil { // queued, not taken
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		r.leader.Store(false)
		done <- r.log.StoreLogs(commands(3, 3))
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		close(hold)
		t.Fatal("the follower's write did not wait for the queued batch")
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	calls := r.store.stored()
	if len(calls) != 3 || calls[0] != [2]uint64{1, 1} || calls[1] != [2]uint64{2, 2} || calls[2] != [2]uint64{3, 3} {
		t.Fatalf("store calls %v, want [1 1] [2 2] [3 3]", calls)
	}
}

// TestLeaderLogHeadCompactionDoesNotWaitForTheWriter: compacting the
// log's head goes on while the writer's write is held (on a full disk it
// is what frees space).
func TestLeaderLogHeadCompactionDoesNotWaitForTheWriter(t *testing.T) {
	r := newLeaderLogRig(t)
	r.queue(t, 1, 2)
	if !r.log.awaitDurable(2) {
		t.Fatal("halted")
	}
	hold := r.store.holdNext()
	r.queue(t, 3, 4)
	done := make(chan error, 1)
	go func() { done <- r.log.DeleteRange(1, 1) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		r.store.release(hold)
		t.Fatal("the head compaction waited for the held write")
	}
	if first, err := r.store.FirstIndex(); err != nil || first != 2 {
		t.Fatalf("first index %d, %v after compacting 1", first, err)
	}
	if d := r.log.Durable(); d != 2 {
		t.Fatalf("durable %d after a head compaction, want 2", d)
	}
	r.store.release(hold)
	if !r.log.awaitDurable(4) {
		t.Fatal("halted")
	}
}

// TestLeaderLogFailedWriteStepsDownAndRetries: a failed write is retried
// until it succeeds, the leader's next StoreLogs fails meanwhile (Raft
// steps down), and nothing is durable before the retry succeeds.
func TestLeaderLogFailedWriteStepsDownAndRetries(t *testing.T) {
	r := newLeaderLogRig(t)
	boom := errors.New("disk full")
	r.store.setFail(boom)
	r.queue(t, 1, 2)
	waitFor(t, 5*time.Second, "the leader's StoreLogs to fail", func() bool {
		err := r.log.StoreLogs(commands(3, 3))
		return errors.Is(err, errLeaderLogFailed) && errors.Is(err, boom)
	})
	if d := r.log.Durable(); d != 0 {
		t.Fatalf("durable %d before any write succeeded", d)
	}
	r.store.setFail(nil)
	if !r.log.awaitDurable(2) {
		t.Fatal("halted")
	}
	if err := r.log.StoreLogs(commands(3, 3)); err != nil {
		t.Fatalf("after the retry succeeded: %v", err)
	}
	if !r.log.awaitDurable(3) {
		t.Fatal("halted")
	}
}

// TestLeaderLogWritesInCommits: the writer stores a queue larger than one
// commit in calls of at most walCommitBytes, so progress (and the durable
// index) moves per commit.
func TestLeaderLogWritesInCommits(t *testing.T) {
	r := newLeaderLogRig(t)
	hold := r.store.holdNext()
	big := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, 3<<20)}
	}
	if err := r.log.StoreLogs([]*raft.Log{big(1)}); err != nil {
		t.Fatal(err)
	}
	<-r.store.entered
	r.store.mu.Lock()
	r.store.hold = nil
	r.store.mu.Unlock()
	if err := r.log.StoreLogs([]*raft.Log{big(2), big(3)}); err != nil {
		t.Fatal(err)
	}
	close(hold)
	if !r.log.awaitDurable(3) {
		t.Fatal("halted")
	}
	if got := r.store.stored(); len(got) != 3 || got[1] != [2]uint64{2, 2} || got[2] != [2]uint64{3, 3} {
		t.Fatalf("store calls %v, want one per 3 MiB entry", got)
	}
}

// firstIndexHeld is a store whose FirstIndex waits for release, having
// read the store before it waits (readFirst) or reading it after.
type firstIndexHeld struct {
	*heldStore
	readFirst        bool
	entered, release chan struct{}
}

func newFirstIndexHeld(readFirst bool) *firstIndexHeld {
	return &firstIndexHeld{heldStore: newHeldStore(), readFirst: readFirst, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *firstIndexHeld) FirstIndex() (uint64, error) {
	var first uint64
	var err error
	if s.readFirst {
		first, err = s.heldStore.FirstIndex()
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	if !s.readFirst {
		first, err = s.heldStore.FirstIndex()
	}
	return first, err
}

// newLeaderLogOn is a leader's leaderLog over store, closed at the end of
// the test.
func newLeaderLogOn(t *testing.T, store raft.LogStore) *leaderLog {
	t.Helper()
	halt := make(chan struct{})
	l, err := newLeaderLog(store, func() bool { return true }, slog.New(slog.DiscardHandler), halt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(halt); _ = l.Close() })
	return l
}

// TestLeaderLogFailureDoesNotWaitForTheStore: a store read that hangs (a
// failing disk) holds up neither Failure, which produce admission asks on
// every request, nor the queue.
func TestLeaderLogFailureDoesNotWaitForTheStore(t *testing.T) {
	store := newFirstIndexHeld(false)
	l := newLeaderLogOn(t, store)
	read := make(chan uint64, 1)
	go func() {
		first, _ := l.FirstIndex()
		read <- first
	}()
	<-store.entered
	var once sync.Once
	release := func() { once.Do(func() { close(store.release) }) }
	defer release()
	answered := make(chan error, 1)
	go func() {
		_, _ = l.Failure()
		answered <- l.StoreLogs(commands(1, 2))
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("Failure or StoreLogs waited for a held FirstIndex of the store")
	}
	release()
	// The held read began before 1..2 were queued: it answers 0 or 1.
	if first := <-read; first > 1 {
		t.Fatalf("FirstIndex = %d, want 0 or 1", first)
	}
	if first, err := l.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("FirstIndex = %d, %v; want 1", first, err)
	}
}

// TestLeaderLogFirstIndexSeesWhatTheWriterStored: a FirstIndex that read
// the store empty while the writer stored the queued entries and dropped
// them from memory answers the stored first index, not 0 for a log that
// was never empty.
func TestLeaderLogFirstIndexSeesWhatTheWriterStored(t *testing.T) {
	store := newFirstIndexHeld(true)
	l := newLeaderLogOn(t, store)
	hold := store.holdNext()
	if err := l.StoreLogs(commands(1, 2)); err != nil {
		t.Fatal(err)
	}
	<-store.heldStore.entered // the writer holds 1..2
	read := make(chan uint64, 1)
	go func() {
		first, _ := l.FirstIndex()
		read <- first
	}()
	<-store.entered // the read saw an empty store
	store.heldStore.release(hold)
	if !l.awaitDurable(2) {
		t.Fatal("halted")
	}
	close(store.release)
	if first := <-read; first != 1 {
		t.Fatalf("FirstIndex = %d, want 1 (the log was never empty during the call)", first)
	}
}

// TestLeaderLogHaltStopsTheWriter: halted while the write fails, the
// waiters return false and nothing queued later is written past the gap.
func TestLeaderLogHaltStopsTheWriter(t *testing.T) {
	r := newLeaderLogRig(t)
	r.store.setFail(errors.New("io error"))
	r.queue(t, 1, 2)
	waiting := make(chan bool)
	go func() { waiting <- r.log.awaitDurable(2) }()
	r.stop()
	if <-waiting {
		t.Fatal("awaitDurable reported durable after a halt without a write")
	}
	if err := r.log.Close(); err != nil {
		t.Fatal(err)
	}
	r.store.setFail(nil)
	if err := r.log.StoreLogs(commands(3, 3)); err == nil {
		t.Fatal("StoreLogs after Close succeeded")
	}
	if calls := r.store.stored(); len(calls) != 0 {
		t.Fatalf("stored %v after a halted failure", calls)
	}
}

// TestLeaderLogQueueIsBounded: past the byte bound the leader's StoreLogs
// waits for the writer.
func TestLeaderLogQueueIsBounded(t *testing.T) {
	r := newLeaderLogRig(t)
	r.log.maxBytes = 2
	hold := r.store.holdNext()
	r.queue(t, 1, 2)
	done := make(chan uint64, 1)
	go func() {
		if err := r.log.StoreLogs(commands(3, 3)); err != nil {
			t.Error(err)
		}
		done <- r.log.Durable()
	}()
	r.store.release(hold)
	if d := <-done; d < 2 {
		t.Fatalf("the over-bound StoreLogs returned with durable %d, before the queue was written", d)
	}
}

// TestLeaderLogOpensDurable: what is on disk when the log opens is durable.
func TestLeaderLogOpensDurable(t *testing.T) {
	s := newHeldStore()
	if err := s.StoreLogs(commands(1, 5)); err != nil {
		t.Fatal(err)
	}
	<-s.entered
	l, err := newLeaderLog(s, func() bool { return true }, slog.New(slog.DiscardHandler), make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if d := l.Durable(); d != 5 {
		t.Fatalf("durable %d, want 5", d)
	}
	// A prefix compaction below it leaves it.
	if err := l.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	if d := l.Durable(); d != 5 {
		t.Fatalf("durable %d after a prefix compaction, want 5", d)
	}
}

type recordingFSM struct {
	mu      sync.Mutex
	applied []uint64
}

func (f *recordingFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, l.Index)
	return nil
}

func (f *recordingFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	for _, l := range logs {
		f.Apply(l)
	}
	return make([]interface{}, len(logs))
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no") }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return nil }

// TestDurableFSMAppliesOnlyDurableEntries: the FSM applies a batch only
// once the durable index covers it, and exits its goroutine instead of
// applying when the wait is halted.
func TestDurableFSMAppliesOnlyDurableEntries(t *testing.T) {
	r := newLeaderLogRig(t)
	inner := &recordingFSM{}
	f := withDurableApply(inner, r.log.awaitDurable)
	b, ok := f.(raft.BatchingFSM)
	if !ok {
		t.Fatal("the batching FSM lost its ApplyBatch")
	}
	hold := r.store.holdNext()
	r.queue(t, 1, 2)
	applied := make(chan uint64, 1)
	go func() {
		b.ApplyBatch(commands(1, 2))
		applied <- r.log.Durable()
	}()
	r.store.release(hold)
	if d := <-applied; d < 2 {
		t.Fatalf("applied with durable %d", d)
	}

	// Halted while entry 3 is not durable: no apply, the goroutine exits.
	r.store.setFail(errors.New("io error"))
	r.queue(t, 3, 3)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		f.Apply(commands(3, 3)[0])
		t.Error("Apply returned after a halt")
	}()
	r.stop()
	<-exited
	inner.mu.Lock()
	defer inner.mu.Unlock()
	if len(inner.applied) != 2 {
		t.Fatalf("applied %v, want only 1 and 2", inner.applied)
	}
}

type recordingTransport struct {
	gatedTransport
	mu     sync.Mutex
	commit []uint64
}

func (t *recordingTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress, args *raft.AppendEntriesRequest, _ *raft.AppendEntriesResponse) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.commit = append(t.commit, args.LeaderCommitIndex)
	return nil
}

// TestRaftGateCapsTheCommitIndex: an AppendEntries carries at most the
// leader's durable index as its commit index, and the caller's request is
// left as it was.
func TestRaftGateCapsTheCommitIndex(t *testing.T) {
	_, inner := raft.NewInmemTransport("")
	rec := &recordingTransport{gatedTransport: inner}
	g := newRaftGate(rec, slog.New(slog.DiscardHandler))
	var durable atomic.Uint64
	durable.Store(7)
	g.commitCap = durable.Load
	for _, c := range []uint64{5, 9} {
		req := &raft.AppendEntriesRequest{LeaderCommitIndex: c}
		if err := g.AppendEntries("b", "b", req, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
		if req.LeaderCommitIndex != c {
			t.Fatalf("the caller's request changed to %d", req.LeaderCommitIndex)
		}
	}
	if rec.commit[0] != 5 || rec.commit[1] != 7 {
		t.Fatalf("sent commit indexes %v, want [5 7]", rec.commit)
	}
	_ = inner.Close()
}

// holdingLog holds every StoreLogs that starts while hold is set (or
// that carries a configuration entry while holdConfig is set), and
// records the first index it held.
type holdingLog struct {
	raft.LogStore
	hold       atomic.Pointer[chan struct{}]
	holdConfig atomic.Pointer[chan struct{}]
	heldFirst  atomic.Uint64
	fail       atomic.Bool
}

var errInjectedLogWrite = errors.New("injected raft log write failure")

func (h *holdingLog) StoreLog(l *raft.Log) error { return h.StoreLogs([]*raft.Log{l}) }

func (h *holdingLog) StoreLogs(logs []*raft.Log) error {
	if h.fail.Load() {
		return errInjectedLogWrite
	}
	ch := h.hold.Load()
	if ch == nil && hasConfiguration(logs) {
		ch = h.holdConfig.Load()
	}
	if ch != nil {
		h.heldFirst.CompareAndSwap(0, logs[0].Index)
		<-*ch
	}
	return h.LogStore.StoreLogs(logs)
}

func (h *holdingLog) IsMonotonic() bool { return true }

// startHoldingCluster starts three agents whose Raft log stores are
// wrapped in a holdingLog each.
func startHoldingCluster(t *testing.T, edits ...func(*Config)) (*testCluster, func(id string) *holdingLog) {
	c := newTestCluster(t)
	var mu sync.Mutex
	logs := map[string]*holdingLog{}
	c.edit = func(cfg *Config) {
		id := cfg.NodeID
		// Slower elections than fastConfig's, so that leadership stays
		// put on a loaded machine while a test holds the leader's write.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
		cfg.wrapLog = func(s raft.LogStore) raft.LogStore {
			h := &holdingLog{LogStore: s}
			mu.Lock()
			logs[id] = h
			mu.Unlock()
			return h
		}
		for _, e := range edits {
			e(cfg)
		}
	}
	c.startBootstrapped("n1", "n2", "n3")
	return c, func(id string) *holdingLog {
		mu.Lock()
		defer mu.Unlock()
		return logs[id]
	}
}

// TestClusterMovesLeadershipOffAFailingLeaderLog: when the leader's own
// log write fails, leadership moves, the others go on committing, and the
// agent catches up once its disk takes the write.
func TestClusterMovesLeadershipOffAFailingLeaderLog(t *testing.T) {
	c, logOf := startHoldingCluster(t)
	createTopic(t, c.waitLeader(30*time.Second), "before", 1)
	// Leadership can still move right after the start; try again until
	// the failing write is the leader's own.
	var lead *testNode
	var h *holdingLog
	first := make(chan error, 1)
	for attempt := 0; lead == nil; attempt++ {
		if attempt == 5 {
			t.Fatal("the leader's own write never failed")
		}
		l := c.waitLeader(30 * time.Second)
		lh := logOf(l.id)
		lh.fail.Store(true)
		go func() {
			_, err := propose(t, l, &fsm.CreateTopic{Name: fmt.Sprintf("during-%d", attempt), Partitions: 1, Leaders: []string{l.id}})
			first <- err
		}()
		waitFor(t, 10*time.Second, "the leader's write to fail or leadership to move", func() bool {
			_, err := l.node.leaderLog.Failure()
			return err != nil || !l.node.IsLeader()
		})
		if _, err := l.node.leaderLog.Failure(); err != nil {
			lead, h = l, lh
			break
		}
		lh.fail.Store(false)
		<-first
	}
	next := c.waitLeaderNot(lead.id)
	if _, err := propose(t, next, &fsm.CreateTopic{Name: "after", Partitions: 1, Leaders: []string{next.id}}); err != nil {
		t.Fatalf("propose on the new leader %s: %v", next.id, err)
	}
	if ready, why := lead.node.Ready(); ready || why == "" {
		t.Errorf("the agent with the failing log write is ready (%v, %q)", ready, why)
	}
	if st, stalled := lead.node.StorageStall(); !stalled || st.Err == nil {
		t.Errorf("the agent with the failing log write reports no storage stall (%v, %v): produce would not be refused", st, stalled)
	}
	h.fail.Store(false)
	<-first // answered either way; what it answered is checked below
	waitSameLog(t, c, next, "before", "after")
}

// waitSameLog waits until every running agent applied what next applied,
// then checks that each holds the named topics.
func waitSameLog(t *testing.T, c *testCluster, next *testNode, topics ...string) {
	t.Helper()
	waitFor(t, 20*time.Second, "every agent to apply the same log", func() bool {
		want := next.fsm.LastApplied()
		for _, n := range c.running() {
			if n.fsm.LastApplied() < want {
				return false
			}
		}
		return true
	})
	for _, n := range c.running() {
		for _, name := range topics {
			if _, ok := n.fsm.Topic(name); !ok {
				t.Errorf("%s lacks topic %q", n.id, name)
			}
		}
	}
}

// TestClusterAppliesNothingBeforeTheLeaderHoldsItDurably: with the Raft
// leader's own log write held, Raft commits on the followers' fsyncs, but
// no agent applies those entries, no follower learns a commit index past
// the leader's durable one, and no proposal is answered; once the write
// completes, everything is applied and answered.
func TestClusterAppliesNothingBeforeTheLeaderHoldsItDurably(t *testing.T) {
	c, logOf := startHoldingCluster(t)
	lead := c.waitLeader(30 * time.Second)
	createTopic(t, lead, "before", 1)
	r := lead.node.r()
	h := logOf(lead.id)
	hold := make(chan struct{})
	h.hold.Store(&hold)
	released := false
	defer func() {
		if !released {
			close(hold)
		}
	}()

	answers := make(chan error, 2)
	proposeBg := func(name string) {
		go func() {
			_, err := propose(t, lead, &fsm.CreateTopic{Name: name, Partitions: 1, Leaders: []string{lead.id}})
			answers <- err
		}()
	}
	proposeBg("held-1")
	waitFor(t, 10*time.Second, "the leader's write to be held", func() bool { return h.heldFirst.Load() != 0 })
	first := h.heldFirst.Load()
	waitFor(t, 10*time.Second, "raft to commit without the leader's write", func() bool { return r.CommitIndex() >= first })
	// An entry dispatched after that commit: the AppendEntries carrying it
	// would tell the followers a commit index at or past first.
	after := r.LastIndex()
	proposeBg("held-2")
	waitFor(t, 10*time.Second, "raft to commit an entry sent after that", func() bool { return r.CommitIndex() > after })

	if d := lead.node.leaderLog.Durable(); d >= first {
		t.Fatalf("leader durable %d while its write from %d is held", d, first)
	}
	for _, n := range c.running() {
		if applied := n.fsm.LastApplied(); applied >= first {
			t.Errorf("%s applied %d while the leader's write from %d is held", n.id, applied, first)
		}
		if n != lead {
			if ci := n.node.r().CommitIndex(); ci >= first {
				t.Errorf("follower %s learned commit index %d while the leader's write from %d is held", n.id, ci, first)
			}
		}
	}
	select {
	case err := <-answers:
		t.Fatalf("a proposal was answered (%v) while the leader's write was held", err)
	default:
	}

	h.hold.Store(nil)
	close(hold)
	released = true
	for range 2 {
		if err := <-answers; err != nil {
			t.Fatalf("proposal after the release: %v", err)
		}
	}
	last := r.LastIndex()
	waitFor(t, 10*time.Second, "every agent to apply the held entries", func() bool {
		for _, n := range c.running() {
			if n.fsm.LastApplied() < after+1 || n.node.r().CommitIndex() < min(last, after+1) {
				return false
			}
		}
		return true
	})
}
