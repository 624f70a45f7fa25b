package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Never trust what a failed write or clear left (DESIGN.md, "Log store").
//
// A StoreLogs that failed can leave its entries intact in the segment file
// yet not durable: after a failed fsync Linux marks the dirty pages clean
// and the next fsync returns 0. A clear of the whole log after a snapshot
// install that failed leaves entries that may disagree with the snapshot.
// Either way the entries from some index on are untrusted: walLog hides
// them from reads (GetLog, FirstIndex, LastIndex), records the index in
// raft-wal's meta store (wal-meta.db, fsynced) before the caller can
// retry, and deletes them before the next append (settle) or on the next
// open. Raft never knew them (it calls StoreLogs at its in-memory last
// index + 1 and a failed call does not advance it; after a snapshot install
// it takes its last index from the snapshot), so hiding and deleting them
// takes nothing from it. The one exception, the leader's write behind
// (leaderlog.go), keeps the entries of a failed write in memory and
// retries them, and nothing above its durable index was applied. The record goes once they are durably deleted
// and before anything is written at or past its index: a stale record
// would make the next open drop acknowledged entries.

// untrustedKey, in raft-wal's meta store, holds the first untrusted index
// (8 bytes, big-endian) while there is one.
var untrustedKey = []byte("StreamhouseUntrustedFrom")

// errTailUntrusted wraps the error of a write or clear that left the log's
// tail untrusted; retryingLogs retries such a clear on a follower.
var errTailUntrusted = errors.New("cluster: raft log tail untrusted after a failed write")

// DeleteRange implements raft.LogStore. Raft deletes a prefix after a
// snapshot (compaction: whole sealed segments below it go), a suffix on a
// conflict, and the whole log after installing a snapshot. A deletion that
// reaches the end of the trusted log — a suffix, or the whole log — is
// settled: if it fails, its range stays hidden, is recorded, and is deleted
// before the next append or on the next open (distrust); the error wraps
// errTailUntrusted. A failed prefix deletion loses nothing (Raft compacts
// again after its next snapshot) and is returned as it is.
func (l *walLog) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, last, err := l.bounds()
	if err != nil {
		return err
	}
	if hi < last {
		if err := l.with(func(w *raftwal.WAL) error { return w.DeleteRange(lo, hi) }); err != nil {
			if rerr := l.reopen(); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
		return nil
	}
	from := lo
	if u := l.untrusted.Load(); u != 0 {
		from = min(u, lo)
	}
	if err := l.with(func(w *raftwal.WAL) error { return l.settle(w, from) }); err != nil {
		return l.distrust(from, err)
	}
	return nil
}

// settle deletes the log from index from on (the whole log when from is at
// or below its first entry), then forgets the untrusted tail and deletes
// its record if one may exist (wmu held); it fails before anything is
// written at the record's index unless the record is gone. The deletion is durable when it returns (raft-wal commits it
// to its meta store), so the record can go; raft-wal truncates a tail by
// sealing its segment and starting a new file, so what is written next
// lands in a new file and its fsync is real.
func (l *walLog) settle(w *raftwal.WAL, from uint64) error {
	first, last, err := walBounds(w)
	if err != nil {
		return err
	}
	if last != 0 && last >= from {
		lo := max(from, first)
		if l.untrusted.Load() != 0 {
			l.hl.Warn("deleting the raft log's untrusted tail a failed write or clear left", "from", lo, "to", last)
		}
		if err := w.DeleteRange(lo, last); err != nil {
			return err
		}
	}
	if l.marked != 0 {
		l.recorded = 0 // a failed deletion may still have committed
		if err := w.Set(untrustedKey, nil); err != nil {
			return err
		}
		l.marked = 0
	}
	l.untrusted.Store(0)
	return nil
}

// distrust handles err, the failure of a write or clear from index from
// (wmu held): the entries from there on are hidden and recorded as
// untrusted, then the WAL is reopened. It returns err wrapped in
// errTailUntrusted (err itself once the log is closed).
func (l *walLog) distrust(from uint64, err error) error {
	if errors.Is(err, ErrClosed) || errors.Is(err, raftwal.ErrClosed) {
		return err // shutting down: nothing was written
	}
	if u := l.untrusted.Load(); u == 0 || from < u {
		l.untrusted.Store(from)
	}
	if merr := l.mark(); merr != nil {
		l.hl.Error("cannot record the raft log's untrusted tail; until a retry deletes it, a restart would trust it",
			"from", l.untrusted.Load(), "err", merr)
	}
	err = fmt.Errorf("%w: %w", errTailUntrusted, err)
	if rerr := l.reopen(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// mark records the untrusted index in the meta store unless a record at or
// below it is known to be there (wmu held). A Bolt commit can reach the
// disk and still fail (its final fsync), so the record is taken as
// possibly there (marked) before the write, and known to be there
// (recorded) only once the write succeeded: settle then always deletes a
// record that may exist, and a failed write is retried by the next mark.
func (l *walLog) mark() error {
	u := l.untrusted.Load()
	if l.recorded != 0 && l.recorded <= u {
		return nil
	}
	if l.marked == 0 || u < l.marked {
		l.marked = u
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], u)
	if err := l.with(func(w *raftwal.WAL) error { return w.Set(untrustedKey, b[:]) }); err != nil {
		return err
	}
	l.recorded = u
	return nil
}

// loadUntrusted, on open, takes over the untrusted index a previous run
// recorded and deletes that tail; if the deletion fails the tail stays
// hidden and is deleted before the next append.
func (l *walLog) loadUntrusted() error {
	var v []byte
	err := l.with(func(w *raftwal.WAL) error {
		var err error
		v, err = w.Get(untrustedKey)
		return err
	})
	if err != nil || len(v) == 0 {
		return err
	}
	if len(v) != 8 {
		return fmt.Errorf("corrupt %s record in %s (%d bytes)", untrustedKey, metadb.FileName, len(v))
	}
	u := binary.BigEndian.Uint64(v)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.untrusted.Store(u)
	l.marked, l.recorded = u, u
	l.hl.Warn("the raft log's tail from this index on was left by a failed write or clear and is not trusted", "from", u)
	if err := l.with(func(w *raftwal.WAL) error { return l.settle(w, u) }); err != nil {
		l.hl.Error("cannot delete the raft log's untrusted tail yet; it stays hidden and is deleted before the next append", "from", u, "err", err)
		_ = l.reopen()
	}
	return nil
}
