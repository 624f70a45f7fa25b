package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Feature levels. A command or payload that agents of an older version
// cannot decode is proposed only once every member applies the level that
// added it: the replicated state already requires that level of every
// joining agent (requiredFeatures), or every member of the Raft
// configuration advertises it in gossip (a rolling upgrade has finished).
// A joining agent needs the highest level every current member advertises
// (joinLevel), so an older agent cannot be admitted between a proposer's
// gossip verdict and its first command of the new level.

// levelCacheFor is how long a gossip verdict below the required level is
// reused: the question is asked once per idempotent batch until the level
// is in use.
const levelCacheFor = time.Second

// levelCache remembers the last gossip verdict per level.
type levelCache struct {
	mu sync.Mutex
	at map[int]time.Time
	ok map[int]bool
}

// requiredFeatures is the fsm.FeatureLevel the replicated state requires of
// a joining agent.
func (n *Node) requiredFeatures() int {
	return requiredFeatures(n.fsm.Clock(), len(n.fsm.BrokerIDs()), n.fsm.EpochBumps())
}

// joinLevel is the fsm.FeatureLevel a joining agent needs: what the
// replicated state requires, raised to the highest level every current
// member advertises in gossip. Proposers may start writing that level's
// commands at any moment (MembersAt, whose verdict is cached for
// levelCacheFor), so an agent below it admitted meanwhile would stop on the
// first one; holding it back closes that window (a cluster whose members
// all run this version admits no older agent).
func joinLevel(required int, self string, servers []raft.Server, members map[string]gossipMember) int {
	level := required
	for next := level + 1; next <= fsm.FeatureLevel && allMembersAt(self, servers, members, next); next++ {
		level = next
	}
	return level
}

// MembersAt reports whether every member of the Raft group applies the
// given fsm.FeatureLevel, so a proposer may write what that level added.
func (n *Node) MembersAt(level int) bool {
	if level == fsm.FeatureEpochBump && n.epochBumps() {
		return true // the fast path: the state requires it
	}
	return membersAt(level, n.requiredFeatures(), func() bool { return n.gossipAt(level) })
}

// epochBumps is fsm.EpochBumps, remembered once true (the state never
// clears it): MembersAt is asked once per idempotent batch.
func (n *Node) epochBumps() bool {
	if n.bumpsSeen.Load() {
		return true
	}
	if n.fsm.EpochBumps() {
		n.bumpsSeen.Store(true)
		return true
	}
	return false
}

// membersAt decides MembersAt: never above this agent's own level; at once
// when the replicated state requires the level of every member; else as
// gossip says.
func membersAt(level, required int, gossipAt func() bool) bool {
	switch {
	case level > fsm.FeatureLevel:
		return false
	case required >= level:
		return true
	}
	return gossipAt()
}

// gossipAt reports whether every member of the Raft configuration
// advertises level in gossip; a verdict is reused for levelCacheFor.
func (n *Node) gossipAt(level int) bool {
	c := &n.levels
	now := time.Now()
	c.mu.Lock()
	if at, ok := c.at[level]; ok && now.Sub(at) < levelCacheFor {
		v := c.ok[level]
		c.mu.Unlock()
		return v
	}
	c.mu.Unlock()
	servers, err := n.configuration()
	v := err == nil && allMembersAt(n.cfg.NodeID, servers, n.gossip.snapshot(), level)
	c.mu.Lock()
	if c.at == nil {
		c.at, c.ok = map[int]time.Time{}, map[int]bool{}
	}
	c.at[level], c.ok[level] = now, v
	c.mu.Unlock()
	return v
}

// legacyRaftPeer reports whether gossip last showed the agent at peer
// address addr below fsm.FeatureRaftCluster: it knows only the Raft
// handshake that names no cluster (transport.RaftCluster.Legacy). An alive
// entry for the address decides; without one, any entry gossip still
// holds (an agent suspected, dead or restarting keeps the level it had).
func (n *Node) legacyRaftPeer(addr string) bool {
	g := n.gossipp.Load()
	return g != nil && g.below(addr, fsm.FeatureRaftCluster)
}

// raftClusterID is the cluster ID this agent's Raft connections name (""
// until it has one).
func (n *Node) raftClusterID() string {
	id, _ := n.raftCluster.Load().(string)
	return id
}
