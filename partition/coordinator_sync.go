package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// ConsumerProtocolType is the protocol type of Kafka consumers and of
// StreamHouse's own group members: their assignments are
// ConsumerMemberAssignment, which the coordinator decodes to check that no
// partition goes to two members in one generation.
const ConsumerProtocolType = "consumer"

func (c *Coordinator) sync(ctx context.Context, req SyncRequest) (SyncResult, error) {
	if err := c.coordinating(); err != nil {
		return SyncResult{}, err
	}
	m, ok := c.meta.Membership(req.Group)
	if err := checkMember(m, ok, req.Group, req.Generation, req.MemberID); err != nil {
		return SyncResult{}, err
	}
	if (req.ProtocolType != "" && req.ProtocolType != m.ProtocolType) || (req.Protocol != "" && req.Protocol != m.Protocol) {
		return SyncResult{}, fmt.Errorf("%w: group %q uses %s/%s", fsm.ErrInconsistentProtocol, req.Group, m.ProtocolType, m.Protocol)
	}
	c.mu.Lock()
	g := c.state(m, c.clock())
	c.touch(g, m, req.MemberID, c.clock())
	preparing := g.preparing
	c.mu.Unlock()
	if preparing {
		return SyncResult{}, fmt.Errorf("%w: group %q is rebalancing: rejoin", fsm.ErrRebalanceInProgress, req.Group)
	}
	if m.State == fsm.GroupStateCompletingRebalance && req.MemberID == m.Leader {
		if err := c.storeAssignments(ctx, m, req); err != nil {
			return SyncResult{}, err
		}
	}
	return c.awaitAssignment(ctx, req)
}

// storeAssignments replicates the leader's assignments after checking
// them: every member known, no partition twice (consumer protocol).
func (c *Coordinator) storeAssignments(ctx context.Context, m fsm.GroupMembership, req SyncRequest) error {
	seen := map[string]bool{}
	for _, a := range req.Assignments {
		if _, in := m.Member(a.MemberID); !in {
			return fmt.Errorf("%w: the assignment names %q, not in generation %d", fsm.ErrUnknownMember, a.MemberID, m.Generation)
		}
		if seen[a.MemberID] {
			return fmt.Errorf("%w: member %q is assigned twice", fsm.ErrInvalidArgument, a.MemberID)
		}
		seen[a.MemberID] = true
	}
	if m.ProtocolType == ConsumerProtocolType {
		if err := checkDisjoint(req.Assignments); err != nil {
			return err
		}
	}
	err := c.groups.propose(ctx, &fsm.GroupSync{Group: m.Group, Generation: m.Generation, Assignments: req.Assignments, Timestamp: c.clock().UnixMilli()})
	return err
}

// checkDisjoint refuses consumer assignments that give a partition to two
// members (assignments that do not decode are opaque and not checked).
func checkDisjoint(as []fsm.MemberAssignment) error {
	owner := map[fsm.TopicPartition]string{}
	for _, a := range as {
		tps, err := DecodeConsumerAssignment(a.Assignment)
		if err != nil {
			continue
		}
		for _, tp := range tps {
			for _, p := range tp.Partitions {
				k := fsm.TopicPartition{Topic: tp.Topic, Partition: p}
				if o, dup := owner[k]; dup && o != a.MemberID {
					return fmt.Errorf("%w: partition %s/%d is assigned to both %q and %q", fsm.ErrInvalidArgument, tp.Topic, p, o, a.MemberID)
				}
				owner[k] = a.MemberID
			}
		}
	}
	return nil
}

// awaitAssignment waits until the generation is Stable and returns the
// member's assignment; a generation that moves on, or a rebalance that
// starts, ends the wait with fsm.ErrRebalanceInProgress.
func (c *Coordinator) awaitAssignment(ctx context.Context, req SyncRequest) (SyncResult, error) {
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		changed := c.meta.Changed()
		m, ok := c.meta.Membership(req.Group)
		x, in := m.Member(req.MemberID)
		switch {
		case !ok || !in:
			return SyncResult{}, fmt.Errorf("%w: %q left group %q", fsm.ErrUnknownMember, req.MemberID, req.Group)
		case m.Generation != req.Generation || m.State == fsm.GroupStatePreparingRebalance:
			return SyncResult{}, fmt.Errorf("%w: group %q moved to generation %d", fsm.ErrRebalanceInProgress, req.Group, m.Generation)
		case m.State == fsm.GroupStateStable:
			return SyncResult{ProtocolType: m.ProtocolType, Protocol: m.Protocol, Assignment: x.Assignment}, nil
		}
		if err := c.coordinating(); err != nil {
			return SyncResult{}, err
		}
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			return SyncResult{}, ctx.Err()
		}
	}
}

func (c *Coordinator) describe(ctx context.Context, group string) (GroupMembershipDescription, error) {
	if err := c.groups.sync.SyncRead(ctx); err != nil {
		return GroupMembershipDescription{}, err
	}
	m, ok := c.meta.Membership(group)
	if !ok {
		if _, has := c.meta.GroupOffsets(group); has {
			return GroupMembershipDescription{Group: group, State: fsm.GroupStateEmpty}, nil
		}
		return GroupMembershipDescription{Group: group, State: fsm.GroupStateDead}, nil
	}
	d := GroupMembershipDescription{Group: group, State: m.State, ProtocolType: m.ProtocolType, Protocol: m.Protocol,
		Generation: m.Generation, LeaderID: m.Leader, Members: make([]MemberDescription, 0, len(m.Members))}
	c.mu.Lock()
	if g := c.states[group]; g != nil && g.preparing && c.leading {
		d.State = fsm.GroupStatePreparingRebalance
	}
	c.mu.Unlock()
	for _, x := range m.Members {
		md := MemberDescription{MemberID: x.ID, InstanceID: x.InstanceID, ClientID: x.ClientID, ClientHost: x.ClientHost,
			Metadata: x.Metadata, Assignment: x.Assignment}
		if m.ProtocolType == ConsumerProtocolType && len(x.Assignment) > 0 {
			md.Partitions, _ = DecodeConsumerAssignment(x.Assignment)
		}
		d.Members = append(d.Members, md)
	}
	return d, nil
}

func (c *Coordinator) list(ctx context.Context) ([]GroupListing, error) {
	if err := c.groups.sync.SyncRead(ctx); err != nil {
		return nil, err
	}
	out := []GroupListing{}
	for _, name := range c.meta.GroupNames() {
		l := GroupListing{Group: name, State: fsm.GroupStateEmpty}
		if m, ok := c.meta.Membership(name); ok {
			l.ProtocolType, l.State = m.ProtocolType, m.State
		}
		out = append(out, l)
	}
	return out, nil
}
