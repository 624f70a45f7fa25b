package cluster

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft log's disk use is bounded in bytes as well as in entries
// (DESIGN.md, "Log store"). hashicorp/raft snapshots every
// SnapshotThreshold entries and keeps TrailingLogs entries afterwards; an
// entry carries up to the coalescer's 4 MiB, so 4,096 entries could be
// 16 GiB of log before the first snapshot and 1,024 entries 4 GiB after it.
//
// raftLogSnapshotBytes: a snapshot is taken once the applied entries past
// the last snapshot take more than this. At the 1 KiB saturated bench
// point (about 40 MB/s of log per agent) that is a snapshot every ~6 s,
// the pace of Raft's own SnapshotInterval check; a snapshot only pins the
// unflushed batches (fsm DESIGN, "Snapshots"), so taking one is cheap.
//
// raftLogTrailingBytes: after a snapshot the log keeps as many entries as
// take about this much, or as the last snapshot took if that is more
// (never fewer than lowDiskTrailingLogs, never more than TrailingLogs). A
// follower further behind catches up by installing a snapshot, which
// carries the unflushed records; keeping at least a snapshot trigger's
// worth means a follower that installed the latest snapshot still finds
// the entries after it when the leader compacts next, instead of needing
// another snapshot (installing one takes longer the more is unflushed).
// So the log takes about 2 × 256 MiB plus two segments at most while the
// snapshots are small, against up to 4,096 + 1,024 entries of up to 4 MiB.
const (
	raftLogSnapshotBytes = 256 << 20
	raftLogTrailingBytes = 256 << 20
	// logBytesInterval is how often logBytesLoop measures the log.
	logBytesInterval = time.Second
)

// walSegment is one raft-wal segment file: its ID (creation order) and
// the index of its first entry.
type walSegment struct{ id, base uint64 }

// parseSegmentName parses raft-wal's segment file name,
// "%020d-%016x.wal" (base index, ID).
func parseSegmentName(name string) (walSegment, bool) {
	stem, ok := strings.CutSuffix(name, ".wal")
	if !ok {
		return walSegment{}, false
	}
	b, id, ok := strings.Cut(stem, "-")
	if !ok {
		return walSegment{}, false
	}
	base, err1 := strconv.ParseUint(b, 10, 64)
	sid, err2 := strconv.ParseUint(id, 16, 64)
	if err1 != nil || err2 != nil {
		return walSegment{}, false
	}
	return walSegment{id: sid, base: base}, true
}

// liveChain orders segments oldest first and drops files that are not
// part of the log: a segment a tail truncation replaced (its base is not
// below that of the segment created after it) whose file lazyDeleteFS has
// not unlinked yet. Compacted segments still waiting for their unlink
// stay in (at the front): they still take disk.
func liveChain(segs []walSegment) []walSegment {
	slices.SortFunc(segs, func(a, b walSegment) int { return cmpUint(a.id, b.id) })
	var chain []walSegment
	for i := len(segs) - 1; i >= 0; i-- {
		if len(chain) == 0 || segs[i].base < chain[len(chain)-1].base {
			chain = append(chain, segs[i])
		}
	}
	slices.Reverse(chain)
	return chain
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// logUse is the Raft log's disk use as its segment files show it.
type logUse struct {
	segs []walSegment // the live chain, oldest first; the last is the tail
	last uint64       // the log's last index
}

// use lists the log's segment files (one directory read, no lock of the
// store's write path).
func (l *walLog) use() (logUse, error) {
	last, err := l.LastIndex()
	if err != nil {
		return logUse{}, err
	}
	names, err := l.vfs.ListDir(l.dir)
	if err != nil {
		return logUse{}, err
	}
	segs := make([]walSegment, 0, len(names))
	for _, name := range names {
		if s, ok := parseSegmentName(name); ok {
			segs = append(segs, s)
		}
	}
	return logUse{segs: liveChain(segs), last: last}, nil
}

// bytes is the disk the log's segment files take (each is preallocated).
func (u logUse) bytes() uint64 { return uint64(len(u.segs)) * walSegmentSize }

// bytesAfter is the disk taken by the segments that hold entries above
// index (whole segments: an over-estimate by at most one).
func (u logUse) bytesAfter(index uint64) uint64 {
	if u.last <= index {
		return 0
	}
	var n uint64
	for i := range u.segs {
		end := u.last
		if i+1 < len(u.segs) {
			end = u.segs[i+1].base - 1
		}
		if end > index {
			n++
		}
	}
	return n * walSegmentSize
}

// trailingLogs is how many entries take about budget bytes at the
// smallest entry size the newest sealed segments show (the most entries
// any of the newest max(8, ceil(budget/segment)) sealed segments holds),
// within [min(lowDiskTrailingLogs, most), most]. The most, not the newest one: a
// tail truncation (a conflicting suffix after an election, a distrusted
// tail) seals a segment after a few entries, which would make small
// entries look large and keep far too few. Only the newest ones: an old
// segment of small entries from a quiet period would otherwise keep
// TrailingLogs entries of today's large ones. Erring towards more entries
// keeps more, never more than most. With no sealed segment the log is
// smaller than one segment: most.
func (u logUse) trailingLogs(budget, most uint64) uint64 {
	const minEstimateSegments = 8
	sealed := len(u.segs) - 1
	if sealed < 1 || budget == 0 {
		return most
	}
	k := int(min(uint64(sealed), max(minEstimateSegments, (budget+walSegmentSize-1)/walSegmentSize)))
	var entries uint64
	for i := sealed - k; i < sealed; i++ {
		entries = max(entries, u.segs[i+1].base-u.segs[i].base)
	}
	t := (budget + walSegmentSize - 1) / walSegmentSize * entries
	if budget < walSegmentSize {
		t = budget * entries / walSegmentSize
	}
	return min(most, max(lowDiskTrailingLogs, t))
}

// logBytesLoop bounds the Raft log in bytes (boundLogBytes) every
// logBytesInterval until the node closes. Close waits for it after Raft
// shut down, which ends a snapshot waiting for a stalled FSM.
func (n *Node) logBytesLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(logBytesInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.boundLogBytes(); err != nil && ctx.Err() == nil {
			n.log.Warn("bounding the raft log's disk use", "err", err)
		}
	}
}

// boundLogBytes measures the log once: it sets TrailingLogs so that about
// logTrailingBytes stay after a snapshot, and takes a snapshot when the
// applied entries past the last one take more than logSnapshotBytes.
// Entries not applied yet are left out: a snapshot cannot compact them.
func (n *Node) boundLogBytes() error {
	r := n.r()
	if r == nil || n.logStore == nil {
		return nil
	}
	use, err := n.logStore.use()
	if err != nil {
		return err
	}
	snap, ok := lastSnapshotIndex(r)
	if !ok {
		return nil
	}
	snapBytes := n.snapshotSize(snap)
	n.trailingByBytes.Store(use.trailingLogs(trailingBudget(n.cfg.logTrailingBytes, snapBytes), n.cfg.TrailingLogs))
	if err := n.reloadCompaction(r); err != nil {
		return err
	}
	applied := r.AppliedIndex()
	if applied <= snap || !snapshotDue(use.bytesAfter(snap)-use.bytesAfter(applied), n.cfg.logSnapshotBytes, snapBytes) {
		return nil
	}
	return n.snapshotIfNew(r)
}

// snapshotSize is the size of the snapshot at index, read from the
// snapshot store's metadata once per snapshot (logBytesLoop's goroutine
// only). 0: no snapshot, or the store lists none at index; if the store
// cannot be listed, the last size known.
func (n *Node) snapshotSize(index uint64) uint64 {
	if index == 0 || n.snaps == nil {
		return 0
	}
	if index == n.snapSizeAt {
		return n.snapSize
	}
	metas, err := n.snaps.List()
	if err != nil {
		return n.snapSize
	}
	n.snapSizeAt, n.snapSize = index, 0
	for _, m := range metas {
		if m.Index == index && m.Size > 0 {
			n.snapSize = uint64(m.Size)
			break
		}
	}
	return n.snapSize
}

// trailingLogs is the TrailingLogs in force: Config.TrailingLogs, fewer
// when the entries are large (boundLogBytes), lowDiskTrailingLogs at most
// while the disk is low.
func (n *Node) trailingLogs() uint64 {
	t := n.cfg.TrailingLogs
	if b := n.trailingByBytes.Load(); b != 0 {
		t = min(t, b)
	}
	if n.lowDisk.Load() {
		t = min(t, lowDiskTrailingLogs)
	}
	return t
}

// reloadCompaction applies trailingLogs to Raft if it changed. reloadMu
// serializes the callers (boundLogBytes, SetLowDisk): each computes the
// configuration from the latest state, so the last one to run is right.
func (n *Node) reloadCompaction(r *raft.Raft) error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	rc := raft.ReloadableConfig{
		TrailingLogs: n.trailingLogs(), SnapshotInterval: n.cfg.SnapshotInterval,
		SnapshotThreshold: n.cfg.SnapshotThreshold,
		HeartbeatTimeout:  n.cfg.HeartbeatTimeout, ElectionTimeout: n.cfg.ElectionTimeout,
	}
	if r.ReloadableConfig() == rc {
		return nil
	}
	return r.ReloadConfig(rc)
}

// lastSnapshotIndex is the index of Raft's latest snapshot (0: none).
func lastSnapshotIndex(r *raft.Raft) (uint64, bool) {
	snap, err := strconv.ParseUint(r.Stats()["last_snapshot_index"], 10, 64)
	return snap, err == nil
}

// snapshotIfNew takes a snapshot unless nothing was applied since the
// last one (Raft would log ErrNothingNewToSnapshot as an error). It blocks
// while the FSM is stalled, until Raft shuts down at the latest.
func (n *Node) snapshotIfNew(r *raft.Raft) error {
	if snap, ok := lastSnapshotIndex(r); ok && snap >= r.AppliedIndex() {
		return nil
	}
	if err := n.await(context.Background(), r.Snapshot()); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return err
	}
	return nil
}

// snapshotDue reports whether past bytes of applied log beyond the last
// snapshot call for a snapshot: more than trigger, and more than the last
// snapshot took (snap). Snapshots carry the unflushed records; while the
// object store is down those grow without bound, and a snapshot every
// trigger bytes of log would then write far more than it reclaims.
func snapshotDue(past, trigger, snap uint64) bool { return past > max(trigger, snap) }

// trailingBudget is the log bytes to keep behind a snapshot: trailing,
// or the last snapshot's size (snap) if larger. With trailing at least the
// snapshot trigger, a follower that installs the latest snapshot still
// finds the entries after it when the leader compacts next.
func trailingBudget(trailing, snap uint64) uint64 { return max(trailing, snap) }
