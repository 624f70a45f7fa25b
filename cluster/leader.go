package cluster

import (
	"context"
	"fmt"
	"sort"
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
	for {
		err := r.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		if ctx.Err() != nil || r.State() != raft.Leader {
			return
		}
		n.log.Warn("leader barrier failed; retrying", "err", err)
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
	if ctx.Err() != nil {
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
	// against; a verdict from an earlier leader no longer applies.
	n.storeProblem.set(nil)

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

// memberHealth is how the leader sees one Raft member through gossip.
type memberHealth uint8

const (
	healthAlive   memberHealth = iota // alive
	healthFailing                     // dead, left or unknown, not yet past the timeout
	healthFailed                      // left, or dead/unknown past the timeout
)

// health classifies a member: left counts as failed at once, dead and
// unknown once they have lasted longer than timeout. (memberlist only
// declares a member dead after its suspicion timed out.)
func health(id string, members map[string]gossipMember, unknownSince map[string]time.Time, now time.Time, timeout time.Duration) memberHealth {
	m, ok := members[id]
	if !ok {
		since, ok := unknownSince[id]
		if ok && now.Sub(since) > timeout {
			return healthFailed
		}
		return healthFailing
	}
	switch m.State {
	case StateLeft:
		return healthFailed
	case StateDead:
		if m.failedFor(now) > timeout {
			return healthFailed
		}
		return healthFailing
	}
	return healthAlive
}

func quorum(voters int) int { return voters/2 + 1 }

// targetVoters is the number of voters the leader aims for: 3, or 5 once
// at least 5 agents are alive. Fewer agents than the target all vote.
func targetVoters(aliveAgents int) int {
	if aliveAgents >= 5 {
		return 5
	}
	return 3
}

// planRemoval picks at most one Raft member to remove: a non-voter or voter
// that left or was dead (or unknown to gossip) longer than deadTimeout.
// Non-voters go first. A voter is removed only while the voters that gossip
// sees alive still form a majority of the current voters: if a majority
// looks failed while this leader commits, gossip is wrong, not Raft.
// Self is never removed.
func planRemoval(self string, servers []raft.Server, members map[string]gossipMember,
	unknownSince map[string]time.Time, now time.Time, deadTimeout time.Duration) (string, string) {
	voters, aliveVoters := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == self || health(string(s.ID), members, unknownSince, now, deadTimeout) == healthAlive {
			aliveVoters++
		}
	}
	sorted := append([]raft.Server(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool {
		if (sorted[i].Suffrage == raft.Voter) != (sorted[j].Suffrage == raft.Voter) {
			return sorted[j].Suffrage == raft.Voter
		}
		return sorted[i].ID < sorted[j].ID
	})
	for _, s := range sorted {
		id := string(s.ID)
		if id == self || health(id, members, unknownSince, now, deadTimeout) != healthFailed {
			continue
		}
		why := "dead longer than the dead-agent timeout"
		if m, ok := members[id]; !ok {
			why = "unknown to gossip longer than the dead-agent timeout"
		} else if m.State == StateLeft {
			why = "left the cluster"
		}
		if s.Suffrage == raft.Voter && aliveVoters < quorum(voters) {
			return "", ""
		}
		return id, why
	}
	return "", ""
}

// reconcileMembership makes one pass of membership reconciliation and
// reports whether it changed something (the loop then runs again soon).
// Order: one removal (failed members, then stale incarnations of voters),
// address updates, additions as non-voters, admission of non-voters, one
// promotion.
func (l *leaderState) reconcileMembership(ctx context.Context) bool {
	n := l.n
	r := n.r()
	if r.State() != raft.Leader {
		return false
	}
	servers, err := n.configuration()
	if err != nil {
		return false
	}
	members := n.gossip.snapshot()
	now := time.Now()
	self := n.cfg.NodeID
	l.trackUnknown(servers, members, now)

	own := n.identity()
	if own.Cluster == "" || !own.Admitted {
		// Raft state from before cluster identities: the leader names the
		// cluster; members learn it when admitted.
		if err := n.updateIdentity(func(id *identity) {
			if id.Cluster == "" {
				id.Cluster = randomID()
			}
			id.Admitted = true
		}); err != nil {
			n.log.Error("cannot persist the cluster identity", "err", err)
			return false
		}
		own = n.identity()
	}

	// 1. Failed members.
	if id, why := planRemoval(self, servers, members, l.unknownSince, now, n.cfg.DeadAgentTimeout); id != "" {
		return l.remove(id, why)
	}
	voters, aliveVoters := 0, 0
	inConfig := map[string]raft.Server{}
	for _, s := range servers {
		inConfig[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
			if string(s.ID) == self || health(string(s.ID), members, l.unknownSince, now, n.cfg.DeadAgentTimeout) == healthAlive {
				aliveVoters++
			}
		}
	}

	// 1b. Voters running an incarnation that was never admitted: their data
	// dir was wiped (or they never finished bootstrapping). Gossip hints,
	// the member's own status confirms.
	for _, s := range sortedServers(servers) {
		id := string(s.ID)
		m, ok := members[id]
		if id == self || s.Suffrage != raft.Voter || !ok || m.State != StateAlive || !m.MetaOK || m.Meta.Admitted {
			continue
		}
		st, err := n.peerStatus(ctx, m.Meta.Peer)
		if err != nil || st.NodeID != id || st.Admitted {
			delete(l.staleSince, id)
			continue
		}
		// A founder whose bootstrap settles a moment after its co-founders'
		// is unadmitted until then (and refuses Raft RPCs): give it that
		// moment.
		since, ok := l.staleSince[id]
		if !ok {
			l.staleSince[id] = now
			continue
		}
		if now.Sub(since) < n.cfg.BootstrapSettle {
			continue
		}
		if aliveVoters-1 < quorum(voters-1) {
			l.warnEvery("stale:"+id, "voter lost its raft state but removing it now would break quorum; waiting", "node", id)
			continue
		}
		delete(l.staleSince, id)
		return l.remove(id, fmt.Sprintf("runs a new, unadmitted incarnation %s (its data dir was wiped)", st.Instance))
	}

	// 2. Address changes (an agent restarted on another peer address).
	for _, s := range sortedServers(servers) {
		id := string(s.ID)
		m, ok := members[id]
		if id == self || !ok || m.State != StateAlive || !m.MetaOK || m.Meta.Peer == "" || m.Meta.Peer == string(s.Address) {
			continue
		}
		if s.Suffrage == raft.Voter && !m.Meta.Admitted {
			continue // handled as a stale incarnation above
		}
		var f raft.IndexFuture
		if s.Suffrage == raft.Voter {
			f = r.AddVoter(s.ID, raft.ServerAddress(m.Meta.Peer), 0, n.cfg.ApplyTimeout)
		} else {
			f = r.AddNonvoter(s.ID, raft.ServerAddress(m.Meta.Peer), 0, n.cfg.ApplyTimeout)
		}
		if err := f.Error(); err != nil {
			n.log.Warn("cannot update a member's raft address", "node", id, "addr", m.Meta.Peer, "err", err)
			return false
		}
		n.log.Info("updated raft address of member", "node", id, "from", s.Address, "to", m.Meta.Peer)
		n.metrics.membershipChange("update_address")
		return true
	}

	// 3. New live agents join as non-voters.
	changed := false
	for _, m := range sortedMembers(members) {
		if _, ok := inConfig[m.Name]; ok || m.Name == self || m.State != StateAlive {
			continue
		}
		if !m.MetaOK || m.Meta.Peer == "" || m.Meta.Leaving || n.recentlyDeparted(m.Name) {
			continue
		}
		if m.Meta.Cluster != "" && m.Meta.Cluster != own.Cluster {
			l.warnEvery("foreign:"+m.Name, "agent belongs to another cluster; not adding it", "node", m.Name, "its_cluster", m.Meta.Cluster, "cluster", own.Cluster)
			continue
		}
		// Gossip is only a hint: add an agent only once its peer port
		// answers as that agent. This is where the peer port's security
		// (mTLS, the cluster secret) keeps an agent that gossip reached
		// but that cannot prove it belongs out of the Raft configuration.
		st, err := n.peerStatus(ctx, m.Meta.Peer)
		if err != nil || st.NodeID != m.Name {
			if err == nil {
				err = fmt.Errorf("the peer port %s answers as %q", m.Meta.Peer, st.NodeID)
			}
			l.warnEvery("unreachable:"+m.Name, "agent seen in gossip but its peer port refuses or fails; not adding it to raft", "node", m.Name, "addr", m.Meta.Peer, "err", err)
			continue
		}
		// All agents share one object store (invariant 10).
		if err := l.verifyStore(ctx, m.Name, m.Meta.Peer, st.Instance); err != nil {
			l.warnEvery("store:"+m.Name, "object store probe failed; not adding the agent to raft", "node", m.Name, "err", err)
			continue
		}
		if err := r.AddNonvoter(raft.ServerID(m.Name), raft.ServerAddress(m.Meta.Peer), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("cannot add agent as non-voter", "node", m.Name, "err", err)
			return false
		}
		n.log.Info("added agent as raft non-voter", "node", m.Name, "addr", m.Meta.Peer)
		n.metrics.membershipChange("add_nonvoter")
		inConfig[m.Name] = raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Peer)}
		changed = true
	}

	// 4. Admit non-voters, promote caught-up ones while below the target.
	alive := 0
	for id := range inConfig {
		if id == self || health(id, members, l.unknownSince, now, n.cfg.DeadAgentTimeout) == healthAlive {
			alive++
		}
	}
	target := targetVoters(alive)
	for _, s := range sortedMap(inConfig) {
		id := string(s.ID)
		m, ok := members[id]
		if s.Suffrage != raft.Nonvoter || !ok || m.State != StateAlive || !m.MetaOK || m.Meta.Leaving {
			continue
		}
		// Ask the member only when there is something to do: gossip says
		// it needs admitting, or there is room for a voter.
		if m.Meta.Admitted && m.Meta.Cluster == own.Cluster && voters >= target {
			continue
		}
		st, err := n.peerStatus(ctx, m.Meta.Peer)
		if err != nil || st.NodeID != id {
			continue
		}
		if !st.Admitted || st.ClusterID != own.Cluster {
			if err := l.verifyStore(ctx, id, m.Meta.Peer, st.Instance); err != nil {
				l.warnEvery("store:"+id, "object store probe failed; not admitting the agent", "node", id, "err", err)
				continue
			}
			// A deposed leader's configuration may be stale (the member
			// may be a voter by now): admit only as the current leader.
			if err := r.VerifyLeader().Error(); err != nil {
				return false
			}
			if err := n.admit(ctx, m.Meta.Peer, admitRequest{NodeID: id, Instance: st.Instance, Cluster: own.Cluster}); err != nil {
				l.warnEvery("admit:"+id, "cannot admit non-voter", "node", id, "err", err)
				continue
			}
			changed = true
			continue
		}
		if voters >= target || !n.caughtUp(st) {
			continue
		}
		if err := r.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("cannot promote non-voter", "node", id, "err", err)
			return false
		}
		n.log.Info("promoted non-voter to voter", "node", id, "voters", voters+1, "target", target)
		n.metrics.membershipChange("promote")
		return true
	}
	return changed
}

// caughtUp reports whether a non-voter follows this leader closely enough
// to vote: same term, heard from us recently, applied index within
// MaxPromotionLag of our commit index.
func (n *Node) caughtUp(st Status) bool {
	r := n.r()
	if st.Term != r.CurrentTerm() || st.LeaderID != n.cfg.NodeID {
		return false
	}
	if st.LastContactMs < 0 || time.Duration(st.LastContactMs)*time.Millisecond > 2*n.cfg.HeartbeatTimeout {
		return false
	}
	return st.AppliedIndex+n.cfg.MaxPromotionLag >= r.CommitIndex()
}

func (l *leaderState) remove(id, why string) bool {
	n := l.n
	if err := n.r().RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("cannot remove raft member", "node", id, "why", why, "err", err)
		return false
	}
	n.log.Info("removed raft member", "node", id, "why", why)
	n.metrics.membershipChange("remove")
	return true
}

func sortedServers(servers []raft.Server) []raft.Server {
	out := append([]raft.Server(nil), servers...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortedMap(m map[string]raft.Server) []raft.Server {
	out := make([]raft.Server, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return sortedServers(out)
}

func sortedMembers(members map[string]gossipMember) []gossipMember {
	out := make([]gossipMember, 0, len(members))
	for _, m := range members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
