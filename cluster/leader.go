package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// leadershipLoop follows Raft leadership: on winning an election it starts
// the leader loop for that term, on losing it stops it.
func (n *Node) leadershipLoop(ctx context.Context) {
	defer n.wg.Done()
	ch := n.r().LeaderCh()
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			if stop != nil {
				stop()
				stop = nil
			}
			n.leaderReady.Store(false)
			if !isLeader {
				n.log.Info("lost raft leadership")
				continue
			}
			n.log.Info("gained raft leadership", "term", n.r().CurrentTerm())
			if n.metrics != nil {
				n.metrics.leaderElections.Inc()
			}
			lctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				n.runLeader(lctx)
			}()
			stop = func() { cancel(); <-done }
		}
	}
}

// runLeader is the Raft leader's loop for one term. After a barrier (so
// the FSM reflects every earlier term) it reconciles Raft membership with
// gossip and runs the partition controller, on gossip and FSM changes and
// on a ticker. It never runs on a follower.
func (n *Node) runLeader(ctx context.Context) {
	r := n.r()
	term := r.CurrentTerm() // the term this loop leads (read before any wait)
	if !n.leaderBarrier(ctx) {
		return
	}
	n.leaderReady.Store(r.State() == raft.Leader)
	defer n.leaderReady.Store(false)
	clockDone := make(chan struct{})
	go func() {
		defer close(clockDone)
		n.clockLoop(ctx)
	}()
	defer func() { <-clockDone }()
	// The leader's object store is the reference the others are probed
	// against; a verdict from an earlier leader no longer applies, and no
	// probe of an earlier leader may set one again. The term is the one
	// read before the barrier: after a pause here this node may follow a
	// later leader whose verdicts must stand (clearFor keeps a later one).
	n.storeProblem.clearFor(term)

	l := &leaderState{n: n, unknownSince: map[string]time.Time{}, staleSince: map[string]time.Time{}, warned: map[string]time.Time{},
		stores: map[string]storeCheck{}}
	tick := time.NewTicker(n.cfg.ReconcileInterval)
	defer tick.Stop()
	rebalance := time.NewTicker(n.cfg.RebalanceInterval)
	defer rebalance.Stop()
	for {
		gossipCh := n.gossip.changedCh()
		fsmCh := n.fsm.Changed()
		again := l.reconcileMembership(ctx)
		l.registerBrokers(ctx)
		l.checkMemberStores(ctx)
		l.runController(ctx, false)
		var soon <-chan time.Time
		if again {
			soon = time.After(10 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-gossipCh:
		case <-fsmCh:
		case <-tick.C:
		case <-soon:
		case <-rebalance.C:
			l.runController(ctx, true)
		}
		// Coalesce bursts of changes (a topic creation, a flush round).
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// leaderBarrier waits until the FSM has applied every entry of earlier
// terms, retrying a failed barrier while this node leads; false when ctx
// ended or leadership was lost first.
func (n *Node) leaderBarrier(ctx context.Context) bool {
	r := n.r()
	for {
		err := n.await(ctx, r.Barrier(n.cfg.ApplyTimeout))
		if err == nil {
			return ctx.Err() == nil
		}
		if ctx.Err() != nil || r.State() != raft.Leader {
			return false
		}
		n.log.Warn("leader barrier failed; retrying", "err", err)
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return false
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leaderState is the leader loop's memory for one term.
type leaderState struct {
	n *Node
	// unknownSince records when a Raft member was first seen missing from
	// the gossip table (the leader may never have heard of a long-dead
	// member); it then counts as dead from that time.
	unknownSince map[string]time.Time
	// staleSince records when a voter was first confirmed to run an
	// unadmitted incarnation.
	staleSince map[string]time.Time
	warned     map[string]time.Time
	// stores: object store probes of agents, by node ID; storeDown: the
	// last failure to write a probe object.
	stores    map[string]storeCheck
	storeDown storeCheck
}

// warnEvery logs a warning at most once a minute per key.
func (l *leaderState) warnEvery(key, msg string, args ...any) {
	if t, ok := l.warned[key]; ok && time.Since(t) < time.Minute {
		return
	}
	l.warned[key] = time.Now()
	l.n.log.Warn(msg, args...)
}

func (l *leaderState) trackUnknown(servers []raft.Server, members map[string]gossipMember, now time.Time) {
	seen := map[string]bool{}
	for _, s := range servers {
		id := string(s.ID)
		seen[id] = true
		if _, ok := members[id]; ok {
			delete(l.unknownSince, id)
		} else if _, ok := l.unknownSince[id]; !ok {
			l.unknownSince[id] = now
		}
	}
	for id := range l.unknownSince {
		if !seen[id] {
			delete(l.unknownSince, id)
		}
	}
}
