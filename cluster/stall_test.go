package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// diskSink is an in-memory fsm.Sink that answers ENOSPC while full.
type diskSink struct {
	mu      sync.Mutex
	full    bool
	hold    chan struct{} // the next Materialize waits for it to close
	indexes []uint64
}

// holdThenFail makes the disk full and the next Materialize wait until
// release is called (a write that hangs, then fails with ENOSPC).
func (s *diskSink) holdThenFail() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full = true
	hold := make(chan struct{})
	s.hold = hold
	var once sync.Once
	return func() { once.Do(func() { close(hold) }) }
}

func (s *diskSink) setFull(v bool) {
	s.mu.Lock()
	s.full = v
	s.mu.Unlock()
}

func (s *diskSink) Materialize(bs []*fsm.AppendedBatch) error {
	s.mu.Lock()
	hold := s.hold
	s.hold = nil
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	index := bs[0].Index
	if n := len(s.indexes); n > 0 && index <= s.indexes[n-1] {
		return nil
	}
	if s.full {
		return syscall.ENOSPC
	}
	s.indexes = append(s.indexes, index)
	return nil
}

func (s *diskSink) stored() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.indexes...)
}

type noBatches struct{}

func (noBatches) Each(func(*fsm.AppendedBatch) error) error { return nil }
func (noBatches) Release()                                  {}

func (s *diskSink) SnapshotBatches(map[fsm.PartitionKey]int64) (fsm.BatchSnapshot, error) {
	return noBatches{}, nil
}

func appendOne(topicID uint64, v string) *fsm.AppendBatch {
	return &fsm.AppendBatch{TopicID: topicID, LeaderEpoch: 1, Count: 1, Timestamp: 1,
		Records: fsm.AppendRecords(nil, []fsm.Record{{Value: []byte(v)}})}
}

// A leader whose disk is full stalls in Apply instead of crashing, hands
// Raft leadership away so the others keep committing, reports the stall on
// Ready, and applies every entry exactly once when space returns. A stalled
// agent still shuts down.
//
// On a loaded machine leadership can move again at any time (a leader that
// misses its lease steps down), and a proposal cut by that has an unknown
// outcome: the appends are retried until one is acknowledged, and what the
// stalled agent must end up with is read from the leader's state.
func TestDiskFullLeaderStallsHandsOverAndCatchesUp(t *testing.T) {
	c, sinks, old, topicID := diskFullCluster(t)
	sinks[old.id].setFull(true)
	go func() { _, _ = propose(t, old, appendOne(topicID, "a")) }() // outcome unknown to this caller
	waitFor(t, 30*time.Second, "the stall reported on Ready", func() bool {
		ok, why := old.node.Ready()
		return !ok && strings.Contains(why, "cannot store committed raft entry")
	})
	lead := appendThroughLeader(t, c, topicID, "b", func(n *testNode) bool { return n.id != old.id })
	sinks[old.id].setFull(false)
	waitFor(t, 30*time.Second, "the stalled agent to catch up", func() bool {
		want, _ := lead.fsm.Partition(topicID, 0)
		p, _ := old.fsm.Partition(topicID, 0)
		ok, _ := old.node.Ready()
		return ok && p.NextOffset >= 2 && p.NextOffset == want.NextOffset &&
			slices.Equal(sinks[old.id].stored(), sinks[lead.id].stored())
	})

	// A stalled agent still shuts down (Halt releases Raft's FSM goroutine).
	f := c.followers(lead)[0]
	sinks[f.id].setFull(true)
	appendThroughLeader(t, c, topicID, "c", func(n *testNode) bool { return n.id != f.id })
	waitFor(t, 30*time.Second, "the follower stall", func() bool { _, ok := f.fsm.Stalled(); return ok })
	closed := make(chan struct{})
	go func() { c.kill(f.id); close(closed) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("a stalled agent did not shut down")
	}
}

// appendThroughLeader appends v through the Raft leader, whenever the
// leader is one eligible allows, until an append is acknowledged, and
// returns that leader. An attempt that failed may have committed too.
func appendThroughLeader(t *testing.T, c *testCluster, topicID uint64, v string, eligible func(*testNode) bool) *testNode {
	t.Helper()
	var lead *testNode
	waitFor(t, 30*time.Second, "an append of "+v+" acknowledged by an eligible leader", func() bool {
		lead = c.leader()
		if lead == nil || !eligible(lead) {
			return false
		}
		_, err := propose(t, lead, appendOne(topicID, v))
		if err != nil {
			t.Logf("append of %q through %s (retried; it may have committed): %v", v, lead.id, err)
		}
		return err == nil
	})
	return lead
}

// diskFullCluster starts three founders whose FSMs store into diskSinks
// and creates topic "t" (one partition) through the leader, old.
func diskFullCluster(t *testing.T) (c *testCluster, sinks map[string]*diskSink, old *testNode, topicID uint64) {
	c = newTestCluster(t)
	sinks = withDiskSinks(c)
	c.startBootstrapped("n1", "n2", "n3")
	old = c.waitLeader(30 * time.Second)
	return c, sinks, old, createTopic(t, old, "t", 1)
}

// withDiskSinks gives every agent c starts a diskSink, by agent id.
func withDiskSinks(c *testCluster) map[string]*diskSink {
	var mu sync.Mutex
	sinks := map[string]*diskSink{}
	c.newSink = func(id string) fsm.Sink {
		mu.Lock()
		defer mu.Unlock()
		sinks[id] = &diskSink{}
		return sinks[id]
	}
	return sinks
}

// fillApplyQueue commits entries on leader n one at a time until its
// commit index stops advancing: Raft's FSM goroutine is held, so each
// commit queues one batch for it, and once that queue (128) is full
// Raft's main loop blocks on it. It returns the number of rounds.
func fillApplyQueue(t *testing.T, n *testNode, cmd []byte) int {
	t.Helper()
	r := n.node.r()
	for round := 0; round < 1000; round++ {
		c0 := r.CommitIndex()
		_ = r.Apply(cmd, 100*time.Millisecond) // nobody awaits the outcome
		deadline := time.Now().Add(2 * time.Second)
		for r.CommitIndex() <= c0 {
			if time.Now().After(deadline) {
				return round
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatal("raft kept committing: its apply queue never filled")
	return 0
}

// A leader whose disk write hangs and then fails with ENOSPC after Raft's
// apply queue filled up — so Raft's main loop is blocked and cannot run a
// leadership transfer or its lease check, while its replication goroutines
// would keep heartbeating — is still replaced: the others elect a leader
// and commit, and the stalled agent catches up exactly once when space
// returns.
func TestDiskFullLeaderWithBlockedRaftLoopIsReplaced(t *testing.T) {
	c, sinks, old, topicID := diskFullCluster(t)
	release := sinks[old.id].holdThenFail()
	t.Cleanup(release)
	rounds := fillApplyQueue(t, old, fsm.Encode(appendOne(topicID, "a")))
	if pending := old.node.r().Stats()["fsm_pending"]; pending != "128" {
		t.Fatalf("after %d commits raft's apply queue holds %s batches, want it full (128)", rounds, pending)
	}
	release() // the held write fails with ENOSPC: the FSM stalls
	waitFor(t, 30*time.Second, "the stall", func() bool { _, ok := old.fsm.Stalled(); return ok })
	var lead *testNode
	waitFor(t, 20*time.Second, "another agent to lead and commit", func() bool {
		for _, n := range c.running() {
			if n.id != old.id && n.node.IsLeader() {
				if _, err := propose(t, n, appendOne(topicID, "b")); err == nil {
					lead = n
					return true
				}
			}
		}
		return false
	})
	sinks[old.id].setFull(false)
	old.fsm.RetryNow()
	waitFor(t, 30*time.Second, "the stalled agent to catch up and follow", func() bool {
		p, _ := old.fsm.Partition(topicID, 0)
		q, _ := lead.fsm.Partition(topicID, 0)
		ok, _ := old.node.Ready()
		return ok && !old.node.IsLeader() && p.NextOffset == q.NextOffset
	})
	if a, b := sinks[old.id].stored(), sinks[lead.id].stored(); !slices.Equal(a, b) {
		t.Fatalf("stored indexes %v on %s, %v on %s", a, old.id, b, lead.id)
	}
}

// On a low disk the Raft log is compacted down to lowDiskTrailingLogs
// entries at once (instead of TrailingLogs at the next snapshot).
func TestSetLowDiskCompactsTheRaftLog(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "", func(cfg *Config) { cfg.Bootstrap = true; cfg.SnapshotThreshold = 1 << 30 })
	c.waitLeader(30 * time.Second)
	topicID := createTopic(t, n, "t", 1)
	for i := 0; i < 3*lowDiskTrailingLogs; i++ {
		if _, err := propose(t, n, appendOne(topicID, "x")); err != nil {
			t.Fatal(err)
		}
	}
	first := func() uint64 {
		i, err := n.node.store.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	if f := first(); f > 1 {
		t.Fatalf("log already compacted (first index %d)", f)
	}
	if err := n.node.SetLowDisk(true); err != nil {
		t.Fatal(err)
	}
	last, _ := n.node.store.LastIndex()
	if f := first(); f+lowDiskTrailingLogs < last {
		t.Fatalf("after SetLowDisk: log holds %d..%d, want at most %d entries", f, last, lowDiskTrailingLogs+1)
	}
	if err := n.node.SetLowDisk(false); err != nil {
		t.Fatal(err)
	}
}

// A leader whose free disk falls below MIN_FREE_DISK_BYTES hands Raft
// leadership to a voter with space before its disk fills (a full leader
// would stall the cluster); it never picks a voter gossip shows low too.
func TestLowDiskLeaderHandsOverLeadership(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("n1", "n2", "n3")
	old := c.waitLeader(30 * time.Second)
	old.node.NoteLowDisk(true)
	var lead *testNode
	waitFor(t, 30*time.Second, "another leader", func() bool {
		lead = c.leader()
		return lead != nil && lead.id != old.id
	})
	for _, n := range c.running() {
		n.node.NoteLowDisk(true)
	}
	waitFor(t, 30*time.Second, "every agent's low disk gossiped", func() bool {
		for _, n := range c.running() {
			for id, m := range n.node.gossip.snapshot() {
				if id != n.id && !m.Meta.LowDisk {
					return false
				}
			}
		}
		return true
	})
	for _, n := range c.running() {
		if s, ok := n.node.transferTarget(); ok {
			t.Fatalf("%s would hand leadership to %s, whose disk is low too", n.id, s.ID)
		}
	}
	for _, n := range c.running() {
		n.node.NoteLowDisk(false)
	}
	if _, err := propose(t, c.waitLeader(30*time.Second), &fsm.CreateTopic{Name: "after", Partitions: 1, Leaders: []string{lead.id}}); err != nil {
		t.Fatalf("commit after the disks recovered: %v", err)
	}
}
