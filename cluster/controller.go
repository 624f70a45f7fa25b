package cluster

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Reasons for a partition leadership change (metric label).
const (
	moveUnassigned = "unassigned" // the partition had no leader
	moveNotMember  = "not_member" // its leader is not in the Raft group
	moveFailover   = "failover"   // its leader is dead (or left)
	moveRebalance  = "rebalance"  // load spreading
)

// leaderMove is one AssignLeader the controller wants to propose.
type leaderMove struct {
	TopicID   uint64
	Partition int32
	From, To  string
	Epoch     uint64 // the partition's current epoch (the CAS expectation)
	Reason    string
}

// leadershipView is the controller's input: everything it decides from.
type leadershipView struct {
	self         string
	servers      []raft.Server
	members      map[string]gossipMember
	unknownSince map[string]time.Time
	now          time.Time
	failover     time.Duration // PartitionFailoverTimeout
	rebalance    bool          // also spread load this round
	maxMoves     int           // rebalancing moves per round
	parts        []fsm.PartitionInfo
}

// candidates are the voters gossip sees alive and not leaving; self
// qualifies unless it is leaving.
func (v *leadershipView) candidates() []string {
	var out []string
	for _, s := range v.servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter {
			continue
		}
		m, ok := v.members[id]
		if ok && m.MetaOK && m.Meta.Leaving {
			continue // leaving agents get no new leaderships
		}
		if id == v.self || (ok && m.State == StateAlive) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// planLeadership decides the partition leadership changes of one round:
// every partition without a usable leader (none, not a Raft member, left,
// or dead/unknown to gossip for longer than the failover timeout) goes to
// the least loaded candidate; then, when rebalancing and nothing failed
// over, up to maxMoves partitions move from the most to the least loaded
// candidate while their loads differ by more than one. The epochs in the
// moves make every AssignLeader a compare-and-set: a stale plan changes
// nothing.
func planLeadership(v leadershipView) []leaderMove {
	cands := v.candidates()
	if len(cands) == 0 {
		return nil
	}
	load := leaderLoads(cands, v.parts)
	moves := planFailover(&v, cands, load)
	if !v.rebalance || len(moves) > 0 || len(cands) < 2 {
		return moves
	}
	return planRebalance(&v, cands, load)
}

// leaderLoads counts the partitions each candidate leads.
func leaderLoads(cands []string, parts []fsm.PartitionInfo) map[string]int {
	load := map[string]int{}
	for _, c := range cands {
		load[c] = 0
	}
	for _, p := range parts {
		if _, ok := load[p.Leader]; ok {
			load[p.Leader]++
		}
	}
	return load
}

// leastLoaded returns the candidate leading the fewest partitions (the
// first of them in cands' order).
func leastLoaded(cands []string, load map[string]int) string {
	best := cands[0]
	for _, c := range cands[1:] {
		if load[c] < load[best] {
			best = c
		}
	}
	return best
}

// failoverReason says why partition p needs a new leader, or "" when its
// leader is usable.
func (v *leadershipView) failoverReason(p fsm.PartitionInfo, inConfig map[string]bool) string {
	switch {
	case p.Leader == "":
		return moveUnassigned
	case !inConfig[p.Leader]:
		return moveNotMember
	case p.Leader != v.self && health(p.Leader, v.members, v.unknownSince, v.now, v.failover) == healthFailed:
		return moveFailover
	}
	return ""
}

// planFailover moves every partition without a usable leader to the least
// loaded candidate, counting each move in load.
func planFailover(v *leadershipView, cands []string, load map[string]int) []leaderMove {
	inConfig := map[string]bool{}
	for _, s := range v.servers {
		inConfig[string(s.ID)] = true
	}
	var moves []leaderMove
	for _, p := range v.parts {
		reason := v.failoverReason(p, inConfig)
		if reason == "" {
			continue
		}
		to := leastLoaded(cands, load)
		load[to]++
		moves = append(moves, leaderMove{TopicID: p.TopicID, Partition: p.Partition, From: p.Leader, To: to, Epoch: p.LeaderEpoch, Reason: reason})
	}
	return moves
}

// planRebalance moves up to maxMoves partitions, one at a time, from the
// most to the least loaded candidate while their loads differ by more than
// one; a partition moves at most once a round.
func planRebalance(v *leadershipView, cands []string, load map[string]int) []leaderMove {
	var moves []leaderMove
	moved := map[fsm.PartitionKey]bool{}
	for len(moves) < v.maxMoves {
		hi, lo := cands[0], cands[0]
		for _, c := range cands[1:] {
			if load[c] > load[hi] {
				hi = c
			}
			if load[c] < load[lo] {
				lo = c
			}
		}
		if load[hi]-load[lo] <= 1 {
			break
		}
		p, ok := v.lastLedBy(hi, moved)
		if !ok {
			break
		}
		moved[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}] = true
		load[hi]--
		load[lo]++
		moves = append(moves, leaderMove{TopicID: p.TopicID, Partition: p.Partition, From: hi, To: lo, Epoch: p.LeaderEpoch, Reason: moveRebalance})
	}
	return moves
}

// lastLedBy returns the last partition led by id that is not in moved.
func (v *leadershipView) lastLedBy(id string, moved map[fsm.PartitionKey]bool) (fsm.PartitionInfo, bool) {
	for i := len(v.parts) - 1; i >= 0; i-- {
		p := v.parts[i]
		if p.Leader == id && !moved[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}] {
			return p, true
		}
	}
	return fsm.PartitionInfo{}, false
}

// runController plans one round and proposes its moves as AssignLeader
// commands through this (leader) node. Stale-epoch rejections are expected
// when the state moved on; the next round re-plans from the FSM.
func (l *leaderState) runController(ctx context.Context, rebalance bool) {
	n := l.n
	if n.r().State() != raft.Leader {
		return
	}
	servers, err := n.configuration()
	if err != nil {
		return
	}
	members := n.gossip.snapshot()
	now := time.Now()
	l.trackUnknown(servers, members, now)
	moves := planLeadership(leadershipView{
		self: n.cfg.NodeID, servers: servers, members: members, unknownSince: l.unknownSince, now: now,
		failover: n.cfg.PartitionFailoverTimeout, rebalance: rebalance, maxMoves: n.cfg.RebalanceMaxMoves,
		parts: n.fsm.AllPartitions(),
	})
	for _, mv := range moves {
		if ctx.Err() != nil {
			return
		}
		cmd := fsm.Encode(&fsm.AssignLeader{TopicID: mv.TopicID, Partition: mv.Partition, Leader: mv.To, ExpectedEpoch: mv.Epoch})
		actx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		res, _, err := n.applyLocal(actx, cmd)
		cancel()
		if err == nil {
			err = res.Err()
		}
		switch {
		case errors.Is(err, fsm.ErrStaleEpoch), errors.Is(err, fsm.ErrTopicNotFound), errors.Is(err, fsm.ErrPartitionInvalid):
			n.log.Debug("partition leadership change skipped; state moved on", "topic_id", mv.TopicID, "partition", mv.Partition, "err", err)
			continue
		case err != nil:
			n.log.Warn("partition leadership change failed", "topic_id", mv.TopicID, "partition", mv.Partition, "to", mv.To, "err", err)
			return
		}
		n.log.Info("partition leader assigned", "topic_id", mv.TopicID, "partition", mv.Partition,
			"from", mv.From, "to", mv.To, "epoch", res.Epoch, "reason", mv.Reason)
		n.metrics.leadershipChange(mv.Reason)
	}
}

// Placement picks leaders for n new partitions: the alive voters, least
// loaded first, filled level (with equal loads this is round robin). It
// reads this agent's FSM, Raft configuration and gossip view; the epoch
// CAS makes a stale choice harmless (the controller corrects it).
func (n *Node) Placement(count int32) []string {
	if count <= 0 {
		return nil
	}
	out := make([]string, count)
	cands := []string{n.cfg.NodeID}
	var parts []fsm.PartitionInfo
	if n.started.Load() {
		if servers, err := n.configuration(); err == nil && len(servers) > 0 {
			v := leadershipView{self: n.cfg.NodeID, servers: servers, members: n.gossip.snapshot()}
			if c := v.candidates(); len(c) > 0 {
				cands = c
			}
		}
		parts = n.fsm.AllPartitions()
	}
	load := leaderLoads(cands, parts)
	for i := range out {
		out[i] = leastLoaded(cands, load)
		load[out[i]]++
	}
	return out
}
