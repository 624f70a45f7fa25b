package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// electIfSoleVoter makes a node that is the only voter of its latest Raft
// configuration start its election now instead of after a heartbeat
// timeout (1–2 s by default), so a single agent is ready, and takes topic
// creation, at once (DESIGN.md, "Single voter: no election wait").
//
// hashicorp/raft has no "campaign now" call. ReloadConfig with a shorter
// HeartbeatTimeout notifies the follower loop, which then checks for
// leader contact at once; a node that never heard from a leader since it
// started becomes a candidate, and as the only voter it wins its own vote.
// The timeouts are put back right away: the notification is queued
// (buffered) in Raft, so the check still runs, and nothing else about the
// configuration changes. A group with more than one voter is never kicked,
// so its elections are untouched. When HeartbeatTimeout cannot be
// shortened (it equals LeaderLeaseTimeout, the least Raft accepts), the
// node waits for the normal election.
func (n *Node) electIfSoleVoter() {
	r := n.r()
	f := r.GetConfiguration()
	if f.Error() != nil || !soleVoter(f.Configuration(), raft.ServerID(n.cfg.NodeID)) || r.State() != raft.Follower {
		return
	}
	// reloadMu: a compaction change (reloadCompaction) between reading
	// orig and restoring it would be undone.
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	orig := r.ReloadableConfig()
	kick, ok := kickConfig(orig, n.cfg.LeaderLeaseTimeout)
	if !ok {
		n.log.Debug("sole voter: heartbeat timeout cannot be shortened; waiting for the normal election")
		return
	}
	if err := r.ReloadConfig(kick); err != nil {
		n.log.Warn("sole voter: could not start the election early", "err", err)
		return
	}
	if err := r.ReloadConfig(orig); err != nil {
		n.log.Warn("sole voter: could not restore the raft timeouts", "err", err)
		return
	}
	n.log.Debug("sole voter: election started without waiting for the heartbeat timeout")
}

// soleVoter reports whether id is the only voter of cfg.
func soleVoter(cfg raft.Configuration, id raft.ServerID) bool {
	voters := 0
	self := false
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == id
		}
	}
	return voters == 1 && self
}

// kickConfig is rc with the shortest HeartbeatTimeout Raft accepts
// (LeaderLeaseTimeout), and false when that is not shorter than rc's:
// only a shorter timeout makes Raft notify its follower loop.
func kickConfig(rc raft.ReloadableConfig, lease time.Duration) (raft.ReloadableConfig, bool) {
	if lease <= 0 || lease >= rc.HeartbeatTimeout {
		return rc, false
	}
	rc.HeartbeatTimeout = lease
	return rc, true
}
