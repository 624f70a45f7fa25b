package client

import (
	"context"
	"sort"
	"time"
)

// startHeartbeat runs the heartbeat of one generation until stopped or
// the coordinator says the group moved on.
func (g *GroupConsumer) startHeartbeat(gen int32, member string) {
	ctx, cancel := context.WithCancel(g.c.bg)
	done := make(chan struct{})
	g.mu.Lock()
	g.hbStop, g.hbDone = cancel, done
	g.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(g.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			hctx, hcancel := context.WithTimeout(ctx, g.cfg.SessionTimeout)
			err := g.c.Heartbeat(hctx, g.cfg.Group, gen, member)
			hcancel()
			if err != nil && rejoinable(err) {
				g.mu.Lock()
				g.rejoin = true
				if Kind(err) == KindUnknownMember {
					g.memberID = ""
				}
				g.mu.Unlock()
				select {
				case g.wake <- struct{}{}:
				default:
				}
				return
			}
			if err != nil && ctx.Err() == nil {
				g.c.log.Debug("group heartbeat failed", "group", g.cfg.Group, "err", err)
			}
		}
	}()
}

// topicGrew reports whether the client's metadata (refreshed in the
// background) shows more partitions than when the member joined.
func (g *GroupConsumer) topicGrew(ctx context.Context) bool {
	n, err := g.c.partitionCount(ctx, g.cfg.Topic)
	g.mu.Lock()
	defer g.mu.Unlock()
	return err == nil && g.count > 0 && n > g.count
}

func (g *GroupConsumer) stopHeartbeat() {
	g.mu.Lock()
	stop, done := g.hbStop, g.hbDone
	g.hbStop, g.hbDone = nil, nil
	g.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Poll returns records of the member's partitions (see Consumer.Poll). When
// the group is rebalancing it first commits the positions it owns, stops
// reading them and rejoins.
func (g *GroupConsumer) Poll(ctx context.Context) ([]Record, error) {
	grown := g.topicGrew(ctx)
	g.mu.Lock()
	closed, rejoin, inner := g.closed, g.rejoin || grown, g.inner
	g.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if rejoin {
		if err := g.rebalance(ctx); err != nil {
			return nil, err
		}
		g.mu.Lock()
		inner = g.inner
		g.mu.Unlock()
	}
	if inner == nil {
		// Nothing assigned: wait like an empty long-poll, or for a rebalance.
		t := time.NewTimer(g.cfg.MaxWait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.wake:
		case <-t.C:
		}
		return nil, nil
	}
	return inner.Poll(ctx)
}

// rebalance commits what the member read (its old generation: refused if
// the group already moved on, then the next owner reads those records
// again), drops its partitions and rejoins.
func (g *GroupConsumer) rebalance(ctx context.Context) error {
	if !g.cfg.ManualCommit { // else the caller committed what it processed
		if err := g.Commit(ctx); err != nil && !rejoinable(err) {
			g.c.log.Warn("commit before rebalance failed", "group", g.cfg.Group, "err", err)
		}
	}
	g.mu.Lock()
	if g.inner != nil {
		_ = g.inner.Close()
	}
	g.inner, g.assigned = nil, nil
	g.mu.Unlock()
	return g.join(ctx)
}

// Commit commits, as a member of its generation, the position of every
// owned partition that moved since the last commit. After a rebalance the
// coordinator refuses it (Kind illegal_generation or unknown_member) and
// the next Poll rejoins.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	inner := g.reader()
	if inner == nil || g.MemberID() == "" {
		return nil
	}
	return g.CommitOffsets(ctx, inner.pending()...)
}

// Close stops the heartbeat and leaves the group (its partitions go to
// the other members at once). It commits nothing: call Commit first.
func (g *GroupConsumer) Close(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	member := g.memberID
	inner := g.inner
	g.mu.Unlock()
	g.stopHeartbeat()
	if inner != nil {
		_ = inner.Close()
	}
	if member == "" {
		return nil
	}
	err := g.c.LeaveGroup(ctx, g.cfg.Group, member)
	if rejoinable(err) {
		return nil // already out of the group
	}
	return err
}

// pending lists the positions that moved since the last commit.
func (k *Consumer) pending() []OffsetCommit {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []OffsetCommit
	for _, p := range k.parts {
		off := k.pos[p]
		if c, ok := k.committed[p]; ok && c == off {
			continue
		}
		out = append(out, OffsetCommit{Topic: k.cfg.Topic, Partition: p, Offset: off})
	}
	return out
}

// committedUpTo records committed positions.
func (k *Consumer) committedUpTo(commits []OffsetCommit) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range commits {
		k.committed[c.Partition] = c.Offset
	}
}

// AssignRange is Kafka's range assignor: per topic, the members
// subscribed to it (by member ID) get consecutive ranges, the first ones
// one partition more when the count does not divide.
func AssignRange(subs map[string][]string, counts map[string]int32) map[string]map[string][]int32 {
	out := map[string]map[string][]int32{}
	for topic, n := range counts {
		members := subscribers(subs, topic)
		if len(members) == 0 {
			continue
		}
		per, extra := n/int32(len(members)), n%int32(len(members))
		next := int32(0)
		for i, m := range members {
			k := per
			if int32(i) < extra {
				k++
			}
			for p := next; p < next+k; p++ {
				add(out, m, topic, p)
			}
			next += k
		}
	}
	return out
}

// AssignRoundRobin is Kafka's round-robin assignor: every topic-partition
// in (topic, partition) order goes to the next member subscribed to it.
func AssignRoundRobin(subs map[string][]string, counts map[string]int32) map[string]map[string][]int32 {
	out := map[string]map[string][]int32{}
	topics := make([]string, 0, len(counts))
	for t := range counts {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	all := subscribers(subs, "")
	i := 0
	for _, t := range topics {
		for p := int32(0); p < counts[t]; p++ {
			for tries := 0; tries < len(all); tries++ {
				m := all[i%len(all)]
				i++
				if subscribed(subs[m], t) {
					add(out, m, t, p)
					break
				}
			}
		}
	}
	return out
}

// subscribers lists, sorted, the members subscribed to topic ("" = all).
func subscribers(subs map[string][]string, topic string) []string {
	var out []string
	for m, ts := range subs {
		if topic == "" || subscribed(ts, topic) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

func subscribed(topics []string, t string) bool {
	for _, x := range topics {
		if x == t {
			return true
		}
	}
	return false
}

func add(out map[string]map[string][]int32, member, topic string, p int32) {
	if out[member] == nil {
		out[member] = map[string][]int32{}
	}
	out[member][topic] = append(out[member][topic], p)
}

// Position is the next offset to read of an owned partition (false when
// not owned).
func (g *GroupConsumer) Position(p int32) (int64, bool) {
	if inner := g.reader(); inner != nil {
		return inner.Position(p)
	}
	return 0, false
}

// HighWatermark is the last high watermark seen of an owned partition.
func (g *GroupConsumer) HighWatermark(p int32) (int64, bool) {
	if inner := g.reader(); inner != nil {
		return inner.HighWatermark(p)
	}
	return 0, false
}

// Pause stops fetching owned partitions until the next rebalance.
func (g *GroupConsumer) Pause(ps ...int32) {
	if inner := g.reader(); inner != nil {
		inner.Pause(ps...)
	}
}

// StartOffset is where reading an owned partition began in the current
// generation: the group's committed offset when it had one (false when
// the partition is not owned).
func (g *GroupConsumer) StartOffset(p int32) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	off, ok := g.starts[p]
	return off, ok
}

func (g *GroupConsumer) reader() *Consumer {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inner
}

// CommitOffsets commits explicit offsets as the member of its current
// generation (refused, with a rejoin at the next Poll, when the group
// moved on).
func (g *GroupConsumer) CommitOffsets(ctx context.Context, offsets ...OffsetCommit) error {
	g.mu.Lock()
	gen, member, inner := g.gen, g.memberID, g.inner
	g.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	err := g.c.CommitMemberOffsets(ctx, g.cfg.Group, gen, member, offsets...)
	if err != nil {
		if rejoinable(err) {
			g.mu.Lock()
			g.rejoin = true
			g.mu.Unlock()
		}
		return err
	}
	if inner != nil {
		inner.committedUpTo(offsets)
	}
	return nil
}
