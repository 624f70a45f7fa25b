package partition

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// Coordinator is the consumer-group coordinator of this agent; it acts
// only while the agent is the ready Raft leader (see coordinator.go).
//
// Lock order: c.mu is never held across a proposal or a wait; the loop
// goroutine (run) is the only one that completes rebalances and expires
// sessions, so a group's generation changes one proposal at a time from
// this agent.
type Coordinator struct {
	cfg    CoordinatorConfig
	meta   Metadata
	node   Node
	groups *Groups
	clock  func() time.Time
	log    *slog.Logger
	poke   chan struct{}

	mu      sync.Mutex
	leading bool
	states  map[string]*coordGroup
}

// coordGroup is the in-memory part of one group on the coordinator.
type coordGroup struct {
	// deadlines: session deadline per member of the replicated generation.
	deadlines map[string]time.Time
	// A rebalance in progress: the joins received so far, by member ID.
	preparing bool
	prepStart time.Time
	lastJoin  time.Time
	joins     map[string]*pendingJoin
	// fenced: members of the replicated generation replaced by a static
	// member's new join (not waited for).
	fenced map[string]bool
	// pendingIDs: member IDs handed out with MemberIDRequiredError, valid
	// until their deadline.
	pendingIDs map[string]time.Time
}

type pendingJoin struct {
	req      JoinRequest
	memberID string
	done     chan joinOutcome // buffered 1
}

type joinOutcome struct {
	res JoinResult
	err error
}

func newCoordinator(cfg Config, d Deps, groups *Groups) *Coordinator {
	d = d.withDefaults()
	cc := cfg.Coordinator
	if cc.InitialRebalanceDelay == 0 {
		cc.InitialRebalanceDelay = 300 * time.Millisecond
	}
	if cc.MinSessionTimeout <= 0 {
		cc.MinSessionTimeout = time.Second
	}
	if cc.MaxSessionTimeout <= 0 {
		cc.MaxSessionTimeout = 5 * time.Minute
	}
	if cc.Tick <= 0 {
		cc.Tick = 50 * time.Millisecond
	}
	return &Coordinator{cfg: cc, meta: d.FSM, node: d.Node, groups: groups, clock: d.Clock,
		log:  d.Logger.With("component", "coordinator"),
		poke: make(chan struct{}, 1), states: map[string]*coordGroup{}}
}

// run is the coordinator's loop (one goroutine of the service): it follows
// leadership, expires sessions and completes rebalances until ctx ends.
func (c *Coordinator) run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	defer c.resign()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.poke:
		}
		c.round(ctx)
	}
}

func (c *Coordinator) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// round is one pass of the loop.
func (c *Coordinator) round(ctx context.Context) {
	if !c.node.LeaderReady() {
		c.resign()
		return
	}
	c.mu.Lock()
	c.leading = true
	c.mu.Unlock()
	now := c.clock()
	known := map[string]bool{}
	for _, m := range c.meta.Memberships() {
		known[m.Group] = true
		c.expire(ctx, m, now)
	}
	c.mu.Lock()
	for name, g := range c.states {
		for id, dl := range g.pendingIDs {
			if now.After(dl) {
				delete(g.pendingIDs, id)
			}
		}
		if !known[name] && !g.preparing && len(g.joins) == 0 && len(g.pendingIDs) == 0 {
			delete(c.states, name) // deleted, or never formed a generation
		}
	}
	var ready []string
	for name, g := range c.states {
		if g.preparing && c.rebalanceDue(name, g, now) {
			ready = append(ready, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(ready)
	for _, name := range ready {
		c.complete(ctx, name)
	}
}

// resign drops the in-memory state when this agent stops coordinating:
// waiting joins learn who coordinates now.
func (c *Coordinator) resign() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.leading && len(c.states) == 0 {
		return
	}
	c.leading = false
	err := &NotCoordinatorError{Leader: c.node.LeaderID()}
	for _, g := range c.states {
		for _, j := range g.joins {
			j.done <- joinOutcome{err: err}
		}
	}
	c.states = map[string]*coordGroup{}
}

// coordinating checks that this agent coordinates groups now.
func (c *Coordinator) coordinating() error {
	if !c.node.LeaderReady() {
		return &NotCoordinatorError{Leader: c.node.LeaderID()}
	}
	return nil
}

func (c *Coordinator) isCoordinator() (bool, string) {
	if c.node.LeaderReady() {
		return true, ""
	}
	return false, c.node.LeaderID()
}

// state returns a group's in-memory state under c.mu, creating it (every
// member of the replicated generation gets a fresh session) on first use
// in this leadership.
func (c *Coordinator) state(m fsm.GroupMembership, now time.Time) *coordGroup {
	g := c.states[m.Group]
	if g == nil {
		g = &coordGroup{deadlines: map[string]time.Time{}, joins: map[string]*pendingJoin{},
			fenced: map[string]bool{}, pendingIDs: map[string]time.Time{}}
		c.states[m.Group] = g
	}
	for _, x := range m.Members {
		if _, ok := g.deadlines[x.ID]; !ok {
			g.deadlines[x.ID] = now.Add(time.Duration(x.SessionTimeoutMs) * time.Millisecond)
		}
	}
	if m.State == fsm.GroupStatePreparingRebalance && !g.preparing {
		g.preparing, g.prepStart = true, now
	}
	return g
}

// expire removes the members of m whose session ended (outside a
// rebalance: one in progress drops them when it completes).
func (c *Coordinator) expire(ctx context.Context, m fsm.GroupMembership, now time.Time) {
	c.mu.Lock()
	g := c.state(m, now)
	var gone []string
	if !g.preparing {
		for _, x := range m.Members {
			if now.After(g.deadlines[x.ID]) {
				gone = append(gone, x.ID)
			}
		}
	}
	c.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	c.log.Info("consumer group members' sessions expired", "group", m.Group, "generation", m.Generation, "members", gone)
	if err := c.remove(ctx, m.Group, m.Generation, gone); err != nil {
		c.log.Warn("removing expired members failed", "group", m.Group, "err", err)
	}
}

// remove replicates the removal of members and starts the rebalance of
// the members left.
func (c *Coordinator) remove(ctx context.Context, group string, gen int32, ids []string) error {
	err := c.groups.propose(ctx, &fsm.GroupRemoveMembers{Group: group, Generation: gen, MemberIDs: ids, Timestamp: c.clock().UnixMilli()})
	if err != nil {
		return err
	}
	now := c.clock()
	m, _ := c.meta.Membership(group)
	c.mu.Lock()
	g := c.state(m, now)
	for _, id := range ids {
		delete(g.deadlines, id)
	}
	c.mu.Unlock()
	c.wake()
	return nil
}

// newMemberID is Kafka's shape: client ID, a dash, a random suffix.
func newMemberID(clientID string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	if clientID == "" {
		clientID = "member"
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

// touch refreshes a member's session under c.mu.
func (c *Coordinator) touch(g *coordGroup, m fsm.GroupMembership, id string, now time.Time) {
	if x, ok := m.Member(id); ok {
		g.deadlines[id] = now.Add(time.Duration(x.SessionTimeoutMs) * time.Millisecond)
	}
}

// checkMember checks a member's generation against the replicated state.
func checkMember(m fsm.GroupMembership, ok bool, group string, gen int32, id string) error {
	if !ok || len(m.Members) == 0 {
		return fmt.Errorf("%w: group %q has no member %q", fsm.ErrUnknownMember, group, id)
	}
	if _, in := m.Member(id); !in {
		return fmt.Errorf("%w: %q is not in generation %d of group %q", fsm.ErrUnknownMember, id, m.Generation, group)
	}
	if gen != m.Generation {
		return fmt.Errorf("%w: generation %d is not group %q's current generation %d", fsm.ErrIllegalGeneration, gen, group, m.Generation)
	}
	return nil
}

func (c *Coordinator) heartbeat(_ context.Context, group string, gen int32, id, _ string) error {
	if err := c.coordinating(); err != nil {
		return err
	}
	m, ok := c.meta.Membership(group)
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.state(m, c.clock())
	if _, joining := g.joins[id]; joining {
		return fmt.Errorf("%w: group %q", fsm.ErrRebalanceInProgress, group)
	}
	if err := checkMember(m, ok, group, gen, id); err != nil {
		return err
	}
	c.touch(g, m, id, c.clock())
	if g.preparing {
		return fmt.Errorf("%w: group %q is rebalancing: rejoin", fsm.ErrRebalanceInProgress, group)
	}
	return nil
}

func (c *Coordinator) commit(ctx context.Context, req MemberCommit) error {
	if req.MemberID == "" {
		if req.Generation >= 0 {
			return fmt.Errorf("%w: a commit with generation %d needs a member id", fsm.ErrUnknownMember, req.Generation)
		}
		return c.groups.CommitOffsets(ctx, req.Group, req.Commits)
	}
	if err := c.coordinating(); err != nil {
		return err
	}
	m, ok := c.meta.Membership(req.Group)
	if err := checkMember(m, ok, req.Group, req.Generation, req.MemberID); err != nil {
		return err
	}
	c.mu.Lock()
	c.touch(c.state(m, c.clock()), m, req.MemberID, c.clock())
	c.mu.Unlock()
	return c.groups.commitAs(ctx, req.Group, req.Commits, req.MemberID, req.Generation)
}

func (c *Coordinator) leave(ctx context.Context, group string, members []LeaveMember) ([]error, error) {
	if err := c.coordinating(); err != nil {
		return nil, err
	}
	m, _ := c.meta.Membership(group)
	errs := make([]error, len(members))
	var ids []string
	c.mu.Lock()
	g := c.state(m, c.clock())
	for i, lm := range members {
		id := lm.MemberID
		if id == "" && lm.InstanceID != "" {
			id = memberByInstance(m, g, lm.InstanceID)
		}
		if j, ok := g.joins[id]; ok && id != "" {
			delete(g.joins, id)
			j.done <- joinOutcome{err: fmt.Errorf("%w: %q left group %q", fsm.ErrUnknownMember, id, group)}
			if _, in := m.Member(id); !in {
				continue
			}
		}
		if _, in := m.Member(id); !in || id == "" {
			errs[i] = fmt.Errorf("%w: %q is not a member of group %q", fsm.ErrUnknownMember, lm.MemberID, group)
			continue
		}
		ids = append(ids, id)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return errs, nil
	}
	return errs, c.remove(ctx, group, m.Generation, ids)
}

// memberByInstance finds the member (replicated or joining) holding a
// static instance ID.
func memberByInstance(m fsm.GroupMembership, g *coordGroup, instance string) string {
	for _, x := range m.Members {
		if x.InstanceID == instance && !g.fenced[x.ID] {
			return x.ID
		}
	}
	for id, j := range g.joins {
		if j.req.InstanceID == instance {
			return id
		}
	}
	return ""
}
