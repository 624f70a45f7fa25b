package cluster

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// The cluster clock (fsm/clock.go) is driven from here: the Raft leader,
// once its barrier has applied the log, proposes a ClockTick with its own
// time every ClockTickInterval. Ticks come after the barrier, so a new
// leader's time can only reach the state machine after every command of
// earlier terms has been applied.

// LeaderReady reports whether this node is the Raft leader and its
// barrier has applied every entry of earlier terms: the condition for the
// cluster-wide loops (the partition janitor's retention and garbage
// collection) that decide from the local state machine.
func (n *Node) LeaderReady() bool {
	return n.IsLeader() && n.leaderReady.Load()
}

// nextTick is the time the leader proposes: its wall clock, except that
// within one term the cluster clock never runs faster than twice the
// leader's monotonic time since the term's first tick (plus one interval).
// So a wall clock that jumps ahead (by seconds or hours) moves the cluster
// clock forward at most at double speed while it stays ahead; one that
// jumps back leaves the cluster clock where it is (the state machine keeps
// the maximum) until the wall clock passes it again.
//
// A cluster clock of 0 (a new cluster, or state restored from a snapshot
// or checkpoint written before the clock was carried) starts at the
// leader's wall clock, but no later than known + one interval, where known
// is the newest command time the state holds (StateMachine.NewestKnownTime;
// 0 for a state with no timed data, a new cluster, which has nothing time
// could expire). From there the double-speed limit applies, so a restored
// cluster's clock catches up with real time gradually: a leader whose wall
// clock is hours ahead cannot expire restored segments and producers at
// its first tick; one whose clock is right only expires them later.
func nextTick(wall, base, known int64, elapsed, interval time.Duration) int64 {
	if base <= 0 {
		if known > 0 {
			return min(wall, known+interval.Milliseconds())
		}
		return wall
	}
	return min(wall, base+2*elapsed.Milliseconds()+interval.Milliseconds())
}

// clockLoop proposes ticks until ctx ends (the end of this leadership
// term). A failed tick is retried at the next interval; nothing waits on
// it.
func (n *Node) clockLoop(ctx context.Context) {
	base := n.fsm.Clock()
	var known int64
	if base <= 0 {
		known = n.fsm.NewestKnownTime()
	}
	start := time.Now()
	t := time.NewTicker(n.cfg.ClockTickInterval)
	defer t.Stop()
	for {
		next := nextTick(n.cfg.Clock().UnixMilli(), base, known, time.Since(start), n.cfg.ClockTickInterval)
		if next > n.fsm.Clock() && n.clockAllowed() { // a tick that would not advance it is not proposed
			n.proposeTick(next)
			if base <= 0 { // the clock starts: rate-limit from here
				base, start = next, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clockAllowed reports whether the cluster clock may tick: once it has
// started (agents that do not know ClockTick can no longer be members),
// or when every member of the Raft configuration advertises
// fsm.FeatureLevel 2 in gossip (a rolling upgrade has finished).
func (n *Node) clockAllowed() bool {
	if n.fsm.Clock() > 0 {
		return true
	}
	servers, err := n.configuration()
	if err != nil {
		return false
	}
	return allMembersAt(n.cfg.NodeID, servers, n.gossip.snapshot(), 2)
}

// allMembersAt reports whether every server of the configuration other
// than self advertises at least the given fsm feature level in gossip (a
// member gossip does not know, or whose metadata is unreadable, does not).
func allMembersAt(self string, servers []raft.Server, members map[string]gossipMember, level int) bool {
	for _, s := range servers {
		if string(s.ID) == self {
			continue
		}
		if m, ok := members[string(s.ID)]; !ok || !m.MetaOK || m.Meta.Features < level {
			return false
		}
	}
	return true
}

// proposeTick enqueues a tick without waiting for its result: nothing
// depends on one tick (a lost one is replaced by the next), and waiting
// would hold a goroutine per tick across a shutdown. Enqueueing is bounded
// by ApplyTimeout.
func (n *Node) proposeTick(t int64) {
	_ = n.r().Apply(fsm.Encode(&fsm.ClockTick{Time: t}), n.cfg.ApplyTimeout)
}

// Forward deadlines. A forwarding agent sends the latest cluster time at
// which the command may still be applied: its own cluster clock plus what
// is left of the caller's deadline. The leader refuses a forward whose
// deadline its cluster clock has passed (outcome not_applied: it did not
// and will not apply it), so a request held up in the network cannot land
// long after its caller gave up. Both sides compare cluster time, not
// their wall clocks, so clock skew between agents does not refuse good
// forwards; the precision is about one tick interval.
const forwardDeadlineHeader = "Streamhouse-Deadline-Cluster-Ms"

// forwardDeadline returns the cluster-time deadline to send, or 0 (none)
// before the first tick or without a context deadline.
func forwardDeadline(ctx context.Context, clock int64) int64 {
	d, ok := ctx.Deadline()
	if !ok || clock <= 0 {
		return 0
	}
	return clock + max(time.Until(d).Milliseconds(), 0)
}

func setForwardDeadline(req *http.Request, deadline int64) {
	if deadline > 0 {
		req.Header.Set(forwardDeadlineHeader, strconv.FormatInt(deadline, 10))
	}
}

// forwardExpired reports whether a forwarded command arrived after its
// deadline. A missing header (an older agent) is never expired; a
// malformed one is.
func forwardExpired(req *http.Request, clock int64) (bool, int64) {
	v := req.Header.Get(forwardDeadlineHeader)
	if v == "" {
		return false, 0
	}
	d, err := strconv.ParseInt(v, 10, 64)
	if err != nil || d <= 0 {
		return true, 0
	}
	return clock > d, d
}
