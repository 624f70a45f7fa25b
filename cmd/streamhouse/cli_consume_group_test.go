package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
)

// Consumer groups whose members share partitions, against a real agent.

// owners records, per generation, which member each partition went to,
// and fails on a partition given to two members in one generation.
type owners struct {
	mu  sync.Mutex
	gen map[int32]map[int32]string
	err error
}

func (o *owners) assigned(member string) func(int32, []int32) {
	return func(gen int32, parts []int32) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.gen[gen] == nil {
			o.gen[gen] = map[int32]string{}
		}
		for _, p := range parts {
			if prev, ok := o.gen[gen][p]; ok && prev != member && o.err == nil {
				o.err = fmt.Errorf("generation %d: partition %d owned by %s and %s", gen, p, prev, member)
			}
			o.gen[gen][p] = member
		}
	}
}

// member is a GroupConsumer polling and committing on its own goroutine,
// over its own client (closing the client is a crash: no leave).
type member struct {
	cl     *client.Client
	gc     *client.GroupConsumer
	seen   *seenSet
	cancel context.CancelFunc
	done   chan struct{}
}

type seenSet struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *seenSet) add(v string) {
	s.mu.Lock()
	s.n[v]++
	s.mu.Unlock()
}

// missing lists the values of want not seen yet.
func (s *seenSet) missing(want []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, v := range want {
		if s.n[v] == 0 {
			out = append(out, v)
		}
	}
	return out
}

func startMember(t *testing.T, addr, name string, seen *seenSet, own *owners) *member {
	t.Helper()
	return startMemberOf(t, []string{addr}, "split", "gs", name, seen, own)
}

func startMemberOf(t *testing.T, addrs []string, group, topic, name string, seen *seenSet, own *owners) *member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{cl: cl, seen: seen, done: make(chan struct{})}
	joined := make(chan error, 1)
	rctx, rcancel := context.WithCancel(context.Background())
	m.cancel = rcancel
	go func() {
		defer close(m.done)
		gc, err := cl.NewGroupConsumer(rctx, client.GroupConsumerConfig{Group: group, Topic: topic, ClientID: name,
			SessionTimeout: 1500 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond, RebalanceTimeout: 5 * time.Second,
			MaxWait: 200 * time.Millisecond, OnAssigned: own.assigned(name)})
		joined <- err
		if err != nil {
			return
		}
		m.gc = gc
		for rctx.Err() == nil {
			recs, _ := gc.Poll(rctx)
			for _, r := range recs {
				seen.add(string(r.Value))
			}
			_ = gc.Commit(rctx) // refused after a rebalance: the next owner reads again
		}
	}()
	t.Cleanup(func() { m.cancel(); <-m.done; _ = cl.Close() })
	// The first member's join completes alone; a later one's completes
	// when the members already polling rejoin.
	select {
	case err := <-joined:
		if err != nil {
			t.Fatalf("%s joins: %v", name, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not join", name)
	}
	return m
}

// leave stops polling and leaves the group.
func (m *member) leave(t *testing.T) {
	m.cancel()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.gc.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// crash stops polling and heartbeating without leaving.
func (m *member) crash() {
	m.cancel()
	<-m.done
	_ = m.cl.Close()
}

func produceValues(t *testing.T, p *client.Producer, prefix string, n, parts int) []string {
	t.Helper()
	return produceTo(t, p, "gs", prefix, n, parts)
}

func produceTo(t *testing.T, p *client.Producer, topic, prefix string, n, parts int) []string {
	t.Helper()
	var recs []client.Record
	var vals []string
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("%s-%d", prefix, i)
		vals = append(vals, v)
		recs = append(recs, client.Record{Value: []byte(v)}.ToPartition(int32(i%parts)))
	}
	if _, err := p.Produce(ctxFor(t), topic, recs...); err != nil {
		t.Fatal(err)
	}
	return vals
}

// waitMembers waits for a Stable generation of n members owning every
// one of parts partitions.
func waitMembers(t *testing.T, c *client.Client, n, parts int) client.GroupMembers {
	t.Helper()
	var got client.GroupMembers
	waitFor(t, 30*time.Second, fmt.Sprintf("a stable generation of %d members", n), func() bool {
		_, m, err := c.DescribeGroupMembers(ctxFor(t), "split")
		if err != nil || m.State != "Stable" || len(m.Members) != n {
			return false
		}
		owned := 0
		for _, x := range m.Members {
			for _, tp := range x.Partitions {
				owned += len(tp.Partitions)
			}
		}
		got = m
		return owned == parts
	})
	return got
}

// TestGroupMembersSplitAndRebalance: two Go-client members split a
// topic's partitions; when one leaves, and when a third is killed, the
// others take its partitions; every record is consumed at least once and
// no partition is owned by two members in one generation.
func TestGroupMembersSplitAndRebalance(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	c := dialAgent(t, addr)
	if _, err := c.CreateTopic(ctxFor(t), "gs", 4, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{})
	seen := &seenSet{n: map[string]int{}}
	own := &owners{gen: map[int32]map[int32]string{}}
	want := produceValues(t, p, "a", 200, 4)

	a := startMember(t, addr, "a", seen, own)
	b := startMember(t, addr, "b", seen, own)
	m := waitMembers(t, c, 2, 4)
	for _, x := range m.Members {
		if n := len(x.Partitions[0].Partitions); n != 2 {
			t.Fatalf("member %s owns %d partitions, want 2 of 4: %+v", x.MemberID, n, m)
		}
	}
	waitFor(t, 30*time.Second, "every record of the first batch consumed", func() bool { return len(seen.missing(want)) == 0 })

	a.leave(t)
	waitMembers(t, c, 1, 4)
	want = append(want, produceValues(t, p, "b", 100, 4)...)
	waitFor(t, 30*time.Second, "b consumes everything after a left", func() bool { return len(seen.missing(want)) == 0 })

	cm := startMember(t, addr, "c", seen, own)
	waitMembers(t, c, 2, 4)
	cm.crash()
	want = append(want, produceValues(t, p, "c", 100, 4)...)
	waitFor(t, 30*time.Second, "b consumes everything after c was killed", func() bool {
		if miss := seen.missing(want); len(miss) > 0 {
			return false
		}
		return true
	})
	waitMembers(t, c, 1, 4)
	_ = b
	own.mu.Lock()
	defer own.mu.Unlock()
	if own.err != nil {
		t.Fatal(own.err)
	}
	if len(own.gen) < 4 {
		t.Fatalf("saw %d generations, want at least 4 (join, join, leave, join, expiry)", len(own.gen))
	}
}

// TestKickedMemberCommitIsRefused: a member that stopped heartbeating is
// dropped at the next rebalance; its commit with its old generation is
// refused and changes nothing.
func TestKickedMemberCommitIsRefused(t *testing.T) {
	_, addr := startClientAgent(t, nil)
	c := dialAgent(t, addr)
	ctx := ctxFor(t)
	if _, err := c.CreateTopic(ctx, "kick", 1, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.ProducerConfig{})
	if _, err := p.Produce(ctx, "kick", client.Record{Value: []byte("x")}, client.Record{Value: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	join := func(id string) client.JoinGroupResult {
		t.Helper()
		res, err := c.JoinGroup(ctx, client.JoinGroupRequest{Group: "kg", MemberID: id, ClientID: "raw", ProtocolType: "consumer",
			Protocols: []client.GroupProtocol{{Name: "range"}}, SessionTimeout: time.Second, RebalanceTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SyncGroup(ctx, "kg", res.Generation, res.MemberID, map[string][]byte{}); err != nil {
			t.Fatal(err)
		}
		return res
	}
	x := join("")
	commit := client.OffsetCommit{Topic: "kick", Partition: 0, Offset: 1}
	if err := c.CommitMemberOffsets(ctx, "kg", x.Generation, x.MemberID, commit); err != nil {
		t.Fatalf("commit of a current member: %v", err)
	}
	// A plain commit while the group has a member is refused.
	err := c.CommitOffsets(ctx, "kg", commit)
	wantCode(t, "plain commit to an active group", err, codes.FailedPrecondition, client.KindUnknownMember)
	// x stops heartbeating: its session ends and it is dropped.
	waitFor(t, 20*time.Second, "x dropped from the group", func() bool {
		_, m, err := c.DescribeGroupMembers(ctx, "kg")
		return err == nil && len(m.Members) == 0
	})
	err = c.CommitMemberOffsets(ctx, "kg", x.Generation, x.MemberID, client.OffsetCommit{Topic: "kick", Partition: 0, Offset: 2})
	if client.Code(err) != codes.FailedPrecondition || (client.Kind(err) != client.KindUnknownMember && client.Kind(err) != client.KindIllegalGeneration) {
		t.Fatalf("commit of a kicked member: %v", err)
	}
	// A new member's generation fences the old one's.
	y := join("")
	if y.Generation <= x.Generation {
		t.Fatalf("generation %d after %d", y.Generation, x.Generation)
	}
	err = c.CommitMemberOffsets(ctx, "kg", x.Generation, y.MemberID, client.OffsetCommit{Topic: "kick", Partition: 0, Offset: 2})
	wantCode(t, "commit with a stale generation", err, codes.FailedPrecondition, client.KindIllegalGeneration)
	d, err := c.DescribeGroup(ctx, "kg")
	if err != nil || len(d.Partitions) != 1 || d.Partitions[0].Offset != 1 {
		t.Fatalf("refused commits changed the offsets: %+v %v", d, err)
	}
}

// cliMember is a `streamhouse consume --group --follow -o json` process.
type cliMember struct {
	cmd *exec.Cmd
	out testkit.SyncBuffer
	err testkit.SyncBuffer
}

func startCLIMember(t *testing.T, server, topic, group string) *cliMember {
	t.Helper()
	m := &cliMember{cmd: exec.Command(agentBinary(t), "consume", topic, "--follow", "--group", group, "-o", "json")}
	m.cmd.Env = append(os.Environ(), "STREAMHOUSE_GRPC="+server)
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.err
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() })
	return m
}

// records parses what the process printed so far.
func (m *cliMember) records(t *testing.T) []recordJSON {
	t.Helper()
	var out []recordJSON
	sc := bufio.NewScanner(strings.NewReader(m.out.String()))
	for sc.Scan() {
		var r recordJSON
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line still being written
		}
		out = append(out, r)
	}
	return out
}

// TestConsumeGroupProcessesSplitPartitions: two `consume --group g
// --follow` processes split a topic's partitions (each prints only its
// own); when one is killed the other takes over its partitions.
func TestConsumeGroupProcessesSplitPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two consumer processes; run without -short")
	}
	_, server := startClientAgent(t, nil)
	c := dialAgent(t, server)
	if _, err := c.CreateTopic(ctxFor(t), "sp", 4, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	a := startCLIMember(t, server, "sp", "g")
	b := startCLIMember(t, server, "sp", "g")
	waitFor(t, 60*time.Second, "both processes in one stable generation", func() bool {
		_, m, err := c.DescribeGroupMembers(ctxFor(t), "g")
		return err == nil && m.State == "Stable" && len(m.Members) == 2 && len(m.Members[0].Partitions) == 1 && len(m.Members[1].Partitions) == 1
	})
	p := newProducer(t, c, client.ProducerConfig{})
	var recs []client.Record
	for i := 0; i < 40; i++ {
		recs = append(recs, client.Record{Value: []byte(fmt.Sprintf("v%d", i))}.ToPartition(int32(i%4)))
	}
	if _, err := p.Produce(ctxFor(t), "sp", recs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the two processes print all 40 records", func() bool {
		return len(a.records(t))+len(b.records(t)) >= 40
	})
	pa, pb := partitionsOf(a.records(t)), partitionsOf(b.records(t))
	if len(pa) == 0 || len(pb) == 0 {
		t.Fatalf("one process printed nothing: %v %v\nstderr a: %s\nstderr b: %s", pa, pb, a.err.String(), b.err.String())
	}
	for _, part := range pa {
		if slices.Contains(pb, part) {
			t.Fatalf("partition %d printed by both processes (%v, %v)", part, pa, pb)
		}
	}
	if n := len(a.records(t)) + len(b.records(t)); n != 40 {
		t.Fatalf("%d records printed for 40 produced in one stable generation", n)
	}

	// Kill a: after its session times out, b reads a's partitions too.
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	var more []client.Record
	for i := 0; i < 8; i++ {
		more = append(more, client.Record{Value: []byte(fmt.Sprintf("w%d", i))}.ToPartition(int32(i%4)))
	}
	if _, err := p.Produce(ctxFor(t), "sp", more...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "b prints the records of every partition after a was killed", func() bool {
		got := map[string]bool{}
		for _, r := range b.records(t) {
			got[r.Value] = true
		}
		for i := 0; i < 8; i++ {
			if !got[fmt.Sprintf("w%d", i)] {
				return false
			}
		}
		return true
	})
}

func partitionsOf(recs []recordJSON) []int32 {
	var out []int32
	for _, r := range recs {
		if !slices.Contains(out, r.Partition) {
			out = append(out, r.Partition)
		}
	}
	slices.Sort(out)
	return out
}

// TestGroupMemberSurvivesCoordinatorKill: three agent processes; a group
// member keeps consuming when the Raft leader (its group coordinator) is
// killed: the new leader coordinates the group from the replicated
// membership, and every record produced before and after is consumed.
func TestGroupMemberSurvivesCoordinatorKill(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "3 voters and a leader", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != "" && len(st.Members) == 3
	})
	var addrs []string
	for _, m := range st.Members {
		addrs = append(addrs, m.GRPCAddr)
	}
	cl := dialAgent(t, addrs[0])
	if _, err := cl.CreateTopic(ctxFor(t), "fo", 3, client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, cl, client.ProducerConfig{})
	seen := &seenSet{n: map[string]int{}}
	own := &owners{gen: map[int32]map[int32]string{}}
	want := produceTo(t, p, "fo", "before", 60, 3)
	startMemberOf(t, addrs, "fo-g", "fo", "m", seen, own)
	waitFor(t, 30*time.Second, "the records before the kill consumed", func() bool { return len(seen.missing(want)) == 0 })

	c.procs[nodeIndex(st.Leader)].kill(t)
	var after []string
	waitFor(t, 60*time.Second, "produce accepted after the kill", func() bool {
		var recs []client.Record
		for i := 0; i < 60; i++ {
			recs = append(recs, client.Record{Value: []byte(fmt.Sprintf("after-%d", i))}.ToPartition(int32(i%3)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := p.Produce(ctx, "fo", recs...); err != nil {
			return false
		}
		for _, r := range recs {
			after = append(after, string(r.Value))
		}
		return true
	})
	waitFor(t, 60*time.Second, "the records after the kill consumed", func() bool { return len(seen.missing(after)) == 0 })
	own.mu.Lock()
	defer own.mu.Unlock()
	if own.err != nil {
		t.Fatal(own.err)
	}
}
