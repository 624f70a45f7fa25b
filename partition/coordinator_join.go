package partition

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// validateJoin checks a join request before it touches any state.
func (c *Coordinator) validateJoin(req *JoinRequest) error {
	if err := fsm.ValidateGroupName(req.Group); err != nil {
		return fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fmt.Errorf("%w: a join needs a protocol type and at least one protocol", fsm.ErrInconsistentProtocol)
	}
	for _, p := range req.Protocols {
		if p.Name == "" {
			return fmt.Errorf("%w: a protocol without a name", fsm.ErrInconsistentProtocol)
		}
	}
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		return fmt.Errorf("%w: %v is outside [%v, %v]", fsm.ErrInvalidSessionTimeout, req.SessionTimeout, c.cfg.MinSessionTimeout, c.cfg.MaxSessionTimeout)
	}
	if req.RebalanceTimeout <= 0 {
		req.RebalanceTimeout = req.SessionTimeout
	}
	return nil
}

func (c *Coordinator) join(ctx context.Context, req JoinRequest) (JoinResult, error) {
	if err := c.validateJoin(&req); err != nil {
		return JoinResult{}, err
	}
	if err := c.coordinating(); err != nil {
		return JoinResult{}, err
	}
	pj, err := c.enqueueJoin(req)
	if err != nil {
		return JoinResult{}, err
	}
	c.wake()
	select {
	case out := <-pj.done:
		return out.res, out.err
	case <-ctx.Done():
		c.mu.Lock()
		if g := c.states[req.Group]; g != nil && g.joins[pj.memberID] == pj {
			delete(g.joins, pj.memberID)
		}
		c.mu.Unlock()
		select {
		case out := <-pj.done: // completed meanwhile
			return out.res, out.err
		default:
		}
		return JoinResult{}, ctx.Err()
	}
}

// enqueueJoin records a join for the next generation and starts a
// rebalance if none is in progress.
func (c *Coordinator) enqueueJoin(req JoinRequest) (*pendingJoin, error) {
	m, _ := c.meta.Membership(req.Group)
	now := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.leading {
		// The loop has not taken over yet (or just resigned).
		if !c.node.LeaderReady() {
			return nil, &NotCoordinatorError{Leader: c.node.LeaderID()}
		}
		c.leading = true
	}
	g := c.state(m, now)
	if err := consistentProtocol(m, g, req); err != nil {
		return nil, err
	}
	id := req.MemberID
	if id == "" {
		id = newMemberID(req.ClientID)
		if req.RequireMemberID {
			g.pendingIDs[id] = now.Add(req.SessionTimeout)
			return nil, &MemberIDRequiredError{MemberID: id}
		}
	} else if _, in := m.Member(id); !in && g.joins[id] == nil && g.pendingIDs[id].IsZero() {
		return nil, fmt.Errorf("%w: %q is not a member of group %q", fsm.ErrUnknownMember, id, req.Group)
	}
	delete(g.pendingIDs, id)
	if req.InstanceID != "" {
		c.fenceInstance(g, m, req.InstanceID, id)
	}
	if old := g.joins[id]; old != nil {
		old.done <- joinOutcome{err: fmt.Errorf("%w: superseded by a newer join of %q", fsm.ErrRebalanceInProgress, id)}
	}
	pj := &pendingJoin{req: req, memberID: id, done: make(chan joinOutcome, 1)}
	g.joins[id] = pj
	if !g.preparing {
		g.preparing, g.prepStart = true, now
	}
	g.lastJoin = now
	return pj, nil
}

// fenceInstance replaces the member holding a static instance ID by the
// joining member id.
func (c *Coordinator) fenceInstance(g *coordGroup, m fsm.GroupMembership, instance, id string) {
	old := memberByInstance(m, g, instance)
	if old == "" || old == id {
		return
	}
	if j := g.joins[old]; j != nil {
		delete(g.joins, old)
		j.done <- joinOutcome{err: fmt.Errorf("%w: instance %q rejoined as another member", fsm.ErrUnknownMember, instance)}
	}
	g.fenced[old] = true
}

// consistentProtocol checks a join's protocol type against the group's
// and, in a rebalance, that it shares a protocol with every joiner.
func consistentProtocol(m fsm.GroupMembership, g *coordGroup, req JoinRequest) error {
	if len(m.Members) > 0 && m.ProtocolType != req.ProtocolType {
		return fmt.Errorf("%w: group %q uses protocol type %q, not %q", fsm.ErrInconsistentProtocol, req.Group, m.ProtocolType, req.ProtocolType)
	}
	for id, j := range g.joins {
		if id == req.MemberID {
			continue
		}
		if j.req.ProtocolType != req.ProtocolType {
			return fmt.Errorf("%w: group %q is joining with protocol type %q, not %q", fsm.ErrInconsistentProtocol, req.Group, j.req.ProtocolType, req.ProtocolType)
		}
		if len(commonProtocols([]JoinRequest{j.req, req})) == 0 {
			return fmt.Errorf("%w: no protocol in common with the group's members", fsm.ErrInconsistentProtocol)
		}
	}
	return nil
}

// rebalanceDue (under c.mu) says whether a preparing group can complete:
// every member of the replicated generation has rejoined (or is fenced),
// or the rebalance timeout passed; a group without members first waits
// out the initial delay.
func (c *Coordinator) rebalanceDue(name string, g *coordGroup, now time.Time) bool {
	m, _ := c.meta.Membership(name)
	timeout := time.Duration(0)
	for _, x := range m.Members {
		timeout = max(timeout, time.Duration(x.RebalanceTimeoutMs)*time.Millisecond)
	}
	for _, j := range g.joins {
		timeout = max(timeout, j.req.RebalanceTimeout)
	}
	if now.Sub(g.prepStart) >= timeout {
		return true
	}
	if len(m.Members) == 0 {
		delay := c.cfg.InitialRebalanceDelay
		return len(g.joins) > 0 && (delay < 0 || now.Sub(g.lastJoin) >= delay)
	}
	for _, x := range m.Members {
		if g.joins[x.ID] == nil && !g.fenced[x.ID] {
			return false
		}
	}
	return len(g.joins) > 0
}

// complete ends a rebalance: the joiners become the next generation
// (replicated), or, when nobody rejoined, the remaining members are
// removed.
func (c *Coordinator) complete(ctx context.Context, name string) {
	m, _ := c.meta.Membership(name)
	c.mu.Lock()
	g := c.states[name]
	if g == nil || !g.preparing {
		c.mu.Unlock()
		return
	}
	joins := make([]*pendingJoin, 0, len(g.joins))
	for _, j := range g.joins {
		joins = append(joins, j)
	}
	c.mu.Unlock()
	if len(joins) == 0 {
		c.finishEmpty(ctx, name, m, g)
		return
	}
	cmd := c.joinCommand(m, joins)
	err := c.groups.propose(ctx, cmd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states[name] != g {
		return // resigned meanwhile: the joins were told
	}
	now := c.clock()
	for _, j := range joins {
		if g.joins[j.memberID] != j {
			continue // left or superseded meanwhile
		}
		delete(g.joins, j.memberID)
		if err != nil {
			j.done <- joinOutcome{err: err}
			continue
		}
		j.done <- joinOutcome{res: joinResult(cmd, j.memberID)}
		g.deadlines[j.memberID] = now.Add(j.req.SessionTimeout)
	}
	g.preparing = len(g.joins) > 0
	g.prepStart, g.fenced = now, map[string]bool{}
	if err != nil {
		c.log.Warn("completing a consumer group rebalance failed", "group", name, "err", err)
	}
}

// finishEmpty handles a rebalance nobody rejoined: its members go.
func (c *Coordinator) finishEmpty(ctx context.Context, name string, m fsm.GroupMembership, g *coordGroup) {
	ids := make([]string, 0, len(m.Members))
	for _, x := range m.Members {
		ids = append(ids, x.ID)
	}
	if len(ids) > 0 {
		if err := c.remove(ctx, name, m.Generation, ids); err != nil {
			c.log.Warn("removing the members of an abandoned rebalance failed", "group", name, "err", err)
			return
		}
	}
	c.mu.Lock()
	if c.states[name] == g && len(g.joins) == 0 {
		g.preparing = false
	}
	c.mu.Unlock()
}

// joinCommand builds the next generation from the joins: the protocol
// most members prefer among those all support, the previous leader if it
// rejoined (else the member with the smallest ID).
func (c *Coordinator) joinCommand(m fsm.GroupMembership, joins []*pendingJoin) *fsm.GroupJoin {
	sort.Slice(joins, func(i, k int) bool { return joins[i].memberID < joins[k].memberID })
	reqs := make([]JoinRequest, len(joins))
	for i, j := range joins {
		reqs[i] = j.req
	}
	protocol := chooseProtocol(reqs)
	cmd := &fsm.GroupJoin{Group: m.Group, PrevGeneration: m.Generation, ProtocolType: joins[0].req.ProtocolType,
		Protocol: protocol, Leader: joins[0].memberID, Timestamp: c.clock().UnixMilli(), MaxGroups: c.groups.max}
	if m.Group == "" {
		cmd.Group = joins[0].req.Group
	}
	for _, j := range joins {
		if j.memberID == m.Leader {
			cmd.Leader = m.Leader
		}
		cmd.Members = append(cmd.Members, fsm.GroupMember{
			ID: j.memberID, InstanceID: j.req.InstanceID, ClientID: j.req.ClientID, ClientHost: j.req.ClientHost,
			SessionTimeoutMs: int32(j.req.SessionTimeout.Milliseconds()), RebalanceTimeoutMs: int32(j.req.RebalanceTimeout.Milliseconds()),
			Metadata: protocolMetadata(j.req, protocol),
		})
	}
	return cmd
}

// joinResult is what member id learns of the generation cmd created.
func joinResult(cmd *fsm.GroupJoin, id string) JoinResult {
	r := JoinResult{Generation: cmd.PrevGeneration + 1, ProtocolType: cmd.ProtocolType, Protocol: cmd.Protocol,
		LeaderID: cmd.Leader, MemberID: id}
	if id == cmd.Leader {
		for _, x := range cmd.Members {
			r.Members = append(r.Members, JoinMember{MemberID: x.ID, InstanceID: x.InstanceID, Metadata: x.Metadata})
		}
	}
	return r
}

// commonProtocols lists the protocols every request supports, in the
// first request's order.
func commonProtocols(reqs []JoinRequest) []string {
	var out []string
	for _, p := range reqs[0].Protocols {
		all := true
		for _, r := range reqs[1:] {
			if protocolMetadata(r, p.Name) == nil {
				all = false
				break
			}
		}
		if all {
			out = append(out, p.Name)
		}
	}
	return out
}

// chooseProtocol: each member votes for its most preferred protocol that
// every member supports; most votes wins, ties by name.
func chooseProtocol(reqs []JoinRequest) string {
	common := commonProtocols(reqs)
	if len(common) == 0 {
		return reqs[0].Protocols[0].Name // joins were checked: unreachable
	}
	ok := map[string]bool{}
	for _, p := range common {
		ok[p] = true
	}
	votes := map[string]int{}
	for _, r := range reqs {
		for _, p := range r.Protocols {
			if ok[p.Name] {
				votes[p.Name]++
				break
			}
		}
	}
	sort.Strings(common)
	best := common[0]
	for _, p := range common {
		if votes[p] > votes[best] {
			best = p
		}
	}
	return best
}

// protocolMetadata is a request's metadata for protocol (nil: not
// supported; an empty slice when supported without metadata).
func protocolMetadata(r JoinRequest, protocol string) []byte {
	for _, p := range r.Protocols {
		if p.Name == protocol {
			if p.Metadata == nil {
				return []byte{}
			}
			return p.Metadata
		}
	}
	return nil
}
