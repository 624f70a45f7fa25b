package cluster

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// logWriteStuckAfter: a write into the Raft log store begun while this
// agent leads and seen in flight this long, with no write completing
// meanwhile, counts as failing (writeWatch.Failure): a disk that hangs.
// logWriteStuckGap: looks at it further apart than this (the stall watch
// looks every ≤ 250 ms by default; the node raises it to three of its
// ticks) mean the process itself did not run — SIGSTOP, a VM pause — and
// start the count again.
const (
	logWriteStuckAfter = 10 * time.Second
	logWriteStuckGap   = logWriteStuckAfter / 4
)

// writeWatch wraps the Raft log store and watches the writes begun while
// this agent leads for one that hangs (DESIGN.md, "A hung write"). Its
// lock is never held across a call into the store.
type writeWatch struct {
	raft.LogStore
	leader func() bool // Raft's state is Leader

	mu         sync.Mutex
	stuckAfter time.Duration // logWriteStuckAfter
	stuckGap   time.Duration // logWriteStuckGap
	now        func() time.Time
	inflight   []watchedWrite // begun while leading, not yet returned; oldest first
	nextID     uint64
	done       uint64        // watched writes returned so far (stored, failed or not)
	progress   func() uint64 // commits stored inside calls (nil: none counted); one call can span many

	// Failure's count (mu): done+progress when it last started counting,
	// since when without a gap, when it last looked, and whether it
	// reported a hung write (kept until a write returns or commits).
	watched   uint64
	watchFrom time.Time
	watchAt   time.Time
	watchHung bool
}

// watchedWrite is one write in flight: its id, the first index it writes
// (or deletes) and whether it deletes.
type watchedWrite struct {
	id, first uint64
	delete    bool
}

func newWriteWatch(store raft.LogStore, leader func() bool) *writeWatch {
	return &writeWatch{LogStore: store, leader: leader, stuckAfter: logWriteStuckAfter, stuckGap: logWriteStuckGap, now: time.Now}
}

// IsMonotonic implements raft.MonotonicLogStore for the wrapped store.
func (w *writeWatch) IsMonotonic() bool {
	m, ok := w.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// StoreLog implements raft.LogStore.
func (w *writeWatch) StoreLog(log *raft.Log) error { return w.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore.
func (w *writeWatch) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return w.LogStore.StoreLogs(logs)
	}
	defer w.begin(logs[0].Index, false)()
	return w.LogStore.StoreLogs(logs)
}

// DeleteRange implements raft.LogStore.
func (w *writeWatch) DeleteRange(lo, hi uint64) error {
	defer w.begin(lo, true)()
	return w.LogStore.DeleteRange(lo, hi)
}

// begin records a write from first if this agent leads, and returns what
// ends it.
func (w *writeWatch) begin(first uint64, delete bool) func() {
	if !w.leader() {
		return func() {}
	}
	w.mu.Lock()
	w.nextID++
	id := w.nextID
	w.inflight = append(w.inflight, watchedWrite{id: id, first: first, delete: delete})
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done++
		for i, iw := range w.inflight {
			if iw.id == id {
				w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
				break
			}
		}
	}
}

// Failure is a write seen in flight for stuckAfter with no write returning
// and no commit stored meanwhile, with the first index it writes (nil:
// none). One call can store many commits (raft's dispatch of a large
// batch with the serial leader write): a slow disk that commits is not a
// hung one.
//
// Seen means by looks (every call is one: the stall watch's tick, /ready,
// the gauge, produce admission) that span stuckAfter and are never more
// than stuckGap apart. A process that was frozen (SIGSTOP, a VM pause) saw
// no time pass, however long the clock says the write took: its first look
// afterwards starts the count again, and the write, which the disk
// finishes at once, is not mistaken for a hung disk. Once reported, a
// write stays hung until a write returns, however far apart the looks that
// follow.
func (w *writeWatch) Failure() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.inflight) == 0 {
		return 0, nil
	}
	now := w.now()
	gen := w.done
	if w.progress != nil {
		gen += w.progress()
	}
	switch {
	case w.watched != gen:
		w.watched, w.watchFrom, w.watchHung = gen, now, false
	case !w.watchHung && now.Sub(w.watchAt) > w.stuckGap:
		w.watchFrom = now
	}
	w.watchAt = now
	d := now.Sub(w.watchFrom)
	w.watchHung = d >= w.stuckAfter
	if w.watchHung {
		op := "a write of raft log entries"
		if w.inflight[0].delete {
			op = "a deletion of raft log entries"
		}
		return w.inflight[0].first, fmt.Errorf("%s from %d has made no progress for %s of this agent's running time", op, w.inflight[0].first, d.Round(time.Second))
	}
	return 0, nil
}

// setStuck sets how long a write may be in flight and how far apart the
// looks may be (tests and the node's stall tick).
func (w *writeWatch) setStuck(after, gap time.Duration) {
	w.mu.Lock()
	w.stuckAfter, w.stuckGap = after, gap
	w.mu.Unlock()
}
