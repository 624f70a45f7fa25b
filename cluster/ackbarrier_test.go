package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// heldFSM holds Raft's applies on one agent while hold is set: the entries
// commit and the others apply them, this agent does not (yet).
type heldFSM struct {
	*fsm.FSM
	mu   sync.Mutex
	hold chan struct{}
}

// holdApplies holds every apply from now until release is called.
func (h *heldFSM) holdApplies() (release func()) {
	ch := make(chan struct{})
	h.mu.Lock()
	h.hold = ch
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.hold = nil
			h.mu.Unlock()
			close(ch)
		})
	}
}

func (h *heldFSM) wait() {
	h.mu.Lock()
	ch := h.hold
	h.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (h *heldFSM) Apply(l *raft.Log) interface{} {
	h.wait()
	return h.FSM.Apply(l)
}

func (h *heldFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	h.wait()
	return h.FSM.ApplyBatch(logs)
}

// heldCluster starts three founders whose FSMs can be held, creates topic
// "t" (one partition) through the leader and returns a follower whose FSM
// has applied it.
func heldCluster(t *testing.T, edit func(*Config)) (c *testCluster, f *testNode, held *heldFSM, topicID uint64) {
	c = newTestCluster(t)
	c.edit = edit
	var mu sync.Mutex
	fsms := map[string]*heldFSM{}
	c.wrapFSM = func(id string, f *fsm.FSM) StateMachine {
		mu.Lock()
		defer mu.Unlock()
		fsms[id] = &heldFSM{FSM: f}
		return fsms[id]
	}
	c.startBootstrapped("n1", "n2", "n3")
	lead := c.waitLeader(30 * time.Second)
	topicID = createTopic(t, lead, "t", 1)
	f = c.followers(lead)[0]
	waitFor(t, 10*time.Second, "the follower to apply the topic", func() bool {
		_, ok := f.fsm.Partition(topicID, 0)
		return ok
	})
	mu.Lock()
	defer mu.Unlock()
	return c, f, fsms[f.id], topicID
}

// A produce entry forwarded by an agent that is not the Raft leader is
// answered once the leader applied it, before this agent does; a read
// through AwaitAcked then waits for this agent's apply and sees the
// record.
func TestForwardedProduceAnswersBeforeOwnApply(t *testing.T) {
	// ApplyTimeout beyond the caller's deadline: a forward that waited
	// for its own apply would only return once the caller gave up.
	_, f, held, topicID := heldCluster(t, func(cfg *Config) { cfg.ApplyTimeout = 30 * time.Second })
	release := held.holdApplies()
	t.Cleanup(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.node.StartPropose(ctx, fsm.Encode(appendOne(topicID, "a")))()
	if err != nil || res.Err() != nil {
		t.Fatalf("forwarded produce: %v %v", err, res)
	}
	if ctx.Err() != nil {
		t.Fatal("the forwarded produce was answered only when the caller's deadline passed")
	}
	if p, _ := f.fsm.Partition(topicID, 0); p.NextOffset != 0 {
		t.Fatalf("the follower applied the record before the answer (next offset %d): nothing was held", p.NextOffset)
	}
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	if err := f.node.AwaitAcked(gone); !errors.Is(err, context.Canceled) {
		t.Fatalf("the read barrier passed with the acknowledged entry not applied: %v", err)
	}
	read := make(chan int64, 1)
	go func() {
		if err := f.node.AwaitAcked(ctx); err != nil {
			t.Error(err)
		}
		p, _ := f.fsm.Partition(topicID, 0)
		read <- p.NextOffset
	}()
	release()
	if next := <-read; next != res.BaseOffset+1 {
		t.Fatalf("a read after the barrier sees next offset %d, want %d", next, res.BaseOffset+1)
	}
}

// Other forwarded commands still return only once this agent applied
// them: their callers read what they changed without the barrier.
func TestForwardedAdminCommandWaitsForOwnApply(t *testing.T) {
	c, f, held, _ := heldCluster(t, nil)
	lead := c.leader()
	release := held.holdApplies()
	t.Cleanup(release)
	done := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := f.node.Propose(ctx, fsm.Encode(&fsm.CreateTopic{Name: "u", Partitions: 1,
			Leaders: []string{f.id}, Timestamp: time.Now().UnixMilli()}))
		if err != nil {
			t.Error(err)
		}
		_, ok := f.fsm.Topic("u")
		done <- ok
	}()
	waitFor(t, 10*time.Second, "the leader to apply the topic", func() bool {
		_, ok := lead.fsm.Topic("u")
		return ok
	})
	select {
	case <-done:
		t.Fatal("the forwarded command returned while this agent's apply was held")
	default:
	}
	release()
	if !<-done {
		t.Fatal("the forwarded command returned before this agent applied it")
	}
}

// An agent that acknowledged a produce and then never applies it does not
// hold a read for longer than ApplyTimeout: the read fails as unavailable.
func TestReadBarrierIsBounded(t *testing.T) {
	_, f, held, topicID := heldCluster(t, func(cfg *Config) { cfg.ApplyTimeout = time.Second })
	release := held.holdApplies()
	t.Cleanup(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.node.StartPropose(ctx, fsm.Encode(appendOne(topicID, "a")))(); err != nil {
		t.Fatal(err)
	}
	if err := f.node.AwaitAcked(ctx); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("barrier with the apply held: %v, want an error wrapping %v", err, fsm.ErrUnavailable)
	}
	release()
	if err := f.node.AwaitAcked(ctx); err != nil {
		t.Fatalf("barrier after the apply: %v", err)
	}
}
