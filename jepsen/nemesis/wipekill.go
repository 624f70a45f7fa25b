package nemesis

import (
	"context"
	"time"
)

// Fault kinds that combine a lost disk with kills (Raft amnesia).
const (
	// WipeKill: the agents that will hold the newest entries are the Raft
	// leader L and one agent X; the others (a minority) are paused, so
	// entries commit on L, X and whoever else makes the majority. Then X
	// is killed, wiped and restarted at once, L is killed right after and
	// the paused agents resume: they campaign and the only voter they can
	// reach besides each other is X's empty new incarnation. It must not
	// vote until the leader admitted it (DESIGN.md invariant 7).
	WipeKill = "wipe-kill"
	// KillMajorityWipe: SIGKILL a majority and wipe the data dir of one of
	// them; restart them all. A majority still holds its disks.
	KillMajorityWipe = "kill-majority-wipe"
)

// wipeKillLag is how long the minority stays paused before the wipe, so
// that entries commit without it.
const wipeKillLag = 1500 * time.Millisecond

// wipingKinds lose an agent's disk: a mixed cycle holds at most one of them
// and no other kill (a wiped agent must catch up before another loses
// anything).
var wipingKinds = map[string]bool{Wipe: true, WipeKill: true, KillMajorityWipe: true}

// wipeKill runs the WipeKill interleaving; the undo restarts the leader and
// waits until the wiped agent is a caught-up voter again.
func (n *Nemesis) wipeKill(ctx context.Context) (active, bool) {
	l := n.leaderIndex()
	var others []int
	for i := range n.c.Agents {
		if i != l && n.c.Running(i) && !n.c.Paused(i) {
			others = append(others, i)
		}
	}
	minority := len(n.c.Agents) - (len(n.c.Agents)/2 + 1)
	if !n.c.Running(l) || minority < 1 || len(others) < 1+minority {
		return active{}, false
	}
	n.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	x := others[0]
	lag := others[1 : 1+minority]
	targets := n.ids(append([]int{l, x}, lag...))

	_ = n.record("pause (lagging minority)", n.ids(lag), func() error {
		for _, i := range lag {
			n.cfg.OnPaused(i, true)
			n.c.Pause(i)
		}
		return nil
	})
	sleepCtx(ctx, wipeKillLag)
	_ = n.record("kill, wipe and restart at once", n.ids([]int{x}), func() error {
		n.c.Kill(x)
		n.cfg.OnPaused(x, false)
		if err := n.c.Wipe(x); err != nil {
			return err
		}
		return n.c.Launch(x)
	})
	_ = n.record("kill leader", n.ids([]int{l}), func() error {
		n.c.Kill(l)
		n.cfg.OnPaused(l, false)
		return nil
	})
	_ = n.record("resume (lagging minority)", n.ids(lag), func() error {
		for _, i := range lag {
			n.c.Resume(i)
			n.cfg.OnPaused(i, false)
		}
		return nil
	})
	return active{kind: WipeKill, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return n.restartAndCatchUp("restart leader", []int{l}, x)
	}}, true
}

// killMajorityWipe kills a majority, wipes one of them, and on undo
// restarts them and waits for the wiped one to catch up.
func (n *Nemesis) killMajorityWipe() (active, bool) {
	idx := n.majority()
	w := idx[n.rng.IntN(len(idx))]
	targets := n.ids(idx)
	n.recordKill(idx, targets)
	_ = n.record("wipe data dir", n.ids([]int{w}), func() error { return n.c.Wipe(w) })
	return active{kind: KillMajorityWipe, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return n.restartAndCatchUp("restart (one wiped)", idx, w)
	}}, true
}

// restartAndCatchUp restarts idx and then waits until the wiped agent is a
// voter again and has applied what the leader committed.
func (n *Nemesis) restartAndCatchUp(what string, idx []int, wiped int) (time.Duration, error) {
	var d time.Duration
	err := n.record(what, n.ids(idx), func() error {
		var err error
		if d, err = n.restart(idx); err != nil {
			return err
		}
		return n.waitCaughtUp(wiped)
	})
	return d, err
}
