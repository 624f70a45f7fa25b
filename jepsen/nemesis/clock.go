package nemesis

import (
	"context"
	"fmt"
	"time"
)

// ClockSkew shifts one agent's wall clock (the Raft leader half the time)
// forward or back, by seconds or by hours, through the agent's clock test
// hook; healing sets it back. The cluster clock, which decides orphan GC,
// retention, producer expiry and forwarded-command deadlines, must keep
// every acknowledged record readable whatever one agent's clock says.
const ClockSkew = "clock-skew"

// clockSkewOffsets are the jumps the nemesis picks from.
var clockSkewOffsets = []time.Duration{
	5 * time.Second, -5 * time.Second, 30 * time.Second, -30 * time.Second,
	2 * time.Hour, -2 * time.Hour, 26 * time.Hour, -26 * time.Hour,
}

func (n *Nemesis) clockSkew(kind string) (active, bool) {
	i := n.agentOrLeader()
	d := clockSkewOffsets[n.rng.IntN(len(clockSkewOffsets))]
	targets := n.ids([]int{i})
	if err := n.record(fmt.Sprintf("clock %+v", d), targets, func() error { return n.c.SetClockOffset(i, d) }); err != nil {
		return active{}, false
	}
	return active{kind: kind, targets: targets, start: n.now(), undo: func(context.Context) (time.Duration, error) {
		return 0, n.record("clock reset", targets, func() error { return n.c.SetClockOffset(i, 0) })
	}}, true
}
