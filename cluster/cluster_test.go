package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

const deadline = 30 * time.Second

func TestSingleAgentBootstrapsAlone(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", "", nil)
	c.waitLeader(deadline)
	c.waitConfig(deadline, []string{"a"}, nil)
	id := createTopic(t, a, "solo", 3)
	for _, p := range a.fsm.Partitions(id) {
		if p.Leader != "a" || p.LeaderEpoch != 1 {
			t.Fatalf("partition %+v: want leader a at epoch 1", p)
		}
	}
	st := a.node.Status()
	if !st.Admitted || st.ClusterID == "" || st.Instance == "" {
		t.Fatalf("identity after bootstrap: %+v", st)
	}
	ms := a.node.Members()
	if len(ms) != 1 || ms[0].ID != "a" || ms[0].GossipState != StateAlive || ms[0].Suffrage != SuffrageVoter || !ms[0].RaftLeader {
		t.Fatalf("members %+v", ms)
	}
	if addr, ok := a.node.PeerAddr("a"); !ok || addr != a.mux.Addr() {
		t.Fatalf("PeerAddr(a) = %q, %v", addr, ok)
	}
	if _, ok := a.node.PeerAddr("nobody"); ok {
		t.Fatal("PeerAddr of an unknown agent")
	}
	cs := a.node.ClusterStatus()
	if len(cs.Members) != 1 || !sameIDs(cs.Members[0].Leaderships, "solo/0", "solo/1", "solo/2") || cs.Leader != "a" {
		t.Fatalf("cluster status %+v", cs)
	}
	if got := a.node.Placement(4); !sameIDs(got, "a", "a", "a", "a") {
		t.Fatalf("placement on a single agent: %v", got)
	}

	// Restart on the same data dir: no second bootstrap, same identity,
	// the state is back. Close is idempotent.
	c.kill("a")
	if err := a.node.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a2 := c.start("a", a.dir, nil)
	c.waitLeader(deadline)
	waitFor(t, deadline, "topic replayed", func() bool { _, ok := a2.fsm.Topic("solo"); return ok })
	st2 := a2.node.Status()
	if st2.Instance != st.Instance || st2.ClusterID != st.ClusterID {
		t.Fatalf("identity changed across restart: %+v then %+v", st, st2)
	}
}

func TestBootstrapExpectJoinPromoteLeave(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	cluster := lead.node.Status().ClusterID
	for _, n := range c.running() {
		st := n.node.Status()
		if st.ClusterID != cluster || cluster == "" || !st.Admitted {
			t.Fatalf("%s: identity %+v, leader's cluster %q", n.id, st, cluster)
		}
	}

	// A fourth agent joins as a non-voter and stays one: 3 voters is the
	// target below 5 agents.
	d := c.start("d", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "d admitted as non-voter", func() bool {
		st := d.node.Status()
		return st.Admitted && st.ClusterID == cluster && sameIDs(st.NonVoters, "d") && st.AppliedIndex > 0
	})
	c.waitConfig(deadline, []string{"a", "b", "c"}, []string{"d"})

	// A fifth: with 5 agents alive the target is 5 voters; both get
	// promoted.
	e := c.start("e", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	c.waitConfig(deadline, []string{"a", "b", "c", "d", "e"}, nil)
	waitFor(t, deadline, "5 alive gossip members on every agent", func() bool {
		for _, n := range c.running() {
			if gaugeVecValue(n, StateAlive).Float64() != 5 {
				return false
			}
		}
		return true
	})
	ms := e.node.Members()
	if len(ms) != 5 {
		t.Fatalf("members seen by e: %+v", ms)
	}
	for _, m := range ms {
		if m.GossipState != StateAlive || m.Suffrage != SuffrageVoter || m.PeerAddr == "" || m.HTTPAddr == "" || m.Version != "v-test (abc)" {
			t.Fatalf("member %+v", m)
		}
	}

	// Graceful leave: e hands leadership over if it has it, has the leader
	// remove it from the group (Leave returns once that is committed), and
	// leaves gossip.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.node.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	// e, removed, hears from no leader once its heartbeat times out: the
	// leader is the one the others agree on.
	lead = c.waitLeaderOf(deadline, c.except("e"))
	servers, err := lead.node.configuration()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.ID == "e" {
			t.Fatalf("e is still in the leader's configuration after Leave: %+v", servers)
		}
	}
	c.kill("e")
	c.waitConfig(deadline, []string{"a", "b", "c", "d"}, nil)
	waitFor(t, deadline, "e gone from gossip", func() bool {
		for _, m := range lead.node.Members() {
			if m.ID == "e" {
				// "left" when its leaving metadata arrived before its
				// leave message, else "dead": gossip does not order them.
				return (m.GossipState == StateLeft || m.GossipState == StateDead) && m.Suffrage == SuffrageNone
			}
		}
		return true
	})
	removed := 0.0
	for _, n := range c.running() {
		removed += n.metricCounter("streamhouse_raft_membership_changes_total", "change", "remove").Float64()
	}
	if removed < 1 {
		t.Errorf("no agent counted the removal of e")
	}

	// The Raft leader leaves: it hands leadership over first.
	old := c.waitLeader(deadline)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.node.Leave(ctx); err != nil {
		t.Fatalf("leader leave: %v", err)
	}
	if old.node.IsLeader() {
		t.Fatal("the leaving agent still leads")
	}
	c.kill(old.id)
	var rest []string
	for _, n := range c.running() {
		rest = append(rest, n.id)
	}
	c.waitConfig(deadline, rest, nil)
	if l := c.waitLeader(deadline); l.id == old.id {
		t.Fatal("left agent leads")
	}
}

// An agent whose removal committed while the entry saying so never reached
// it (the leader stops replicating to a removed server) still finds itself
// in its configuration and hears from no leader any more. Leave asks the
// servers it knows instead of waiting for a leader until its context ends.
func TestLeaveConfirmedWithoutALeader(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	d := c.start("d", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	c.waitConfig(deadline, []string{"a", "b", "c"}, []string{"d"})
	lead := c.waitLeader(deadline)
	// The leader's answers and entries no longer reach d.
	c.faults.Block(lead.mux.Addr(), d.mux.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	left := make(chan error, 1)
	go func() { left <- d.node.Leave(ctx) }()
	waitFor(t, deadline, "d removed by the leader and without a leader itself", func() bool {
		servers, err := lead.node.configuration()
		if err != nil || !d.node.inConfiguration() || d.node.LeaderID() != "" {
			return false
		}
		for _, s := range servers {
			if s.ID == "d" {
				return false
			}
		}
		return true
	})
	c.faults.Heal()
	if err := <-left; err != nil {
		t.Fatalf("leave: %v", err)
	}
}

// gaugeVecValue reads streamhouse_gossip_members{state} of an agent.
func gaugeVecValue(n *testNode, state string) prometheusCollector {
	return prometheusCollector{n: n, name: "streamhouse_gossip_members", label: "state", value: state}
}

func TestLeaderLossFailoverRestartRebalance(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	mon := newEpochMonitor()
	ctx, stopWatch := context.WithCancel(context.Background())
	for _, n := range c.running() {
		mon.watch(ctx, n.id, n.fsm)
	}

	// Created through a follower: the proposal is forwarded to the leader.
	via := c.followers(lead)[0]
	topicID := createTopic(t, via, "orders", 6)
	loads := map[string]int{}
	before := map[int32]fsm.PartitionInfo{}
	for _, p := range via.fsm.Partitions(topicID) {
		loads[p.Leader]++
		before[p.Partition] = p
	}
	if loads["a"] != 2 || loads["b"] != 2 || loads["c"] != 2 {
		t.Fatalf("placement of 6 partitions over 3 agents: %v", loads)
	}

	// The Raft leader crashes.
	old := lead.id
	c.kill(old)
	lead = c.waitLeader(deadline)
	if lead.id == old {
		t.Fatal("dead agent still leads")
	}
	waitFor(t, deadline, "partitions of the dead agent failed over with bumped epochs", func() bool {
		for _, n := range c.running() {
			for _, p := range n.fsm.Partitions(topicID) {
				if p.Leader == old || p.Leader == "" {
					return false
				}
				if b := before[p.Partition]; b.Leader == old && p.LeaderEpoch <= b.LeaderEpoch {
					return false
				}
			}
		}
		return true
	})
	// Past DeadAgentTimeout the dead agent leaves the Raft group.
	var alive []string
	for _, n := range c.running() {
		alive = append(alive, n.id)
	}
	c.waitConfig(deadline, alive, nil)
	// The dead agent's two partitions moved: as "failover" when the new
	// leader saw it dead in gossip, or as "not_member" when the election
	// took longer than DeadAgentTimeout (seen under load) and the agent
	// had already been removed. Summed over the survivors, since whichever
	// agent led proposed the moves.
	var moved float64
	for _, n := range c.running() {
		for _, reason := range []string{moveFailover, moveNotMember} {
			moved += n.metricCounter("streamhouse_partition_leadership_changes_total", "reason", reason).Float64()
		}
	}
	if moved < 2 {
		t.Errorf("failover + not_member moves %v over the surviving agents, want ≥ 2", moved)
	}

	// It restarts with its data dir on a new address: re-added, promoted
	// (2 voters are below the target of 3), then partitions move to it.
	restarted := c.start(old, c.node(old).dir, func(cfg *Config) { cfg.Join = c.joinAddrs() })
	mon.watch(ctx, old+"'", restarted.fsm)
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
	waitFor(t, deadline, "rebalanced: every agent leads 2 partitions", func() bool {
		for _, n := range c.running() {
			l := map[string]int{}
			for _, p := range n.fsm.Partitions(topicID) {
				l[p.Leader]++
			}
			if l["a"] != 2 || l["b"] != 2 || l["c"] != 2 {
				return false
			}
		}
		return true
	})
	for _, p := range restarted.fsm.Partitions(topicID) {
		if p.LeaderEpoch < before[p.Partition].LeaderEpoch {
			t.Errorf("partition %d epoch %d below its epoch %d before the failures", p.Partition, p.LeaderEpoch, before[p.Partition].LeaderEpoch)
		}
	}
	stopWatch()
	mon.wg.Wait()
	mon.check(t)
	// Every epoch seen was led by a configured agent.
	for k, l := range mon.leaders {
		if l != "a" && l != "b" && l != "c" {
			t.Errorf("%s led by %q", k, l)
		}
	}
}

func TestRestartedAgentKeepsItsMembership(t *testing.T) {
	c := newTestCluster(t)
	// Restarts here are quicker than the dead-agent timeout: the member is
	// never removed, only its address changes (or not).
	c.edit = func(cfg *Config) { cfg.DeadAgentTimeout = time.Minute }
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	victim := c.followers(lead)[0]
	before := victim.node.Status()

	// Same data dir, same addresses: it simply comes back.
	peer, gossip := victim.mux.Addr(), victim.node.GossipAddr()
	c.kill(victim.id)
	again := c.startAt(victim.id, victim.dir, peer, gossip, func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "restarted agent follows the leader again", func() bool {
		st := again.node.Status()
		return st.LeaderID != "" && st.AppliedIndex >= before.AppliedIndex && st.Instance == before.Instance && st.Admitted
	})
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)

	// Same data dir, new addresses: the leader updates its Raft address.
	c.kill(victim.id)
	moved := c.start(victim.id, victim.dir, func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "raft address of the moved agent updated everywhere", func() bool {
		for _, n := range c.running() {
			found := false
			for _, m := range n.node.Members() {
				if m.ID == moved.id {
					found = m.Suffrage == SuffrageVoter && m.GossipState == StateAlive && m.PeerAddr == moved.mux.Addr()
				}
			}
			servers, _ := n.node.configuration()
			for _, s := range servers {
				if string(s.ID) == moved.id && string(s.Address) != moved.mux.Addr() {
					found = false
				}
			}
			if !found {
				return false
			}
		}
		return true
	})
	c.waitLeader(deadline)
	res, err := propose(t, moved, &fsm.CreateTopic{Name: "after-move", Partitions: 1, Leaders: []string{moved.id}})
	if err != nil || res.TopicID == 0 {
		t.Fatalf("propose via the moved agent: %+v, %v", res, err)
	}
	for _, n := range c.running() {
		if v := n.metricCounter("streamhouse_raft_membership_changes_total", "change", "remove").Float64(); v != 0 {
			t.Errorf("%s removed a member %v times; a restart must not cost the membership", n.id, v)
		}
	}
	if st := moved.node.Status(); st.Instance != before.Instance {
		t.Errorf("instance changed across restarts: %s then %s", before.Instance, st.Instance)
	}
}

func TestWipedAgentRejoinsAsNewMember(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	topicID := createTopic(t, lead, "events", 3)

	// Pick a follower, crash it, wipe its data dir, start it again at once
	// (before the dead-agent timeout) with the same ID.
	victim := c.followers(lead)[0]
	oldInstance := victim.node.Status().Instance
	c.kill(victim.id)
	if err := os.RemoveAll(victim.dir); err != nil {
		t.Fatal(err)
	}
	wiped := c.start(victim.id, victim.dir, func(cfg *Config) { cfg.Join = c.joinAddrs() })
	if st := wiped.node.Status(); st.Instance == oldInstance || st.Admitted {
		t.Fatalf("wiped agent kept its identity: %+v", st)
	}
	// The leader removes the unadmitted voter, re-adds it as a non-voter,
	// admits it and promotes it once caught up.
	waitFor(t, deadline, "wiped agent admitted, voting and caught up", func() bool {
		st := wiped.node.Status()
		_, ok := wiped.fsm.Topic("events")
		return st.Admitted && sameIDs(st.Voters, "a", "b", "c") && ok
	})
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
	lead = c.waitLeader(deadline)
	removed := 0.0
	for _, n := range c.running() {
		removed += n.metricCounter("streamhouse_raft_membership_changes_total", "change", "remove").Float64()
	}
	if removed < 1 {
		t.Errorf("the stale voter was never removed (remove counter %v)", removed)
	}
	// Writes still commit and reach the new incarnation.
	res, err := propose(t, wiped, &fsm.AssignLeader{TopicID: topicID, Partition: 0, Leader: lead.id,
		ExpectedEpoch: lead.fsmPartition(topicID, 0).LeaderEpoch})
	if err != nil {
		t.Fatalf("propose via the re-added agent: %v", err)
	}
	waitFor(t, deadline, "re-added agent applies new entries", func() bool {
		return wiped.fsmPartition(topicID, 0).LeaderEpoch == res.Epoch
	})
}

func TestForwardingErrorClassesUnderFaults(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	fs := c.followers(lead)
	f1, f2 := fs[0], fs[1]
	createTopic(t, f1, "t0", 1)

	// The leader's answer is lost after it applied: outcome unknown, and
	// the command did commit.
	c.faults.DropRPCResponses(f1.mux.Addr(), 1)
	_, err := propose(t, f1, &fsm.CreateTopic{Name: "t1", Partitions: 1, Leaders: []string{lead.id}})
	if !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("lost answer: got %v, want ErrOutcomeUnknown", err)
	}
	waitFor(t, deadline, "t1 committed although its answer was lost", func() bool { _, ok := f1.fsm.Topic("t1"); return ok })

	// A business rejection crosses the hop as a result, not a failure.
	if _, err := propose(t, f1, &fsm.CreateTopic{Name: "t1", Partitions: 1}); !errors.Is(err, fsm.ErrTopicExists) {
		t.Fatalf("duplicate topic via follower: %v", err)
	}
	// A malformed command is refused before it reaches the log.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f1.node.Propose(ctx, []byte{byte(fsm.CmdCreateTopic), 1, 0xff}); !errors.Is(err, fsm.ErrInvalidCommand) {
		t.Fatalf("malformed command: %v", err)
	}

	// The leader is cut off. Writes on it, while it still believes it
	// leads, cannot commit: it steps down and the outcome is unknown (or,
	// if it already stepped down, unavailable).
	c.faults.Isolate(lead.mux.Addr())
	_, err = propose(t, lead, &fsm.CreateTopic{Name: "minority", Partitions: 1})
	if err == nil {
		t.Fatal("the isolated agent committed a write")
	}
	if !errors.Is(err, fsm.ErrUnavailable) && !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("isolated agent: error %v has no outcome class", err)
	}
	t.Logf("write on the isolated leader: %v", err)
	// A follower's forward either cannot be sent (unavailable) or, once a
	// new leader exists, succeeds there; it never reports success for a
	// write that did not happen.
	for i := 0; ; i++ {
		name := fmt.Sprintf("iso-%d", i)
		_, err := propose(t, f1, &fsm.CreateTopic{Name: name, Partitions: 1})
		if err == nil {
			// Only possible through a new leader in the majority.
			if nl := f1.node.LeaderID(); nl == lead.id || nl == "" {
				t.Fatalf("write %s succeeded while the only known leader %q is isolated", name, nl)
			}
			if _, ok := f1.fsm.Topic(name); !ok {
				t.Fatalf("write %s reported success but is not applied on the proposer", name)
			}
			break
		}
		if !errors.Is(err, fsm.ErrUnavailable) && !errors.Is(err, fsm.ErrOutcomeUnknown) {
			t.Fatalf("write %s: error %v has no outcome class", name, err)
		}
		if i == 0 {
			t.Logf("first write via a follower after isolating the leader: %v", err)
		}
		if i > 500 {
			t.Fatal("the majority never accepted writes after isolating the leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.faults.Heal()
	newLead := c.waitLeader(deadline)
	waitFor(t, deadline, "old leader caught up", func() bool {
		return lead.node.Status().AppliedIndex >= newLead.node.Status().CommitIndex
	})
	for _, n := range c.running() {
		if _, ok := n.fsm.Topic("minority"); ok {
			t.Fatalf("%s applied the minority's write", n.id)
		}
	}

	// A partitioned minority follower cannot commit either.
	minority := f2
	if minority == newLead {
		minority = f1
	}
	var majority []string
	for _, n := range c.running() {
		if n != minority {
			majority = append(majority, n.mux.Addr())
		}
	}
	c.faults.Partition(majority, []string{minority.mux.Addr()})
	_, err = propose(t, minority, &fsm.CreateTopic{Name: "minority2", Partitions: 1})
	if err == nil {
		t.Fatal("a partitioned minority follower committed a write")
	}
	if !errors.Is(err, fsm.ErrUnavailable) && !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("minority follower: error %v has no outcome class", err)
	}
	t.Logf("write on the partitioned follower: %v", err)
	c.faults.Heal()
}

// ---- small helpers over test agents ----

func (n *testNode) fsmPartition(topicID uint64, part int32) fsm.PartitionInfo {
	p, _ := n.fsm.Partition(topicID, part)
	return p
}

// prometheusCollector reads one labelled sample of an agent's registry.
type prometheusCollector struct {
	n                  *testNode
	name, label, value string
}

func (n *testNode) metricCounter(name, label, value string) prometheusCollector {
	return prometheusCollector{n: n, name: name, label: label, value: value}
}

// Float64 returns the sample, or 0 when absent.
func (p prometheusCollector) Float64() float64 {
	mfs, err := p.n.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != p.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == p.label && l.GetValue() == p.value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// An AppendBatches entry proposed on a follower crosses the forward hop
// once and each batch's own result comes back: a stale-epoch batch fails
// alone, its neighbours get their offsets.
func TestForwardedAppendBatchesKeepsPerBatchResults(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	f := c.followers(lead)[0]
	id := createTopic(t, f, "t", 2)
	batch := func(part int32, epoch uint64, vals ...string) *fsm.AppendBatch {
		recs := make([]fsm.Record, len(vals))
		for i, v := range vals {
			recs[i] = fsm.Record{Value: []byte(v)}
		}
		return &fsm.AppendBatch{TopicID: id, Partition: part, LeaderEpoch: epoch, Count: int32(len(recs)), Records: fsm.AppendRecords(nil, recs)}
	}
	res, err := propose(t, f, &fsm.AppendBatches{Batches: []*fsm.AppendBatch{
		batch(0, 1, "a", "b"), batch(1, 7, "x"), batch(1, 1, "c"), batch(0, 1, "d"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Batches) != 4 {
		t.Fatalf("%d batch results over the forward, want 4", len(res.Batches))
	}
	b := res.Batches
	if b[0].Err() != nil || b[0].BaseOffset != 0 || b[0].Count != 2 || b[2].Err() != nil || b[2].BaseOffset != 0 || b[3].BaseOffset != 2 {
		t.Fatalf("results %+v", b)
	}
	if !errors.Is(b[1].Err(), fsm.ErrStaleEpoch) {
		t.Fatalf("stale batch: %v", b[1].Err())
	}
	// The answer does not wait for the forwarding agent's own apply; a
	// read there passes the read barrier first.
	if err := f.node.AwaitAcked(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, _ := f.fsm.Partition(id, 0); p.NextOffset != 3 {
		t.Fatalf("after the read barrier the forwarding agent has applied next offset %d, want 3", p.NextOffset)
	}
}

// Commands started one after another with StartPropose are applied in
// that order, on the leader (enqueued into Raft in call order, results
// awaited later, here last first) and on a follower (forwarded one at a
// time): partition 0's batches get consecutive offsets in start order.
func TestStartProposeAppliesInStartOrder(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	id := createTopic(t, lead, "t", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := int64(0)
	for _, via := range []*testNode{lead, c.followers(lead)[0]} {
		const n = 40
		waits := make([]func() (*fsm.Result, error), n)
		for i := range waits {
			rec := fsm.Record{Value: []byte(fmt.Sprintf("%s-%d", via.id, i))}
			cmd := &fsm.AppendBatch{TopicID: id, Partition: 0, LeaderEpoch: 1, Count: 1, Records: fsm.AppendRecords(nil, []fsm.Record{rec})}
			waits[i] = via.node.StartPropose(ctx, fsm.Encode(cmd))
		}
		for i := n - 1; i >= 0; i-- {
			res, err := waits[i]()
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				t.Fatalf("via %s: entry %d: %v", via.id, i, err)
			}
			if res.BaseOffset != next+int64(i) {
				t.Fatalf("via %s: entry %d applied at offset %d, want %d", via.id, i, res.BaseOffset, next+int64(i))
			}
		}
		next += n
	}
}
