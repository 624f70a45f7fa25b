package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// leaderLogQueueBytes bounds the entry bytes the leader's write-behind
// queue holds; past it the leader's StoreLogs waits for the writer.
const leaderLogQueueBytes = 64 << 20

// errLeaderLogFailed: the writer could not store the leader's queued
// entries; the leader's next StoreLogs returns it (wrapping the store's
// error), so Raft steps down.
var errLeaderLogFailed = errors.New("cluster: the raft leader's queued log entries could not be stored")

// leaderLog writes the Raft leader's own log entries in parallel with
// their replication (DESIGN.md, "The leader's own log write in parallel
// with replication"). On the leader a StoreLogs of commands is queued and
// returns; one writer goroutine stores the queue in order and advances the
// durable index. Every other write is synchronous and ordered behind the
// queue. awaitDurable (the FSM) and commitCap (the transport) keep
// anything from being applied before the leader's own copy is durable.
//
// Locks: wmu (every call into the store that writes; held by the writer
// across a batch and its retries), then mu (the queue and the counters).
// mu is never held across a write.
type leaderLog struct {
	store  raft.LogStore
	leader func() bool // Raft's state is Leader (read on Raft's goroutine)
	log    *slog.Logger
	halt   <-chan struct{}

	maxBytes int
	min, max time.Duration // the writer's retry waits

	wmu sync.Mutex

	mu      sync.Mutex
	queue   []*raft.Log // not yet taken by the writer, oldest first
	writing []*raft.Log // taken by the writer, not yet stored
	gen     uint64      // counts every change of what the store holds through this log (a stored commit, a synchronous write, a tail deletion)
	bytes   int         // entry bytes in queue and writing
	queued  uint64      // batches queued so far
	stored  uint64      // batches stored so far
	failed  error       // the writer's failure while it retries (nil: none)
	closed  bool
	changed chan struct{} // closed and replaced when stored, durable or failed change

	// durable: every entry of the log at or below it is on disk.
	durable atomic.Uint64

	failNotify chan struct{} // capacity 1: signalled when a write fails

	wake chan struct{} // capacity 1: the queue has work
	stop chan struct{}
	done chan struct{}

	drainWait func() // tests: called when drain starts to wait
}

// newLeaderLog wraps store; halt ends the writer's retries and every wait.
// The log's entries on disk when it opens are durable.
func newLeaderLog(store raft.LogStore, leader func() bool, log *slog.Logger, halt <-chan struct{}) (*leaderLog, error) {
	last, err := store.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log last index: %w", err)
	}
	l := &leaderLog{
		store: store, leader: leader, log: log, halt: halt,
		maxBytes: leaderLogQueueBytes, min: 10 * time.Millisecond, max: time.Second,
		changed: make(chan struct{}), wake: make(chan struct{}, 1), failNotify: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	l.durable.Store(last)
	go l.run()
	return l, nil
}

// IsMonotonic implements raft.MonotonicLogStore for the wrapped store.
func (l *leaderLog) IsMonotonic() bool {
	m, ok := l.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// Durable is the durable index: every entry at or below it is on disk. It
// is also the highest commit index the leader may tell a follower
// (raftGate.commitCap).
func (l *leaderLog) Durable() uint64 { return l.durable.Load() }

// awaitDurable waits until the durable index reaches index. It returns
// false when halted first.
func (l *leaderLog) awaitDurable(index uint64) bool {
	for {
		if l.durable.Load() >= index {
			return true
		}
		ch := l.changes()
		if l.durable.Load() >= index {
			return true
		}
		select {
		case <-ch:
		case <-l.halt:
			return l.durable.Load() >= index
		}
	}
}

func (l *leaderLog) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// notify wakes every waiter (mu held).
func (l *leaderLog) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// GetLog implements raft.LogStore: a queued entry from memory, else the
// store. The writer drops entries from memory only after storing them.
func (l *leaderLog) GetLog(index uint64, log *raft.Log) error {
	l.mu.Lock()
	if e := l.pendingAt(index); e != nil {
		*log = *e
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	return l.store.GetLog(index, log)
}

// pendingAt is the queued or in-flight entry at index, or nil (mu held).
func (l *leaderLog) pendingAt(index uint64) *raft.Log {
	for _, s := range [][]*raft.Log{l.writing, l.queue} {
		if len(s) > 0 && index >= s[0].Index && index <= s[len(s)-1].Index {
			if e := s[index-s[0].Index]; e.Index == index {
				return e
			}
		}
	}
	return nil
}

// FirstIndex implements raft.LogStore. mu is not held across the store's
// call (a failing disk must not hold up Failure, which produce admission
// asks on every request): an empty store is checked against the entries
// in memory, and read again if anything was stored through this log
// meanwhile (gen: the writer's commits, synchronous writes, tail
// deletions).
func (l *leaderLog) FirstIndex() (uint64, error) {
	for {
		l.mu.Lock()
		gen := l.gen
		l.mu.Unlock()
		first, err := l.store.FirstIndex()
		if err != nil || first != 0 {
			return first, err
		}
		l.mu.Lock()
		first, again := l.pendingFirst(), l.gen != gen
		l.mu.Unlock()
		if !again {
			return first, nil
		}
	}
}

// pendingFirst is the first index in flight or queued, or 0 (mu held).
func (l *leaderLog) pendingFirst() uint64 {
	for _, s := range [][]*raft.Log{l.writing, l.queue} {
		if len(s) > 0 {
			return s[0].Index
		}
	}
	return 0
}

// LastIndex implements raft.LogStore: the last entry in memory, else the
// store's (read without the lock: with nothing in memory the writer has
// nothing to move).
func (l *leaderLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	for _, s := range [][]*raft.Log{l.queue, l.writing} {
		if len(s) > 0 {
			l.mu.Unlock()
			return s[len(s)-1].Index, nil
		}
	}
	l.mu.Unlock()
	return l.store.LastIndex()
}

// StoreLog implements raft.LogStore.
func (l *leaderLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: queued on the leader (commands
// only), synchronous otherwise.
func (l *leaderLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if !l.leader() || hasConfiguration(logs) {
		return l.storeNow(logs)
	}
	size := logsBytes(logs)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return ErrClosed
		}
		if l.failed != nil {
			return fmt.Errorf("%w: %w", errLeaderLogFailed, l.failed)
		}
		if l.bytes == 0 || l.bytes+size <= l.maxBytes {
			break
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-l.halt:
		}
		l.mu.Lock()
		select {
		case <-l.halt:
			return ErrClosed
		default:
		}
	}
	l.queue = append(l.queue, logs...)
	l.bytes += size
	l.queued++
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func hasConfiguration(logs []*raft.Log) bool {
	for _, e := range logs {
		if e.Type == raft.LogConfiguration {
			return true
		}
	}
	return false
}

// storeNow stores logs after everything queued before them.
func (l *leaderLog) storeNow(logs []*raft.Log) error {
	if err := l.drain(); err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.store.StoreLogs(logs); err != nil {
		return err
	}
	l.setDurable(logs[len(logs)-1].Index)
	return nil
}

// DeleteRange implements raft.LogStore. A compaction of the log's head
// (hi below the last index) touches neither the queue nor the tail, so it
// goes straight to the store (which serializes it with writes), never
// waiting behind a write the writer retries: on a full disk it is what
// frees space. A deletion of the tail (a conflicting suffix, the clear
// after a snapshot install) comes after everything queued and lowers the
// durable index to lo-1, whether or not it succeeded: the store distrusts
// what a failed one covered.
func (l *leaderLog) DeleteRange(lo, hi uint64) error {
	last, err := l.LastIndex()
	if err != nil {
		return err
	}
	if hi < last {
		return l.store.DeleteRange(lo, hi)
	}
	if err := l.drain(); err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err = l.store.DeleteRange(lo, hi)
	if d := l.durable.Load(); lo <= d && d <= hi {
		l.setDurable(lo - 1)
	}
	return err
}

// setDurable records the durable index and wakes the waiters (wmu held).
func (l *leaderLog) setDurable(index uint64) {
	l.mu.Lock()
	l.gen++
	l.durable.Store(index)
	l.notify()
	l.mu.Unlock()
}

// drain waits until every batch queued before the call is stored. On the
// leader a writer failure is returned at once (Raft steps down); anywhere
// else the call waits for the writer's retry, as a follower's write waits
// for its own (retryingLogs).
func (l *leaderLog) drain() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.queued
	for l.stored < target {
		if l.closed {
			return ErrClosed
		}
		if l.failed != nil && l.leader() {
			return fmt.Errorf("%w: %w", errLeaderLogFailed, l.failed)
		}
		ch := l.changed
		l.mu.Unlock()
		if l.drainWait != nil {
			l.drainWait()
		}
		select {
		case <-ch:
		case <-l.halt:
			l.mu.Lock()
			if l.stored < target {
				return ErrClosed
			}
			return nil
		}
		l.mu.Lock()
	}
	return nil
}

// run is the writer: it stores what is queued, every batch queued
// meanwhile in one call, until Close.
func (l *leaderLog) run() {
	defer close(l.done)
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			l.write() // the last queued entries get their attempt
			return
		}
		if !l.write() {
			return
		}
	}
}

// write stores the queue in commits of at most walCommitBytes, each
// retried until it succeeds or the log halts, the durable index advancing
// after each. It reports whether the queue was stored; after a halted
// failure the writer stops.
func (l *leaderLog) write() bool {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	batch, batches := l.queue, l.queued-l.stored
	l.writing, l.queue = batch, nil
	l.mu.Unlock()
	for len(batch) > 0 {
		chunk := batch[:commitLen(batch, walCommitBytes)]
		err := retryWrite(l.log, "the raft leader's log entries", l.min, l.max, l.halt, func() error {
			err := l.store.StoreLogs(chunk)
			if err != nil {
				l.setFailed(err)
			}
			return err
		})
		if err != nil {
			// Halted (the last attempt recorded the failure): the entries
			// stay in memory unstored and the writer stops, so nothing
			// queued after them is stored past the gap; the waiters end
			// with halt.
			l.log.Error("shutting down with the raft leader's queued log entries not stored", "first", chunk[0].Index,
				"last", batch[len(batch)-1].Index, "err", err)
			return false
		}
		l.mu.Lock()
		// The stored entries are read from the store from now on.
		l.writing = l.writing[len(chunk):]
		l.bytes -= logsBytes(chunk)
		l.failed = nil
		l.gen++
		l.durable.Store(chunk[len(chunk)-1].Index)
		l.notify()
		l.mu.Unlock()
		batch = batch[len(chunk):]
	}
	l.mu.Lock()
	l.writing = nil
	l.stored += batches
	l.notify()
	l.mu.Unlock()
	return true
}

// setFailed records a failed write, wakes the waiters and signals the
// stall watch.
func (l *leaderLog) setFailed(err error) {
	l.mu.Lock()
	l.failed = err
	l.notify()
	l.mu.Unlock()
	select {
	case l.failNotify <- struct{}{}:
	default:
	}
}

// logsBytes is the entry data of logs (logBytes each).
func logsBytes(logs []*raft.Log) int {
	size := 0
	for _, e := range logs {
		size += logBytes(e)
	}
	return size
}

// commitLen is how many of logs go in one commit of at most maxBytes of
// entry data (at least one), counted as storeInCommits counts them.
func commitLen(logs []*raft.Log, maxBytes int) int {
	n, size := 0, 0
	for n < len(logs) {
		sz := logBytes(logs[n]) + walEntryOverhead
		if n > 0 && size+sz > maxBytes {
			break
		}
		size += sz
		n++
	}
	return n
}

// Failure is the writer's failure while it retries, with the first index
// it cannot store (nil: none). The stall watch hands leadership away. A
// write that hangs is writeWatch's to report.
func (l *leaderLog) Failure() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.writing) == 0 || l.failed == nil {
		return 0, nil
	}
	return l.writing[0].Index, l.failed
}

// FailNotify is signalled (capacity 1) when a write fails.
func (l *leaderLog) FailNotify() <-chan struct{} { return l.failNotify }

// Close stops the writer after one last attempt at what is queued.
func (l *leaderLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.notify()
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	return nil
}

// durableFSM is the FSM Raft gets when the leader writes behind: every
// apply first waits for the durable index to cover it (DESIGN.md, "The
// leader's own log write in parallel with replication"). If the log halts
// first the FSM goroutine exits (runtime.Goexit runs Raft's deferred
// bookkeeping, so Shutdown completes) instead of applying or skipping.
type durableFSM struct {
	raft.FSM
	await func(index uint64) bool
}

func (f durableFSM) Apply(e *raft.Log) interface{} {
	f.wait(e.Index)
	return f.FSM.Apply(e)
}

func (f durableFSM) wait(index uint64) {
	if !f.await(index) {
		runtime.Goexit()
	}
}

type durableBatchingFSM struct {
	durableFSM
	batch raft.BatchingFSM
}

func (f durableBatchingFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if len(logs) > 0 {
		f.wait(logs[len(logs)-1].Index)
	}
	return f.batch.ApplyBatch(logs)
}

// withDurableApply wraps f so that every apply waits for await.
func withDurableApply(f raft.FSM, await func(uint64) bool) raft.FSM {
	d := durableFSM{FSM: f, await: await}
	if b, ok := f.(raft.BatchingFSM); ok {
		return durableBatchingFSM{durableFSM: d, batch: b}
	}
	return d
}
