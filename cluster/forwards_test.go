package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
)

// forwardOutcome is how one agent's forward ended.
type forwardOutcome struct {
	via *testNode
	res *fsm.Result
	err error
}

// The Raft leader is blackholed (its packets vanish, no connection is
// closed) while both followers have a produce entry forwarded to it (and
// one of them a topic command), each committed but not yet answered: the leader's FSM holds the apply its
// answer waits for until the cut is in place. ForwardTimeout is far
// beyond the test's patience, so only the observed change of leader can
// end the forwards: on the follower that wins the election (its own
// leadership is the change) and on the other (it learns the winner). Each
// ends as a forward that timed out would, outcome unknown — never "not
// written", for both entries did commit — and the idempotent retry
// through the same agent is answered as a duplicate with the original
// offset (the topic command's retry: topic exists); the next produce is
// acknowledged.
func TestForwardToBlackholedLeaderEndsOnNewLeader(t *testing.T) {
	c := newTestCluster(t)
	c.edit = func(cfg *Config) { cfg.ForwardTimeout = 10 * time.Minute }
	var mu sync.Mutex
	held := map[string]*heldFSM{}
	c.wrapFSM = func(id string, f *fsm.FSM) StateMachine {
		mu.Lock()
		defer mu.Unlock()
		held[id] = &heldFSM{FSM: f}
		return held[id]
	}
	c.startBootstrapped("a", "b", "c")
	t.Cleanup(c.faults.Heal) // before the agents stop (cleanups run last first)
	lead := c.waitLeader(deadline)
	topicID := createTopic(t, lead, "t", 1)
	followers := c.followers(lead)
	producers := make([]*fsm.Result, len(followers))
	for i := range followers {
		res, err := propose(t, lead, &fsm.InitProducer{Timestamp: time.Now().UnixMilli()})
		if err != nil {
			t.Fatalf("init producer: %v", err)
		}
		producers[i] = res
	}
	waitFor(t, deadline, "every agent applied the topic and the producers", func() bool {
		for _, n := range c.running() {
			if n.fsm.LastApplied() < lead.fsm.LastApplied() {
				return false
			}
		}
		return true
	})
	epoch := lead.fsmPartition(topicID, 0).LeaderEpoch
	batch := func(i int, seq int64) []byte {
		b := appendOne(topicID, followers[i].id)
		b.LeaderEpoch, b.ProducerID, b.ProducerEpoch, b.BaseSequence = epoch, producers[i].ProducerID, producers[i].ProducerEpoch, seq
		return fsm.Encode(b)
	}

	mu.Lock()
	release := held[lead.id].holdApplies()
	mu.Unlock()
	t.Cleanup(release)
	waits := make([]func() (*fsm.Result, error), len(followers))
	for i, f := range followers {
		// Returns once the leader has enqueued the entry (the first step
		// of its answer); the rest of its answer waits for its apply.
		waits[i] = f.node.StartPropose(context.Background(), batch(i, 0))
	}
	// A topic command forwarded behind them keeps its class too.
	topicCmd := &fsm.CreateTopic{Name: "during-cut", Partitions: 1, Leaders: []string{followers[0].id}, Timestamp: time.Now().UnixMilli()}
	topicWait := followers[0].node.StartPropose(context.Background(), fsm.Encode(topicCmd))
	waitFor(t, deadline, "the forwarded entries committed (applied by the followers)", func() bool {
		for _, f := range followers {
			if _, ok := f.fsm.Topic(topicCmd.Name); !ok || f.fsmPartition(topicID, 0).NextOffset != 2 {
				return false
			}
		}
		return true
	})
	c.faults.Blackhole(lead.mux.Addr())
	cut := time.Now() // for the log only
	release()         // the leader answers now, into the blackhole

	done := make(chan forwardOutcome, len(followers))
	for i, f := range followers {
		go func() {
			res, err := waits[i]()
			done <- forwardOutcome{via: f, res: res, err: err}
		}()
	}
	topicDone := make(chan error, 1)
	go func() {
		_, err := topicWait()
		topicDone <- err
	}()
	newLead := c.waitLeaderOf(deadline, c.except(lead.id))
	outcomes := map[string]forwardOutcome{}
	waitFor(t, deadline, "the forwards to the blackholed leader to end (ForwardTimeout is 10 min)", func() bool {
		select {
		case o := <-done:
			outcomes[o.via.id] = o
		default:
		}
		return len(outcomes) == len(followers)
	})
	t.Logf("both forwards ended %v after the cut (election timeout 250 ms)", time.Since(cut).Round(time.Millisecond))
	for i, f := range followers {
		o := outcomes[f.id]
		role := "learnt the new leader " + newLead.id
		if f == newLead {
			role = "became the raft leader itself"
		}
		t.Logf("forward via %s (which %s) ended: %v", f.id, role, o.err)
		if !errors.Is(o.err, fsm.ErrOutcomeUnknown) || errors.Is(o.err, fsm.ErrUnavailable) || !errors.Is(o.err, errLeaderChanged) {
			t.Fatalf("forward via %s (which %s): %v %v, want an unknown outcome cut by the change of leader", f.id, role, o.res, o.err)
		}
		// The idempotent retry is answered from the committed entry.
		res, err := propose(t, f, decodeBatch(t, batch(i, 0)))
		if err != nil || !res.Duplicate || res.BaseOffset != int64(i) {
			t.Fatalf("retry via %s: %+v %v, want a duplicate at offset %d", f.id, res, err, i)
		}
	}
	var topicErr error
	waitFor(t, deadline, "the forwarded topic command to end", func() bool {
		select {
		case topicErr = <-topicDone:
			return true
		default:
			return false
		}
	})
	if !errors.Is(topicErr, fsm.ErrOutcomeUnknown) || !errors.Is(topicErr, errLeaderChanged) {
		t.Fatalf("forwarded topic command: %v, want an unknown outcome cut by the change of leader", topicErr)
	}
	if _, err := propose(t, followers[0], topicCmd); !errors.Is(err, fsm.ErrTopicExists) {
		t.Fatalf("retried topic command: %v, want topic exists (it did commit)", err)
	}
	for i, f := range followers {
		res, err := propose(t, f, decodeBatch(t, batch(i, 1)))
		if err != nil || res.Duplicate || res.BaseOffset != int64(2+i) {
			t.Fatalf("next produce via %s: %+v %v, want offset %d", f.id, res, err, 2+i)
		}
	}
}

func decodeBatch(t *testing.T, b []byte) fsm.Command {
	t.Helper()
	cmd, err := fsm.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// inflightForwards is how many forwards of n are registered in flight.
func (n *testNode) inflightForwards() int {
	w := n.node.forwards
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// A forward whose request has not reached the leader (its write held by
// an hour's delay; the proposal coalescer's goroutine waits in this first
// step) ends as soon as the blackholed leader is replaced. Its class is
// the one a timeout would give: net/http reports a request written once
// it is in the connection's buffer, so it is an unknown outcome here
// (a request that had not even been buffered would be "not written").
// Nothing reached the old leader, so nothing is applied: the next produce
// through that agent gets offset 0.
func TestForwardHeldBeforeTheLeaderEndsOnNewLeader(t *testing.T) {
	c := newTestCluster(t)
	c.edit = func(cfg *Config) { cfg.ForwardTimeout = 10 * time.Minute }
	c.startBootstrapped("a", "b", "c")
	t.Cleanup(c.faults.Heal)
	lead := c.waitLeader(deadline)
	f := c.followers(lead)[0]
	// Created through f: its forward leaves an idle keep-alive connection
	// to the leader, which the next forward reuses (a new dial would time
	// out on the delayed handshake instead).
	topicID := createTopic(t, f, "t", 1)
	epoch := lead.fsmPartition(topicID, 0).LeaderEpoch
	entry := func(v string) *fsm.AppendBatch {
		b := appendOne(topicID, v)
		b.LeaderEpoch = epoch
		return b
	}

	c.faults.Delay(f.mux.Addr(), lead.mux.Addr(), time.Hour)
	done := make(chan forwardOutcome, 1)
	go func() {
		res, err := f.node.StartPropose(context.Background(), fsm.Encode(entry("cut")))()
		done <- forwardOutcome{via: f, res: res, err: err}
	}()
	waitFor(t, deadline, "the forward to be in flight", func() bool { return f.inflightForwards() == 1 })
	c.faults.Blackhole(lead.mux.Addr())
	newLead := c.waitLeaderOf(deadline, c.except(lead.id))
	var o forwardOutcome
	waitFor(t, deadline, "the held forward to end (ForwardTimeout is 10 min)", func() bool {
		select {
		case o = <-done:
			return true
		default:
			return false
		}
	})
	t.Logf("forward via %s ended (new leader %s): %v", f.id, newLead.id, o.err)
	if !errors.Is(o.err, fsm.ErrOutcomeUnknown) || !errors.Is(o.err, errLeaderChanged) {
		t.Fatalf("held forward: %v %v, want an unknown outcome cut by the change of leader", o.res, o.err)
	}
	if n := f.inflightForwards(); n != 0 {
		t.Fatalf("%d forwards still registered", n)
	}
	res, err := propose(t, f, entry("next"))
	if err != nil || res.BaseOffset != 0 {
		t.Fatalf("next produce via %s: %+v %v, want offset 0 (the cut one was never written)", f.id, res, err)
	}
}

// A forward to a replaced leader that ends within the grace keeps the old
// leader's answer; one that does not is cut when the grace has passed.
func TestForwardWatchGraceKeepsALateAnswer(t *testing.T) {
	w := newForwardWatch()
	w.grace = time.Hour
	now := func() string { return "x" }
	ctx, done := w.track(context.Background(), "x", now)
	if w.leaderIs("y") != 1 {
		t.Fatal("the forward to x was not marked when y became leader")
	}
	if ctx.Err() != nil {
		t.Fatalf("cut before the grace passed: %v", context.Cause(ctx))
	}
	done() // the old leader's answer arrived
	if errors.Is(context.Cause(ctx), errLeaderChanged) {
		t.Fatal("a forward answered within the grace was reported cut")
	}

	w.grace = time.Millisecond
	ctx, done = w.track(context.Background(), "x", now)
	defer done()
	w.leaderIs("y")
	waitFor(t, deadline, "the cut after the grace", func() bool { return errors.Is(context.Cause(ctx), errLeaderChanged) })
}

func TestForwardWatchCancelsOnlyForAnotherLeader(t *testing.T) {
	w := newForwardWatch()
	w.grace = 0
	leader := "x"
	now := func() string { return leader }
	ctx, done := w.track(context.Background(), "x", now)
	if w.leaderIs("") != 0 || w.leaderIs("x") != 0 || ctx.Err() != nil {
		t.Fatal("a forward was cut without another leader")
	}
	if w.leaderIs("y") != 1 || !errors.Is(context.Cause(ctx), errLeaderChanged) {
		t.Fatalf("forward to x after leader y: cause %v", context.Cause(ctx))
	}
	done()
	// Registered after the change: the current leader is checked.
	leader = "y"
	ctx, done = w.track(context.Background(), "x", now)
	defer done()
	if !errors.Is(context.Cause(ctx), errLeaderChanged) {
		t.Fatalf("forward registered after the change: cause %v", context.Cause(ctx))
	}
	_, done2 := w.track(context.Background(), "y", now)
	done2()
	if n := len(w.inflight); n != 0 {
		t.Fatalf("%d forwards registered after they ended", n)
	}

	// The class is kept, the cause added once.
	err := withLeaderCut(ctx, fmt.Errorf("%w: no answer", fsm.ErrOutcomeUnknown))
	if !errors.Is(err, fsm.ErrOutcomeUnknown) || !errors.Is(err, errLeaderChanged) {
		t.Fatalf("cut forward error %v", err)
	}
	named := fmt.Errorf("%w: no answer: %v", fsm.ErrUnavailable, context.Cause(ctx))
	if err := withLeaderCut(ctx, named); !errors.Is(err, fsm.ErrUnavailable) || !errors.Is(err, errLeaderChanged) || err.Error() != named.Error() {
		t.Fatalf("cut forward error whose text names the cause: %v", err)
	}
	if err := withLeaderCut(context.Background(), fsm.ErrUnavailable); errors.Is(err, errLeaderChanged) {
		t.Fatalf("forward not cut: %v", err)
	}
}

// A forward names the term in which its agent knew the leader; the leader
// refuses it in any other term as not applied, so a forward cut for a new
// leader and delivered late cannot be applied after its caller was
// answered.
func TestForwardOfAnotherTermIsRefused(t *testing.T) {
	c := newTestCluster(t)
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	topicID := createTopic(t, lead, "t", 1)
	epoch := lead.fsmPartition(topicID, 0).LeaderEpoch
	entry := func(v string) []byte {
		b := appendOne(topicID, v)
		b.LeaderEpoch = epoch
		return fsm.Encode(b)
	}
	term := lead.node.r().CurrentTerm()
	client := c.followers(lead)[0].node.peer.RPCClient() // the authenticated peer channel
	for _, other := range []uint64{term - 1, term + 1} {
		_, _, outcome, err := sendApply(context.Background(), client, lead.mux.Addr(), lead.id, entry("other"), 0, other)()
		if !errors.Is(err, fsm.ErrUnavailable) || outcome != outcomeNotApplied {
			t.Fatalf("forward of term %d to the leader of term %d: %s %v, want not applied", other, term, outcome, err)
		}
	}
	res, _, _, err := sendApply(context.Background(), client, lead.mux.Addr(), lead.id, entry("same"), 0, term)()
	if err != nil || res.BaseOffset != 0 {
		t.Fatalf("forward of the leader's own term: %+v %v, want offset 0 (the refused ones were not applied)", res, err)
	}
}

func TestForwardTermDiffers(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, PeerApplyPath, nil)
	if differs, _, _ := forwardTermDiffers(req, 7); differs {
		t.Fatal("a forward without a term (an older agent) was refused")
	}
	for v, want := range map[string]bool{"7": false, "6": true, "8": true, "0": true, "x": true} {
		req.Header.Set(forwardTermHeader, v)
		if differs, _, _ := forwardTermDiffers(req, 7); differs != want {
			t.Errorf("term header %q at term 7: differs %v, want %v", v, differs, want)
		}
	}
}
