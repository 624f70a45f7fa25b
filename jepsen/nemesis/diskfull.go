package nemesis

import (
	"context"
	"fmt"
	"time"
)

// DiskFull fills one agent's data filesystem (the Raft leader half the
// time), either to below its MIN_FREE_DISK_BYTES floor (the agent must
// refuse produce and report not ready) or completely (its WAL and Raft log
// writes fail with ENOSPC: applying must stall and resume, never crash),
// and frees it when the fault ends. It needs control.Config.SmallDisk and
// is not part of Kinds (the mixed class runs on normal disks).
const DiskFull = "disk-full"

func (n *Nemesis) diskFull() (active, bool) {
	i := n.agentOrLeader()
	leave, how := n.cfg.MinFreeDisk/2, "below MIN_FREE_DISK_BYTES"
	if n.rng.IntN(2) == 0 {
		leave, how = 0, "completely"
	}
	targets := n.ids([]int{i})
	err := n.record("fill disk "+how, targets, func() error {
		free, err := n.c.FillDisk(i, leave)
		if err == nil {
			n.log.Info("disk filled", "agent", targets[0], "free_bytes", free)
		}
		return err
	})
	if err != nil {
		_ = n.c.FreeDisk(i)
		return active{}, false
	}
	return active{kind: DiskFull, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		var d time.Duration
		err := n.record("free disk", targets, func() error {
			if err := n.c.FreeDisk(i); err != nil {
				return err
			}
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := n.c.WaitReady(ctx, i); err != nil {
				return fmt.Errorf("%s not ready after its disk was freed: %w", targets[0], err)
			}
			d = time.Since(t0)
			return n.waitCaughtUp(i)
		})
		return d, err
	}}, true
}
