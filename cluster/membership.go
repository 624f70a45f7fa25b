package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Membership reconciliation (DESIGN.md, "Membership reconciliation"): one
// method per stage; the decisions are pure planners over a membershipView,
// tested without a cluster. The methods only ask members for their status,
// probe their object store and change the Raft configuration.

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

// membershipView is what one reconciliation pass decides from: the Raft
// configuration, the gossip table and the leader's memory of members
// missing from gossip, at one instant.
type membershipView struct {
	self         string
	cluster      string // the leader's cluster ID
	legacy       bool   // the leader's identity is legacy (several cluster IDs may name this group)
	servers      []raft.Server
	members      map[string]gossipMember
	unknownSince map[string]time.Time
	now          time.Time
	deadTimeout  time.Duration // DeadAgentTimeout
	minFeatures  int           // the fsm.FeatureLevel a joining agent needs (requiredFeatures)
}

// alive reports whether id is this leader or a member gossip sees alive.
func (v *membershipView) alive(id string) bool {
	return id == v.self || health(id, v.members, v.unknownSince, v.now, v.deadTimeout) == healthAlive
}

// voters returns the number of voters and how many of them are alive.
func (v *membershipView) voters() (voters, alive int) {
	for _, s := range v.servers {
		if s.Suffrage == raft.Voter {
			voters++
			if v.alive(string(s.ID)) {
				alive++
			}
		}
	}
	return voters, alive
}

// aliveServers counts the members of the configuration that are alive.
func (v *membershipView) aliveServers() int {
	n := 0
	for _, s := range v.servers {
		if v.alive(string(s.ID)) {
			n++
		}
	}
	return n
}

// live returns id's gossip entry when gossip shows it alive with readable
// metadata.
func (v *membershipView) live(id string) (gossipMember, bool) {
	m, ok := v.members[id]
	return m, ok && m.State == StateAlive && m.MetaOK
}

// reconcileMembership makes one pass of membership reconciliation and
// reports whether it changed something (the loop then runs again soon).
// Stages, in order: 1. one removal of a failed member, 2. or of a stale
// incarnation of a voter, 3. or one address update; 4. additions as
// non-voters; 5. admission of non-voters, then one promotion.
func (l *leaderState) reconcileMembership(ctx context.Context) bool {
	if f := l.n.cfg.membershipPassed; f != nil {
		defer f()
	}
	v, ok := l.membershipView()
	if !ok {
		return false
	}
	if id, why := planRemoval(v); id != "" {
		return l.remove(ctx, id, why)
	}
	if id, why := l.staleIncarnation(ctx, v); id != "" {
		return l.remove(ctx, id, why)
	}
	if s, addr, ok := planAddressUpdate(v); ok {
		return l.updateAddress(ctx, s, addr)
	}
	added, ok := l.addNonvoters(ctx, v)
	if !ok {
		return false
	}
	v.servers = append(slices.Clip(v.servers), added...)
	return l.admitAndPromote(ctx, v, len(added) > 0)
}

// membershipView observes what this pass decides from; false when this
// node does not lead or cannot read its configuration or keep its
// identity.
func (l *leaderState) membershipView() (*membershipView, bool) {
	n := l.n
	if n.r().State() != raft.Leader {
		return nil, false
	}
	servers, err := n.configuration()
	if err != nil {
		return nil, false
	}
	members := n.gossip.snapshot()
	now := time.Now()
	l.trackUnknown(servers, members, now)
	own, err := n.leaderIdentity()
	if err != nil {
		n.log.Error("cannot persist the cluster identity", "err", err)
		return nil, false
	}
	return &membershipView{self: n.cfg.NodeID, cluster: own.Cluster, legacy: own.Legacy, servers: servers, members: members,
		unknownSince: l.unknownSince, now: now, deadTimeout: n.cfg.DeadAgentTimeout,
		minFeatures: joinLevel(n.requiredFeatures(), n.cfg.NodeID, servers, members)}, true
}

// requiredFeatures is the fsm.FeatureLevel an agent needs to join, given
// what the replicated state already uses: an AppendBatch allowing a local
// producer epoch bump (fsm.FeatureEpochBump), a registered Kafka broker
// (RegisterBroker, brokerLevel) or a started cluster clock (ClockTick,
// level 2). An agent below it would fail on the first such command or
// snapshot section it receives, after it was counted as a member.
func requiredFeatures(clock int64, brokers int, epochBumps bool) int {
	switch {
	case epochBumps:
		return fsm.FeatureEpochBump
	case brokers > 0:
		return brokerLevel
	case clock > 0:
		return 2
	default:
		return 0
	}
}

// Stage 1: failed members.

// planRemoval picks at most one Raft member to remove: a non-voter or voter
// that left or was dead (or unknown to gossip) longer than the dead-agent
// timeout. Non-voters go first. A voter is removed only while the voters
// that gossip sees alive still form a majority of the current voters: if a
// majority looks failed while this leader commits, gossip is wrong, not
// Raft. Self is never removed.
func planRemoval(v *membershipView) (string, string) {
	voters, aliveVoters := v.voters()
	sorted := append([]raft.Server(nil), v.servers...)
	sort.Slice(sorted, func(i, j int) bool {
		if (sorted[i].Suffrage == raft.Voter) != (sorted[j].Suffrage == raft.Voter) {
			return sorted[j].Suffrage == raft.Voter
		}
		return sorted[i].ID < sorted[j].ID
	})
	for _, s := range sorted {
		id := string(s.ID)
		if id == v.self || health(id, v.members, v.unknownSince, v.now, v.deadTimeout) != healthFailed {
			continue
		}
		why := "dead longer than the dead-agent timeout"
		if m, ok := v.members[id]; !ok {
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

// Stage 2: voters running an incarnation that was never admitted.

// staleCandidates lists, by ID, the voters whose gossip says they run an
// unadmitted incarnation — their data dir was wiped (or they have not
// finished bootstrapping) — and the members of any suffrage that gossip
// shows in another cluster: their data dir was replaced (a wiped seed that
// bootstrapped a new group, a restore), and their slot here is an
// incarnation that is gone. Gossip only hints; their own status confirms.
func staleCandidates(v *membershipView) []raft.Server {
	var out []raft.Server
	for _, s := range sortedServers(v.servers) {
		m, ok := v.live(string(s.ID))
		if string(s.ID) == v.self || !ok {
			continue
		}
		if v.foreign(m.Meta.Cluster, m.Meta.Legacy) || (s.Suffrage == raft.Voter && !m.Meta.Admitted) {
			out = append(out, s)
		}
	}
	return out
}

// foreignCluster reports whether an agent of cluster theirs belongs to
// another cluster than ours ("" on either side: not known, not foreign).
func foreignCluster(theirs, ours string) bool {
	return theirs != "" && ours != "" && theirs != ours
}

// foreign reports whether a member of cluster theirs (legacy: its
// identity is) belongs to another cluster than this leader's. Never
// between legacy identities: a group from before cluster IDs can hold
// several (DESIGN.md, "Identity").
func (v *membershipView) foreign(theirs string, legacy bool) bool {
	return !v.legacy && !legacy && foreignCluster(theirs, v.cluster)
}

// staleStep is what the leader does with a voter whose own status
// confirms an unadmitted incarnation.
type staleStep uint8

const (
	staleWait   staleStep = iota // first confirmed now, or within BootstrapSettle
	staleKeep                    // removing it would break the remaining voters' quorum
	staleRemove                  // remove its voter slot
)

// planStale decides for a member confirmed stale (a voter unadmitted, or
// a member of another cluster) since `since` (seen:
// confirmed in an earlier pass). A founder whose bootstrap settles a moment
// after its co-founders' is unadmitted until then (and refuses Raft RPCs):
// it gets settle to finish.
func planStale(since time.Time, seen bool, now time.Time, settle time.Duration, voter bool, voters, aliveVoters int) staleStep {
	switch {
	case !seen || now.Sub(since) < settle:
		return staleWait
	case voter && aliveVoters-1 < quorum(voters-1): // removing a non-voter leaves the quorum as it is
		return staleKeep
	}
	return staleRemove
}

// staleIncarnation picks a voter that runs a new, unadmitted incarnation
// and may be removed now, with the reason ("" when none).
func (l *leaderState) staleIncarnation(ctx context.Context, v *membershipView) (string, string) {
	voters, aliveVoters := v.voters()
	for _, s := range staleCandidates(v) {
		id := string(s.ID)
		st, err := l.n.peerStatus(ctx, v.members[id].Meta.Peer)
		foreign := err == nil && st.Admitted && v.foreign(st.ClusterID, st.Legacy)
		if err != nil || st.NodeID != id || (st.Admitted && !foreign) || (!foreign && s.Suffrage != raft.Voter) {
			delete(l.staleSince, id)
			continue
		}
		since, seen := l.staleSince[id]
		if !seen {
			l.staleSince[id] = v.now
		}
		switch planStale(since, seen, v.now, l.n.cfg.BootstrapSettle, s.Suffrage == raft.Voter, voters, aliveVoters) {
		case staleWait:
			continue
		case staleKeep:
			l.warnEvery("stale:"+id, "voter lost its raft state but removing it now would break quorum; waiting", "node", id)
			continue
		}
		delete(l.staleSince, id)
		if foreign {
			return id, fmt.Sprintf("belongs to another raft cluster %s (its data dir was replaced: a new group bootstrapped or restored there)", st.ClusterID)
		}
		return id, fmt.Sprintf("runs a new, unadmitted incarnation %s (its data dir was wiped)", st.Instance)
	}
	return "", ""
}

// Stage 3: address changes (an agent restarted on another peer address).

// planAddressUpdate picks the first member (by ID) whose gossiped peer
// address differs from its Raft address, and that address. A voter that
// gossips "not admitted", or a member of another cluster, is a stale
// incarnation (stage 2), not a move: pointing its slot at the new address
// would replicate this group into another one.
func planAddressUpdate(v *membershipView) (raft.Server, string, bool) {
	for _, s := range sortedServers(v.servers) {
		id := string(s.ID)
		m, ok := v.live(id)
		if id == v.self || !ok || m.Meta.Peer == "" || m.Meta.Peer == string(s.Address) {
			continue
		}
		if (s.Suffrage == raft.Voter && !m.Meta.Admitted) || v.foreign(m.Meta.Cluster, m.Meta.Legacy) {
			continue
		}
		return s, m.Meta.Peer, true
	}
	return raft.Server{}, "", false
}

// updateAddress re-adds s at addr with the same suffrage.
func (l *leaderState) updateAddress(ctx context.Context, s raft.Server, addr string) bool {
	n := l.n
	r := n.r()
	var f raft.IndexFuture
	if s.Suffrage == raft.Voter {
		f = r.AddVoter(s.ID, raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout)
	} else {
		f = r.AddNonvoter(s.ID, raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout)
	}
	if err := n.await(ctx, f); err != nil {
		n.log.Warn("cannot update a member's raft address", "node", s.ID, "addr", addr, "err", err)
		return false
	}
	n.log.Info("updated raft address of member", "node", s.ID, "from", s.Address, "to", addr)
	n.metrics.membershipChange(changeUpdateAddress)
	return true
}

// Stage 4: new live agents join as non-voters.

// planJoins lists, by name, the agents gossip shows alive that are not in
// the Raft configuration and may join it, and apart those that belong to
// another cluster (never added). Agents without metadata or a peer
// address, leaving, or that left on request a moment ago (departed) are
// skipped.
func planJoins(v *membershipView, departed func(string) bool) (join, foreign, behind []gossipMember) {
	inConfig := map[string]bool{}
	for _, s := range v.servers {
		inConfig[string(s.ID)] = true
	}
	for _, m := range sortedMembers(v.members) {
		if inConfig[m.Name] || m.Name == v.self || m.State != StateAlive {
			continue
		}
		if !m.MetaOK || m.Meta.Peer == "" || m.Meta.Leaving || departed(m.Name) {
			continue
		}
		// Another cluster's agent; or one admitted to a group that has no
		// name (Raft state of an earlier release), which a leader that
		// is not legacy itself cannot take for its own.
		if (m.Meta.Cluster != "" && m.Meta.Cluster != v.cluster) || (m.Meta.Admitted && m.Meta.Cluster == "" && !v.legacy) {
			foreign = append(foreign, m)
			continue
		}
		if m.Meta.Features < v.minFeatures {
			behind = append(behind, m)
			continue
		}
		join = append(join, m)
	}
	return join, foreign, behind
}

// addNonvoters adds the agents planJoins picks that prove they belong and
// returns them; false when Raft refused a change (the pass ends).
func (l *leaderState) addNonvoters(ctx context.Context, v *membershipView) ([]raft.Server, bool) {
	n := l.n
	join, foreign, behind := planJoins(v, n.recentlyDeparted)
	for _, m := range foreign {
		l.warnEvery("foreign:"+m.Name, "agent belongs to another cluster; not adding it", "node", m.Name, "its_cluster", m.Meta.Cluster, "cluster", v.cluster)
	}
	for _, m := range behind {
		l.warnEvery("behind:"+m.Name, "agent runs an older version than the cluster's state needs; not adding it to raft until it is upgraded",
			"node", m.Name, "its_feature_level", m.Meta.Features, "needed", v.minFeatures)
	}
	n.behindJoins.Store(int64(len(behind)))
	var added []raft.Server
	for _, m := range join {
		if !l.mayJoin(ctx, m) {
			continue
		}
		s := raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Peer)}
		if err := n.await(ctx, n.r().AddNonvoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout)); err != nil {
			n.log.Warn("cannot add agent as non-voter", "node", m.Name, "err", err)
			return nil, false
		}
		n.log.Info("added agent as raft non-voter", "node", m.Name, "addr", m.Meta.Peer)
		n.metrics.membershipChange(changeAddNonvoter)
		added = append(added, s)
	}
	return added, true
}

// mayJoin checks what gossip only hints. The agent's peer port must answer
// as that agent: this is where the peer port's security (mTLS, the cluster
// secret) keeps an agent that gossip reached but that cannot prove it
// belongs out of the Raft configuration. And it must share the leader's
// object store (invariant 10).
func (l *leaderState) mayJoin(ctx context.Context, m gossipMember) bool {
	st, err := l.n.peerStatus(ctx, m.Meta.Peer)
	if err != nil || st.NodeID != m.Name {
		if err == nil {
			err = fmt.Errorf("the peer port %s answers as %q", m.Meta.Peer, st.NodeID)
		}
		l.warnEvery("unreachable:"+m.Name, "agent seen in gossip but its peer port refuses or fails; not adding it to raft", "node", m.Name, "addr", m.Meta.Peer, "err", err)
		return false
	}
	if err := l.verifyStore(ctx, m.Name, m.Meta.Peer, st.Instance); err != nil {
		l.warnEvery("store:"+m.Name, "object store probe failed; not adding the agent to raft", "node", m.Name, "err", err)
		return false
	}
	return true
}

// Stage 5: admit non-voters, promote caught-up ones while below the target.

// nonvotersToAsk lists, by ID, the non-voters gossip shows alive and not
// leaving that there is something to ask about: gossip says they still
// need admitting into this cluster, or there is room for a voter.
func nonvotersToAsk(v *membershipView, room bool) []raft.Server {
	var out []raft.Server
	for _, s := range sortedServers(v.servers) {
		m, ok := v.live(string(s.ID))
		if s.Suffrage != raft.Nonvoter || !ok || m.Meta.Leaving {
			continue
		}
		if m.Meta.Admitted && (m.Meta.Cluster == v.cluster || (v.legacy && m.Meta.Legacy)) && !room {
			continue
		}
		out = append(out, s)
	}
	return out
}

// nonvoterStep is what the leader does with a non-voter, from its status.
type nonvoterStep uint8

const (
	nonvoterNothing nonvoterStep = iota
	nonvoterAdmit                // not admitted into this cluster yet
	nonvoterPromote              // room for a voter, and it has caught up
)

// planNonvoter decides for a non-voter from its own status: admit it while
// it is not admitted into this cluster; promote it when there is room for a
// voter and it has caught up.
func planNonvoter(st Status, cluster string, legacy, room, caughtUp bool) nonvoterStep {
	switch {
	case !st.Admitted || (st.ClusterID != cluster && !(legacy && st.Legacy)):
		return nonvoterAdmit
	case room && caughtUp:
		return nonvoterPromote
	}
	return nonvoterNothing
}

// admitAndPromote admits the non-voters that need it and promotes at most
// one. changed is whether the earlier stages changed something; the result
// is the pass's.
func (l *leaderState) admitAndPromote(ctx context.Context, v *membershipView, changed bool) bool {
	voters, _ := v.voters()
	target := targetVoters(v.aliveServers())
	for _, s := range nonvotersToAsk(v, voters < target) {
		id := string(s.ID)
		peer := v.members[id].Meta.Peer
		st, err := l.n.peerStatus(ctx, peer)
		if err != nil || st.NodeID != id {
			continue
		}
		switch planNonvoter(st, v.cluster, v.legacy, voters < target, l.n.caughtUp(st)) {
		case nonvoterAdmit:
			admitted, leading := l.admitNonvoter(ctx, v.cluster, v.legacy, peer, st)
			if !leading {
				return false
			}
			changed = changed || admitted
		case nonvoterPromote:
			return l.promote(ctx, s, voters, target)
		}
	}
	return changed
}

// admitNonvoter admits the non-voter whose status is st once it passed the
// object store probe. leading is false when this node could not confirm
// it still leads (the pass ends).
func (l *leaderState) admitNonvoter(ctx context.Context, cluster string, legacy bool, peer string, st Status) (admitted, leading bool) {
	n, id := l.n, st.NodeID
	if err := l.verifyStore(ctx, id, peer, st.Instance); err != nil {
		l.warnEvery("store:"+id, "object store probe failed; not admitting the agent", "node", id, "err", err)
		return false, true
	}
	// A deposed leader's configuration may be stale (the member may be a
	// voter by now): admit only as the current leader.
	if err := n.await(ctx, n.r().VerifyLeader()); err != nil {
		return false, false
	}
	if err := n.admit(ctx, peer, admitRequest{NodeID: id, Instance: st.Instance, Cluster: cluster, Legacy: legacy, Version: identityVersion}); err != nil {
		l.warnEvery("admit:"+id, "cannot admit non-voter", "node", id, "err", err)
		return false, true
	}
	return true, true
}

// promote makes the non-voter s a voter.
func (l *leaderState) promote(ctx context.Context, s raft.Server, voters, target int) bool {
	n := l.n
	if err := n.await(ctx, n.r().AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout)); err != nil {
		n.log.Warn("cannot promote non-voter", "node", s.ID, "err", err)
		return false
	}
	n.log.Info("promoted non-voter to voter", "node", s.ID, "voters", voters+1, "target", target)
	n.metrics.membershipChange(changePromote)
	return true
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

func (l *leaderState) remove(ctx context.Context, id, why string) bool {
	n := l.n
	if err := n.await(ctx, n.r().RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
		n.log.Warn("cannot remove raft member", "node", id, "why", why, "err", err)
		return false
	}
	n.log.Info("removed raft member", "node", id, "why", why)
	n.metrics.membershipChange(changeRemove)
	return true
}

func sortedServers(servers []raft.Server) []raft.Server {
	out := append([]raft.Server(nil), servers...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortedMembers(members map[string]gossipMember) []gossipMember {
	out := make([]gossipMember, 0, len(members))
	for _, m := range members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
