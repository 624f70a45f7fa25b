package cluster

import (
	"context"
	"fmt"
)

// NoteLowDisk records whether free disk space is below MIN_FREE_DISK_BYTES
// without compacting anything (SetLowDisk calls it too). It never blocks:
// the disk guard calls it on its own goroutine. While low, the node hands
// Raft leadership away (stall.go) and gossips the state, so the other
// agents' transfers avoid it.
func (n *Node) NoteLowDisk(low bool) {
	if n.lowDisk.Swap(low) == low {
		return
	}
	if n.started.Load() {
		n.gossip.setMeta(n.localMeta())
	}
	select {
	case n.lowDiskKick <- struct{}{}:
	default:
	}
}

// lowDiskTrailingLogs is how many Raft log entries are kept after a
// snapshot while the disk is low (normally Config.TrailingLogs). A follower
// further behind than that catches up by installing a snapshot, which
// carries the unflushed records, so nothing is lost by keeping fewer.
const lowDiskTrailingLogs = 64

// SetLowDisk switches Raft log compaction for a low disk: low = keep only
// lowDiskTrailingLogs entries after a snapshot and take a snapshot now, so
// the compacted entries' whole segment files are deleted and their space
// returns to the disk. low = false restores the TrailingLogs in force
// without a low disk (trailingLogs: Config.TrailingLogs or fewer for large
// entries). It blocks while the snapshot runs (and so while the FSM is
// stalled): call it off latency-sensitive paths.
func (n *Node) SetLowDisk(low bool) error {
	n.NoteLowDisk(low)
	r := n.r()
	if r == nil {
		return nil
	}
	if err := n.reloadCompaction(r); err != nil {
		return fmt.Errorf("cluster: raft log compaction for low disk: %w", err)
	}
	if !low {
		return nil
	}
	if err := n.snapshotIfNew(r); err != nil {
		return fmt.Errorf("cluster: snapshot to reclaim raft log space: %w", err)
	}
	return nil
}

// ReclaimDisk records the low-disk state (NoteLowDisk) and has the node's
// reclaim goroutine apply it to Raft log compaction (SetLowDisk), so the
// caller — the disk guard, on its measuring goroutine — never waits for a
// snapshot (which blocks while the FSM is stalled). A request not yet taken
// is replaced by the latest one.
func (n *Node) ReclaimDisk(low bool) {
	n.NoteLowDisk(low)
	for {
		select {
		case n.reclaimWant <- low:
			return
		default:
		}
		select {
		case <-n.reclaimWant:
		default:
		}
	}
}

// reclaimLoop applies ReclaimDisk requests until the node closes. Close
// waits for it after Raft shut down, which ends a compaction waiting for a
// stalled FSM.
func (n *Node) reclaimLoop(ctx context.Context) {
	defer n.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case low := <-n.reclaimWant:
			if err := n.SetLowDisk(low); err != nil {
				n.log.Warn("low-disk raft log compaction", "low", low, "err", err)
			}
		}
	}
}
