package partition

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// switchNode is the env"s node with a leadership the test flips.
type switchNode struct {
	Node
	leading atomic.Bool
}

func (n *switchNode) LeaderReady() bool { return n.leading.Load() }
func (n *switchNode) LeaderID() string {
	if n.leading.Load() {
		return "n1"
	}
	return "n2"
}

type coordEnv struct {
	*env
	node  *switchNode
	coord *Coordinator
	stop  context.CancelFunc
	done  chan struct{}
}

func newCoordEnv(t *testing.T) *coordEnv {
	e := newEnv(t, ProducerConfig{})
	n := &switchNode{Node: e.node}
	n.leading.Store(true)
	d := e.deps()
	d.Node = n
	cfg := e.cfg
	cfg.Coordinator = CoordinatorConfig{InitialRebalanceDelay: 50 * time.Millisecond, MinSessionTimeout: 10 * time.Millisecond, Tick: 5 * time.Millisecond}
	ce := &coordEnv{env: e, node: n, coord: newCoordinator(cfg, d, newGroups(cfg, d, nil)), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ce.stop = cancel
	go func() {
		defer close(ce.done)
		ce.coord.run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-ce.done })
	return ce
}

func joinReq(group, id string, session time.Duration) JoinRequest {
	return JoinRequest{Group: group, MemberID: id, ClientID: "c", ProtocolType: ConsumerProtocolType,
		Protocols: []GroupProtocol{{Name: "range", Metadata: []byte("m")}}, SessionTimeout: session, RebalanceTimeout: 2 * time.Second}
}

// encodeAssignment writes a ConsumerMemberAssignment (version 0) of one
// topic.
func encodeAssignment(topic string, parts ...int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, 0)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
	}
	return binary.BigEndian.AppendUint32(b, 0xffffffff) // null user data
}

// joinAll joins n members concurrently and returns their results by
// member ID order.
func joinAll(t *testing.T, c *Coordinator, reqs ...JoinRequest) []JoinResult {
	t.Helper()
	out := make([]JoinResult, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out[i], errs[i] = c.Join(ctx, r)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	return out
}

func TestCoordinatorJoinSyncHeartbeatLeave(t *testing.T) {
	ce := newCoordEnv(t)
	ce.topic("t", 4)
	ctx := context.Background()
	res := joinAll(t, ce.coord, joinReq("g", "", time.Minute), joinReq("g", "", time.Minute))
	if res[0].Generation != 1 || res[1].Generation != 1 || res[0].LeaderID != res[1].LeaderID || res[0].MemberID == res[1].MemberID {
		t.Fatalf("join results %+v", res)
	}
	leader, follower := res[0], res[1]
	if leader.MemberID != leader.LeaderID {
		leader, follower = follower, leader
	}
	if len(leader.Members) != 2 || len(follower.Members) != 0 || leader.Protocol != "range" {
		t.Fatalf("leader %+v follower %+v", leader, follower)
	}
	// Overlapping assignments are refused: no partition twice in one generation.
	overlap := []fsm.MemberAssignment{{MemberID: leader.MemberID, Assignment: encodeAssignment("t", 0, 1, 2)}, {MemberID: follower.MemberID, Assignment: encodeAssignment("t", 2, 3)}}
	if _, err := ce.coord.Sync(ctx, SyncRequest{Group: "g", Generation: 1, MemberID: leader.MemberID, Assignments: overlap}); !errors.Is(err, fsm.ErrInvalidArgument) {
		t.Fatalf("overlapping sync: %v", err)
	}
	got := make(chan SyncResult, 1)
	go func() {
		r, err := ce.coord.Sync(ctx, SyncRequest{Group: "g", Generation: 1, MemberID: follower.MemberID})
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	as := []fsm.MemberAssignment{{MemberID: leader.MemberID, Assignment: encodeAssignment("t", 0, 1)}, {MemberID: follower.MemberID, Assignment: encodeAssignment("t", 2, 3)}}
	lr, err := ce.coord.Sync(ctx, SyncRequest{Group: "g", Generation: 1, MemberID: leader.MemberID, Assignments: as})
	if err != nil || string(lr.Assignment) != string(as[0].Assignment) {
		t.Fatalf("leader sync: %v", err)
	}
	if fr := <-got; string(fr.Assignment) != string(as[1].Assignment) {
		t.Fatal("follower got another assignment")
	}
	if err := ce.coord.Heartbeat(ctx, "g", 1, follower.MemberID, ""); err != nil {
		t.Fatal(err)
	}
	if err := ce.coord.Heartbeat(ctx, "g", 0, follower.MemberID, ""); !errors.Is(err, fsm.ErrIllegalGeneration) {
		t.Fatalf("stale heartbeat: %v", err)
	}
	if err := ce.coord.Heartbeat(ctx, "g", 1, "nobody", ""); !errors.Is(err, fsm.ErrUnknownMember) {
		t.Fatalf("stranger heartbeat: %v", err)
	}
	d, err := ce.coord.Describe(ctx, "g")
	if err != nil || d.State != fsm.GroupStateStable || len(d.Members) != 2 || len(d.Members[0].Partitions) != 1 {
		t.Fatalf("describe %+v, %v", d, err)
	}
	commit := MemberCommit{Group: "g", Generation: 1, MemberID: leader.MemberID, Commits: []fsm.GroupCommit{{Topic: "t", Partition: 0, Offset: 0}}}
	if err := ce.coord.CommitOffsets(ctx, commit); err != nil {
		t.Fatal(err)
	}
	if err := ce.coord.CommitOffsets(ctx, MemberCommit{Group: "g", Generation: fsm.NoGeneration, Commits: commit.Commits}); !errors.Is(err, fsm.ErrUnknownMember) {
		t.Fatalf("simple commit to an active group: %v", err)
	}
	// The follower leaves: the leader learns of the rebalance, rejoins
	// alone, and its commit of generation 1 is now refused.
	if errs, err := ce.coord.Leave(ctx, "g", []LeaveMember{{MemberID: follower.MemberID}, {MemberID: "nobody"}}); err != nil || errs[0] != nil || !errors.Is(errs[1], fsm.ErrUnknownMember) {
		t.Fatalf("leave: %v %v", errs, err)
	}
	if err := ce.coord.Heartbeat(ctx, "g", 1, leader.MemberID, ""); !errors.Is(err, fsm.ErrRebalanceInProgress) {
		t.Fatalf("heartbeat after a leave: %v", err)
	}
	if err := ce.coord.CommitOffsets(ctx, commit); err != nil {
		t.Fatalf("commit before rejoining (PreparingRebalance): %v", err)
	}
	r2 := joinAll(t, ce.coord, joinReq("g", leader.MemberID, time.Minute))
	if r2[0].Generation != 2 || len(r2[0].Members) != 1 {
		t.Fatalf("rejoin %+v", r2[0])
	}
	if err := ce.coord.CommitOffsets(ctx, commit); !errors.Is(err, fsm.ErrIllegalGeneration) {
		t.Fatalf("stale generation commit: %v", err)
	}
	if _, err := ce.coord.Leave(ctx, "g", []LeaveMember{{MemberID: leader.MemberID}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := ce.coord.Describe(ctx, "g"); d.State != fsm.GroupStateEmpty || d.Generation != 3 {
		t.Fatalf("after the last leave: %+v", d)
	}
	// With no members, simple commits work again.
	if err := ce.coord.CommitOffsets(ctx, MemberCommit{Group: "g", Generation: fsm.NoGeneration, Commits: commit.Commits}); err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorSessionExpiry(t *testing.T) {
	ce := newCoordEnv(t)
	ctx := context.Background()
	res := joinAll(t, ce.coord, joinReq("g", "", 300*time.Millisecond), joinReq("g", "", 300*time.Millisecond))
	for _, r := range res {
		go func() { _, _ = ce.coord.Sync(ctx, SyncRequest{Group: "g", Generation: 1, MemberID: r.MemberID}) }()
	}
	// Only res[0] heartbeats: res[1]'s session ends and the group rebalances.
	testkit.WaitFor(t, 5*time.Second, "the survivor told to rebalance", func() bool {
		return errors.Is(ce.coord.Heartbeat(ctx, "g", 1, res[0].MemberID, ""), fsm.ErrRebalanceInProgress)
	})
	r := joinAll(t, ce.coord, joinReq("g", res[0].MemberID, 300*time.Millisecond))
	if r[0].Generation != 2 || len(r[0].Members) != 1 || r[0].LeaderID != res[0].MemberID {
		t.Fatalf("after expiry: %+v", r[0])
	}
	// Nobody heartbeats: the group ends Empty.
	testkit.WaitFor(t, 5*time.Second, "the group empty after every session ended", func() bool {
		m, _ := ce.fsm.Membership("g")
		return m.State == fsm.GroupStateEmpty
	})
}

func TestCoordinatorMemberIDRequiredAndNotCoordinator(t *testing.T) {
	ce := newCoordEnv(t)
	ctx := context.Background()
	req := joinReq("g", "", time.Minute)
	req.RequireMemberID = true
	_, err := ce.coord.Join(ctx, req)
	var mir *MemberIDRequiredError
	if !errors.As(err, &mir) || mir.MemberID == "" {
		t.Fatalf("first v4 join: %v", err)
	}
	if _, err := ce.coord.Join(ctx, joinReq("g", "made-up", time.Minute)); !errors.Is(err, fsm.ErrUnknownMember) {
		t.Fatalf("unknown member id: %v", err)
	}
	req.MemberID = mir.MemberID
	if r := joinAll(t, ce.coord, req); r[0].MemberID != mir.MemberID {
		t.Fatalf("rejoin got %q", r[0].MemberID)
	}
	bad := joinReq("g", "", time.Minute)
	bad.ProtocolType = "connect"
	if _, err := ce.coord.Join(ctx, bad); !errors.Is(err, fsm.ErrInconsistentProtocol) {
		t.Fatalf("other protocol type: %v", err)
	}
	if _, err := ce.coord.Join(ctx, joinReq("g", "", time.Millisecond)); !errors.Is(err, fsm.ErrInvalidSessionTimeout) {
		t.Fatalf("short session: %v", err)
	}
	// Leadership moves: a waiting join learns the new coordinator.
	waiting := make(chan error, 1)
	go func() {
		_, err := ce.coord.Join(ctx, joinReq("g", "", time.Minute))
		waiting <- err
	}()
	testkit.WaitFor(t, 5*time.Second, "the waiting join", func() bool {
		ce.coord.mu.Lock()
		defer ce.coord.mu.Unlock()
		return ce.coord.states["g"] != nil && len(ce.coord.states["g"].joins) == 1
	})
	ce.node.leading.Store(false)
	var nc *NotCoordinatorError
	if err := <-waiting; !errors.As(err, &nc) || nc.Leader != "n2" {
		t.Fatalf("waiting join after losing leadership: %v", err)
	}
	if err := ce.coord.Heartbeat(ctx, "g", 1, mir.MemberID, ""); !errors.As(err, &nc) {
		t.Fatalf("heartbeat to a follower: %v", err)
	}
	// Leadership back (a failover to this agent): the replicated generation
	// continues with a fresh session for every member.
	ce.node.leading.Store(true)
	testkit.WaitFor(t, 5*time.Second, "a heartbeat accepted by the new coordinator", func() bool {
		return ce.coord.Heartbeat(ctx, "g", 1, mir.MemberID, "") == nil
	})
}

// TestCoordinatorNeverAssignsAPartitionTwice drives simulated members
// through random joins, leaves and crashes; in every generation the
// assignments the members received are disjoint and, once the group
// settles, cover every partition.
func TestCoordinatorNeverAssignsAPartitionTwice(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runMembershipProperty(t, seed) })
	}
}

type ownership struct {
	mu   sync.Mutex
	owns map[int32]map[int32]string // generation → partition → member
	err  error
}

func (o *ownership) record(gen int32, member string, parts []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owns[gen] == nil {
		o.owns[gen] = map[int32]string{}
	}
	for _, p := range parts {
		if prev, ok := o.owns[gen][p]; ok && prev != member && o.err == nil {
			o.err = fmt.Errorf("generation %d: partition %d owned by %s and %s", gen, p, prev, member)
		}
		o.owns[gen][p] = member
	}
}

func runMembershipProperty(t *testing.T, seed int64) {
	ce := newCoordEnv(t)
	const parts = 6
	ce.topic("t", parts)
	rng := rand.New(rand.NewSource(seed))
	own := &ownership{owns: map[int32]map[int32]string{}}
	var members []*simMember
	start := func() {
		ctx, cancel := context.WithCancel(context.Background())
		m := &simMember{c: ce.coord, own: own, cancel: cancel, done: make(chan struct{})}
		members = append(members, m)
		go m.run(ctx)
	}
	for i := 0; i < 3; i++ {
		start()
	}
	for step := 0; step < 8; step++ {
		time.Sleep(time.Duration(50+rng.Intn(200)) * time.Millisecond) // let rebalances interleave with the events
		switch op := rng.Intn(3); {
		case op == 0 || len(members) < 2:
			start()
		case op == 1: // graceful leave
			i := rng.Intn(len(members))
			members[i].stop(true)
			members = append(members[:i], members[i+1:]...)
		default: // crash: no leave, the session expires
			i := rng.Intn(len(members))
			members[i].stop(false)
			members = append(members[:i], members[i+1:]...)
		}
	}
	// Settled: one Stable generation whose assignments cover every partition.
	testkit.WaitFor(t, 15*time.Second, "a Stable generation covering every partition", func() bool {
		m, _ := ce.fsm.Membership("g")
		if m.State != fsm.GroupStateStable || len(m.Members) != len(members) {
			return false
		}
		own.mu.Lock()
		defer own.mu.Unlock()
		return len(own.owns[m.Generation]) == parts
	})
	for _, m := range members {
		m.stop(true)
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	if own.err != nil {
		t.Fatal(own.err)
	}
}

// simMember is a consumer-group member with a range assignor over one
// topic of 6 partitions.
type simMember struct {
	c      *Coordinator
	own    *ownership
	cancel context.CancelFunc
	done   chan struct{}
	id     string
	gen    int32
}

func (m *simMember) stop(leave bool) {
	m.cancel()
	<-m.done
	if leave && m.id != "" {
		_, _ = m.c.Leave(context.Background(), "g", []LeaveMember{{MemberID: m.id}})
	}
}

func (m *simMember) run(ctx context.Context) {
	defer close(m.done)
	for ctx.Err() == nil {
		res, err := m.c.Join(ctx, joinReq("g", m.id, 200*time.Millisecond))
		if err != nil {
			if errors.Is(err, fsm.ErrUnknownMember) {
				m.id = ""
			}
			continue
		}
		m.id, m.gen = res.MemberID, res.Generation
		var as []fsm.MemberAssignment
		if res.LeaderID == res.MemberID {
			as = rangeAssign(res.Members, 6)
		}
		sr, err := m.c.Sync(ctx, SyncRequest{Group: "g", Generation: m.gen, MemberID: m.id, Assignments: as})
		if err != nil {
			continue
		}
		tps, _ := DecodeConsumerAssignment(sr.Assignment)
		for _, tp := range tps {
			m.own.record(m.gen, m.id, tp.Partitions)
		}
		m.heartbeat(ctx)
	}
}

func (m *simMember) heartbeat(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Millisecond):
		}
		if err := m.c.Heartbeat(ctx, "g", m.gen, m.id, ""); err != nil {
			if errors.Is(err, fsm.ErrUnknownMember) {
				m.id = ""
			}
			return
		}
	}
}

func rangeAssign(members []JoinMember, parts int32) []fsm.MemberAssignment {
	ids := make([]string, len(members))
	for i, x := range members {
		ids[i] = x.MemberID
	}
	sort.Strings(ids)
	out := make([]fsm.MemberAssignment, len(ids))
	per, extra := parts/int32(len(ids)), parts%int32(len(ids))
	next := int32(0)
	for i, id := range ids {
		n := per
		if int32(i) < extra {
			n++
		}
		var ps []int32
		for k := int32(0); k < n; k++ {
			ps = append(ps, next)
			next++
		}
		out[i] = fsm.MemberAssignment{MemberID: id, Assignment: encodeAssignment("t", ps...)}
	}
	return out
}
