package main

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/transport/client"
)

// startKafkaAgent starts a one-agent cluster in process with a Kafka
// listener; it returns the REST base URL and the Kafka address.
func startKafkaAgent(t *testing.T) (string, string) {
	t.Helper()
	base, c := startKafkaAgentCfg(t)
	return base, c.KafkaAdvertised
}

// startKafkaAgentCfg is startKafkaAgent returning the agent's config.
func startKafkaAgentCfg(t *testing.T) (string, *agentCmd) {
	t.Helper()
	c := testConfig(t, t.TempDir())
	c.KafkaPort = freePort(t)
	c.KafkaAdvertised = "127.0.0.1:" + strconv.Itoa(c.KafkaPort)
	a, base := startTestAgent(t, c)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return base, c
}

func kafkaClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// rawMember speaks the classic group protocol with kmsg requests, one
// client (so one connection) per member: a blocked JoinGroup holds its
// connection, as in Kafka.
type rawMember struct {
	t     *testing.T
	cl    *kgo.Client
	group string
	id    string
	gen   int32
}

func newRawMember(t *testing.T, addr, group string) *rawMember {
	return &rawMember{t: t, cl: kafkaClient(t, addr), group: group}
}

// join joins (v9: a first join is answered MEMBER_ID_REQUIRED) and
// returns the response.
func (m *rawMember) join(ctx context.Context) *kmsg.JoinGroupResponse {
	m.t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = m.group, m.id, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 5000
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"kg"}
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", meta.AppendTo(nil)
	req.Protocols = append(req.Protocols, p)
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		m.t.Fatal(err)
	}
	m.id = resp.MemberID
	if resp.ErrorCode == 0 {
		m.gen = resp.Generation
	}
	return resp
}

// sync sends assignments (member ID → partitions of "kg") and returns the
// member's own.
func (m *rawMember) sync(ctx context.Context, assign map[string][]int32) (*kmsg.SyncGroupResponse, []int32) {
	m.t.Helper()
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.Generation, req.MemberID = m.group, m.gen, m.id
	for id, parts := range assign {
		a := kmsg.NewConsumerMemberAssignment()
		tp := kmsg.NewConsumerMemberAssignmentTopic()
		tp.Topic, tp.Partitions = "kg", parts
		a.Topics = append(a.Topics, tp)
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, a.AppendTo(nil)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		m.t.Fatal(err)
	}
	var a kmsg.ConsumerMemberAssignment
	if resp.ErrorCode == 0 {
		if err := a.ReadFrom(resp.MemberAssignment); err != nil {
			m.t.Fatalf("assignment: %v", err)
		}
	}
	var parts []int32
	for _, tp := range a.Topics {
		parts = append(parts, tp.Partitions...)
	}
	return resp, parts
}

func (m *rawMember) heartbeat(ctx context.Context) error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.Generation, req.MemberID = m.group, m.gen, m.id
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		m.t.Fatal(err)
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// commit commits offset on partition 0 of "kg" as (member, gen).
func commitAs(t *testing.T, ctx context.Context, cl *kgo.Client, group, member string, gen int32, offset int64) error {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "kg"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
}

// committedOffset is the group's committed offset of kg/0 (-1: none).
func committedOffset(t *testing.T, ctx context.Context, cl *kgo.Client, group string) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = "kg", []int32{0}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	return resp.Topics[0].Partitions[0].Offset
}

func produceToPartition(t *testing.T, base, topic string, partition int32, n int) {
	t.Helper()
	var recs []map[string]any
	for i := 0; i < n; i++ {
		recs = append(recs, map[string]any{"partition": partition, "value": fmt.Sprintf("p%d-%d", partition, i)})
	}
	if code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": topic, "records": recs}, nil); code != 200 {
		t.Fatalf("produce to %s/%d: status %d", topic, partition, code)
	}
}

// TestKafkaGroupProtocol drives the classic group protocol with raw
// requests: MEMBER_ID_REQUIRED, a rebalance when a second member joins,
// a commit from the stale generation refused (ILLEGAL_GENERATION),
// unknown members, describe/list, delete refused while members exist,
// and simple (generation -1) commits once the group is empty.
func TestKafkaGroupProtocol(t *testing.T) {
	base, addr := startKafkaAgent(t)
	createTopic(t, base, "kg", 4)
	produceToPartition(t, base, "kg", 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a := newRawMember(t, addr, "g")
	if r := a.join(ctx); r.ErrorCode != kerr.MemberIDRequired.Code || r.MemberID == "" {
		t.Fatalf("first join: error %v member %q, want MEMBER_ID_REQUIRED with an id", kerr.ErrorForCode(r.ErrorCode), r.MemberID)
	}
	if r := a.join(ctx); r.ErrorCode != 0 || r.LeaderID != a.id || len(r.Members) != 1 || deref(r.Protocol) != "range" {
		t.Fatalf("join: %v leader %q members %d protocol %v", kerr.ErrorForCode(r.ErrorCode), r.LeaderID, len(r.Members), r.Protocol)
	}
	if r, parts := a.sync(ctx, map[string][]int32{a.id: {0, 1, 2, 3}}); r.ErrorCode != 0 || len(parts) != 4 {
		t.Fatalf("sync: %v parts %v", kerr.ErrorForCode(r.ErrorCode), parts)
	}
	if err := commitAs(t, ctx, a.cl, "g", a.id, a.gen, 3); err != nil {
		t.Fatalf("member commit: %v", err)
	}
	if err := commitAs(t, ctx, a.cl, "g", "", -1, 5); err == nil {
		t.Fatal("a simple commit to a group with members was accepted")
	}
	if err := commitAs(t, ctx, a.cl, "g", "stranger", a.gen, 5); err != kerr.UnknownMemberID {
		t.Fatalf("commit from a non-member: %v, want UNKNOWN_MEMBER_ID", err)
	}

	// A second member joins: its join blocks until a rejoins.
	b := newRawMember(t, addr, "g")
	b.join(ctx) // MEMBER_ID_REQUIRED
	bJoined := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { bJoined <- b.join(ctx) }()
	waitFor(t, 10*time.Second, "a's heartbeat says rebalance", func() bool { return a.heartbeat(ctx) == kerr.RebalanceInProgress })
	oldGen := a.gen
	if r := a.join(ctx); r.ErrorCode != 0 || r.Generation != oldGen+1 || len(r.Members) != 2 {
		t.Fatalf("rejoin: %v gen %d members %d", kerr.ErrorForCode(r.ErrorCode), r.Generation, len(r.Members))
	}
	if r := <-bJoined; r.ErrorCode != 0 || r.Generation != a.gen || len(r.Members) != 0 {
		t.Fatalf("b's join: %v gen %d (a's %d)", kerr.ErrorForCode(r.ErrorCode), r.Generation, a.gen)
	}
	bSynced := make(chan []int32, 1)
	go func() { _, parts := b.sync(ctx, nil); bSynced <- parts }()
	if r, parts := a.sync(ctx, map[string][]int32{a.id: {0, 1}, b.id: {2, 3}}); r.ErrorCode != 0 || fmt.Sprint(parts) != "[0 1]" {
		t.Fatalf("a's sync: %v %v", kerr.ErrorForCode(r.ErrorCode), parts)
	}
	if parts := <-bSynced; fmt.Sprint(parts) != "[2 3]" {
		t.Fatalf("b's assignment %v", parts)
	}
	if err := commitAs(t, ctx, a.cl, "g", a.id, oldGen, 4); err != kerr.IllegalGeneration {
		t.Fatalf("commit from the stale generation: %v, want ILLEGAL_GENERATION", err)
	}
	if got := committedOffset(t, ctx, a.cl, "g"); got != 3 {
		t.Fatalf("committed offset %d after the refused commit, want 3", got)
	}
	checkDescribed(t, ctx, a.cl, a.id, b.id)

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g"}
	if r, err := del.RequestWith(ctx, a.cl); err != nil || r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete with members: %v %+v", err, r)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = "g"
	for _, id := range []string{a.id, b.id} {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = id
		leave.Members = append(leave.Members, m)
	}
	if r, err := leave.RequestWith(ctx, a.cl); err != nil || r.ErrorCode != 0 || r.Members[0].ErrorCode != 0 || r.Members[1].ErrorCode != 0 {
		t.Fatalf("leave: %v %+v", err, r)
	}
	if err := commitAs(t, ctx, a.cl, "g", "", -1, 7); err != nil {
		t.Fatalf("simple commit to the empty group: %v", err)
	}
	if got := committedOffset(t, ctx, a.cl, "g"); got != 7 {
		t.Fatalf("committed offset %d, want 7", got)
	}
	if r, err := del.RequestWith(ctx, a.cl); err != nil || r.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete the empty group: %v %+v", err, r)
	}
	if got := committedOffset(t, ctx, a.cl, "g"); got != -1 {
		t.Fatalf("committed offset %d after delete, want -1", got)
	}
	if r, err := del.RequestWith(ctx, a.cl); err != nil || r.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete a deleted group: %v %+v, want GROUP_ID_NOT_FOUND", err, r)
	}
}

// checkDescribed checks DescribeGroups and ListGroups of the stable group
// g with members a and b.
func checkDescribed(t *testing.T, ctx context.Context, cl *kgo.Client, a, b string) {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"g", "nope"}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.Groups[0]
	if g.ErrorCode != 0 || g.State != "Stable" || g.ProtocolType != "consumer" || g.Protocol != "range" || len(g.Members) != 2 {
		t.Fatalf("describe: %+v", g)
	}
	ids := []string{g.Members[0].MemberID, g.Members[1].MemberID}
	sort.Strings(ids)
	want := []string{a, b}
	sort.Strings(want)
	if fmt.Sprint(ids) != fmt.Sprint(want) || len(g.Members[0].MemberAssignment) == 0 {
		t.Fatalf("described members %v, want %v (with assignments)", ids, want)
	}
	if resp.Groups[1].State != "Dead" {
		t.Fatalf("unknown group described as %q, want Dead", resp.Groups[1].State)
	}
	list, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, cl)
	if err != nil || list.ErrorCode != 0 {
		t.Fatalf("list: %v %+v", err, list)
	}
	for _, lg := range list.Groups {
		if lg.Group == "g" && lg.ProtocolType == "consumer" {
			return
		}
	}
	t.Fatalf("list groups: %+v, want g (consumer)", list.Groups)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// killableDialer dials normally until kill, which closes every
// connection it made and refuses new ones: a member that dies without
// leaving its group.
type killableDialer struct {
	mu     sync.Mutex
	killed bool
	conns  []net.Conn
}

func (d *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed {
		return nil, fmt.Errorf("member killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = true
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// ownership records which member owned which partition in which
// generation, from kgo's assignment callbacks (eager balancing: each
// generation's callback carries the member's whole assignment).
type ownership struct {
	mu       sync.Mutex
	owners   map[int32]map[int32]string // generation → partition → member
	dups     []string
	consumed map[string]bool // record values seen by any member
}

func newOwnership() *ownership {
	return &ownership{owners: map[int32]map[int32]string{}, consumed: map[string]bool{}}
}

func (o *ownership) consume(r *kgo.Record) { o.consumeValue(r.Value) }

func (o *ownership) consumeValue(v []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.consumed[string(v)] = true
}

// missing lists the values of want nobody consumed yet.
func (o *ownership) missing(want []string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, v := range want {
		if !o.consumed[v] {
			out = append(out, v)
		}
	}
	return out
}

func (o *ownership) onAssigned(name string) kgo.Opt {
	return kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
		_, gen := cl.GroupMetadata()
		o.assigned(name, gen, m["kg"])
	})
}

// assigned records that member name owns parts in generation gen.
func (o *ownership) assigned(name string, gen int32, parts []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owners[gen] == nil {
		o.owners[gen] = map[int32]string{}
	}
	for _, p := range parts {
		if prev, dup := o.owners[gen][p]; dup && prev != name {
			o.dups = append(o.dups, fmt.Sprintf("generation %d: partition %d owned by %s and %s", gen, p, prev, name))
		}
		o.owners[gen][p] = name
	}
}

// settled reports whether the latest generation gives all parts
// partitions to exactly the members named.
func (o *ownership) settled(parts int, members ...string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	latest := int32(-1)
	for g := range o.owners {
		latest = max(latest, g)
	}
	own := o.owners[latest]
	seen := map[string]bool{}
	for _, m := range own {
		seen[m] = true
	}
	if len(own) != parts || len(seen) != len(members) {
		return false
	}
	for _, m := range members {
		if !seen[m] {
			return false
		}
	}
	return true
}

func (o *ownership) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range o.dups {
		t.Error(d)
	}
	t.Logf("%d generations", len(o.owners))
}

// groupMember is a kgo consumer-group member on topic kg with fast
// timings and the range assignor, polling in a goroutine of its own
// (stopped by close) and recording what it consumes in o. addrs is a
// comma-separated list of seed brokers.
func groupMember(t *testing.T, addrs, group, name string, o *ownership, extra ...kgo.Opt) *kgoMember {
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics("kg"), kgo.Balancers(kgo.RangeBalancer()),
		kgo.SessionTimeout(3 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.RebalanceTimeout(5 * time.Second), kgo.ClientID(name), o.onAssigned(name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500 * time.Millisecond),
	}, extra...)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(addrs, ",")...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(o.consume)
		}
	}()
	var once sync.Once
	closeIt := func() { once.Do(func() { cl.Close(); <-polled }) }
	t.Cleanup(closeIt)
	return &kgoMember{Client: cl, close: closeIt}
}

// produceRound produces n records to every partition of kg through the
// REST API, values tagged with round, and returns the values.
func produceRound(t *testing.T, base string, parts, n int, round string) []string {
	t.Helper()
	var vals []string
	for p := 0; p < parts; p++ {
		var recs []map[string]any
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("%s-p%d-%d", round, p, i)
			recs = append(recs, map[string]any{"partition": p, "value": v})
			vals = append(vals, v)
		}
		if code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": "kg", "records": recs}, nil); code != 200 {
			t.Fatalf("produce to kg/%d: status %d", p, code)
		}
	}
	return vals
}

// consumedAll waits until every value of want was consumed by a member.
func (o *ownership) consumedAll(t *testing.T, want []string, what string) {
	t.Helper()
	waitFor(t, 30*time.Second, what, func() bool { return len(o.missing(want)) == 0 })
}

// kgoMember is a group member's client; close leaves the group (once).
type kgoMember struct {
	*kgo.Client
	close func()
}

// TestKafkaConsumerGroupRebalances: kgo members of one group share the
// partitions of a topic and rebalance when a member joins, leaves, and
// dies without leaving (its session expires); no partition has two
// owners in one generation.
func TestKafkaConsumerGroupRebalances(t *testing.T) {
	base, addr := startKafkaAgent(t)
	const parts = 6
	createTopic(t, base, "kg", parts)
	o := newOwnership()
	var want []string
	round := func(name string) { want = append(want, produceRound(t, base, parts, 20, name)...) }
	round("r0")
	groupMember(t, addr, "rb", "m1", o)
	waitFor(t, 20*time.Second, "m1 owns every partition", func() bool { return o.settled(parts, "m1") })
	o.consumedAll(t, want, "m1 consumes round 0")
	m2 := groupMember(t, addr, "rb", "m2", o)
	groupMember(t, addr, "rb", "m3", o)
	round("r1")
	waitFor(t, 20*time.Second, "m2 and m3 join", func() bool { return o.settled(parts, "m1", "m2", "m3") })
	round("r2")
	o.consumedAll(t, want, "three members consume rounds 1 and 2")

	m2.close() // leaves the group
	round("r3")
	waitFor(t, 20*time.Second, "m2 leaves", func() bool { return o.settled(parts, "m1", "m3") })

	var d killableDialer
	m4 := groupMember(t, addr, "rb", "m4", o, kgo.Dialer(d.dial))
	waitFor(t, 20*time.Second, "m4 joins", func() bool { return o.settled(parts, "m1", "m3", "m4") })
	round("r4")
	d.kill()
	round("r5")
	waitFor(t, 30*time.Second, "m4's session expires", func() bool { return o.settled(parts, "m1", "m3") })
	round("r6")
	o.consumedAll(t, want, "every record consumed after the leave and the dead member")
	m4.close()
	o.check(t)
}

// TestKafkaGroupOffsetsSurviveMemberRestart: a member commits what it
// consumed and stops; a new member of the group resumes after the
// committed offsets (nothing committed is read again).
func TestKafkaGroupOffsetsSurviveMemberRestart(t *testing.T) {
	base, addr := startKafkaAgent(t)
	const parts = 3
	createTopic(t, base, "kg", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := produceRound(t, base, parts, 10, "before")
	o := newOwnership()
	m := groupMember(t, addr, "keep", "m1", o, kgo.DisableAutoCommit())
	o.consumedAll(t, before, "m1 consumes")
	if err := m.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	m.close()
	offs, err := kadm.NewClient(kafkaClient(t, addr)).FetchOffsets(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		if o, ok := offs.Lookup("kg", p); !ok || o.Err != nil || o.At != 10 {
			t.Fatalf("committed offset of kg/%d: %+v (found %v), want 10", p, o, ok)
		}
	}

	after := produceRound(t, base, parts, 5, "after")
	o2 := newOwnership()
	groupMember(t, addr, "keep", "m2", o2)
	o2.consumedAll(t, after, "the new member consumes the records after the commit")
	if again := len(before) - len(o2.missing(before)); again != 0 {
		t.Fatalf("the new member read %d records committed before it started", again)
	}
}

// TestKafkaGroupCooperativeSticky: kgo's default (cooperative-sticky)
// assignor runs over the classic protocol: three members end up with
// disjoint assignments covering the topic, and every record is consumed.
func TestKafkaGroupCooperativeSticky(t *testing.T) {
	base, addr := startKafkaAgent(t)
	const parts = 6
	createTopic(t, base, "kg", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := newOwnership()
	want := produceRound(t, base, parts, 10, "r0")
	for _, name := range []string{"c1", "c2", "c3"} {
		groupMember(t, addr, "coop", name, o, kgo.Balancers(kgo.CooperativeStickyBalancer()))
	}
	want = append(want, produceRound(t, base, parts, 10, "r1")...)
	o.consumedAll(t, want, "every record consumed")
	adm := kadm.NewClient(kafkaClient(t, addr))
	waitFor(t, 20*time.Second, "three members with disjoint assignments covering kg", func() bool {
		ds, err := adm.DescribeGroups(ctx, "coop")
		if err != nil {
			return false
		}
		d := ds["coop"]
		if d.State != "Stable" || d.Protocol != "cooperative-sticky" || len(d.Members) != 3 {
			return false
		}
		owned := map[int32]int{}
		for _, m := range d.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok {
				return false
			}
			for _, tp := range a.Topics {
				for _, p := range tp.Partitions {
					owned[p]++
				}
			}
		}
		for p := int32(0); p < parts; p++ {
			if owned[p] != 1 {
				return false
			}
		}
		return len(owned) == parts
	})
}

// TestKafkaAndNativeMembersShareAGroup: a kgo consumer and a StreamHouse
// Go-client group consumer (gRPC) are members of one group: they split
// the topic's partitions, never both own one in a generation, and
// together consume every record.
func TestKafkaAndNativeMembersShareAGroup(t *testing.T) {
	base, cfg := startKafkaAgentCfg(t)
	const parts = 6
	createTopic(t, base, "kg", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := newOwnership()
	want := produceRound(t, base, parts, 10, "r0")
	groupMember(t, cfg.KafkaAdvertised, "mixed", "kafka", o)
	waitFor(t, 20*time.Second, "the Kafka member owns every partition", func() bool { return o.settled(parts, "kafka") })

	cl, err := client.Dial(ctx, []string{"127.0.0.1:" + strconv.Itoa(cfg.GRPCPort)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	native, err := cl.NewGroupConsumer(ctx, client.GroupConsumerConfig{Group: "mixed", Topic: "kg", Start: client.Earliest,
		ClientID: "native", SessionTimeout: 3 * time.Second, RebalanceTimeout: 5 * time.Second, MaxWait: 200 * time.Millisecond,
		OnAssigned: func(gen int32, ps []int32) { o.assigned("native", gen, ps) }})
	if err != nil {
		t.Fatal(err)
	}
	o.assigned("native", native.Generation(), native.Assignment())
	pollCtx, stopPolling := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() {
		for pollCtx.Err() == nil {
			recs, err := native.Poll(pollCtx)
			if err != nil && pollCtx.Err() == nil {
				polled <- err
				return
			}
			for _, r := range recs {
				o.consumeValue(r.Value)
			}
		}
		polled <- nil
	}()
	waitFor(t, 20*time.Second, "the Kafka and the native member split the partitions", func() bool { return o.settled(parts, "kafka", "native") })
	want = append(want, produceRound(t, base, parts, 10, "r1")...)
	o.consumedAll(t, want, "every record consumed by one of the two members")
	stopPolling()
	if err := <-polled; err != nil {
		t.Fatalf("native poll: %v", err)
	}
	if err := native.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the Kafka member takes the native member's partitions", func() bool { return o.settled(parts, "kafka") })
	o.check(t)
}
