package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Forwards end when their leader is replaced (DESIGN.md, "A forward ends
// when its leader is replaced"). A forward is sent to the Raft leader this
// agent knows; a leader cut off without its connections being closed
// answers nothing, and the forward would wait for ForwardTimeout while the
// proposal coalescer's slots stay taken. Every forward in flight is
// therefore registered here with its target, and cancelled, with
// errLeaderChanged as the cause, as soon as this agent knows another
// leader — another agent, or itself — and forwardCutGrace has passed
// without its answer.

// forwardCutGrace is how long a forward to a replaced leader may still
// end with the old leader's answer before it is cut. A leader that
// handed leadership over on purpose (a transfer on leave) still answers
// entries it committed and is applying; only a leader that went silent
// needs the cut. It costs a silent leader's forwards this much on top of
// the election.
const forwardCutGrace = 500 * time.Millisecond

// forwardWatch is the set of forwards in flight, by target leader.
type forwardWatch struct {
	grace    time.Duration // forwardCutGrace; tests shorten it
	mu       sync.Mutex
	inflight map[*trackedForward]struct{}
}

type trackedForward struct {
	target string // node ID of the leader the forward was sent to
	cancel context.CancelCauseFunc
}

func newForwardWatch() *forwardWatch {
	return &forwardWatch{grace: forwardCutGrace, inflight: map[*trackedForward]struct{}{}}
}

// track returns a context derived from ctx that is cancelled, with a
// cause wrapping errLeaderChanged, once leader() names a leader other
// than target; done must be called when the forward ends. The current
// leader is checked after registration, so a change that happened before
// is not missed (later ones arrive through leaderIs).
func (w *forwardWatch) track(ctx context.Context, target string, leader func() string) (context.Context, func()) {
	fctx, cancel := context.WithCancelCause(ctx)
	f := &trackedForward{target: target, cancel: cancel}
	w.mu.Lock()
	w.inflight[f] = struct{}{}
	w.mu.Unlock()
	if now := leader(); now != "" && now != target {
		w.mu.Lock()
		delete(w.inflight, f)
		w.mu.Unlock()
		cancel(leaderChanged(target, now))
	}
	return fctx, func() {
		w.mu.Lock()
		delete(w.inflight, f)
		w.mu.Unlock()
		cancel(nil)
	}
}

// leaderIs cancels every forward in flight to another leader than id,
// after w.grace unless it ended meanwhile ("" — no leader known, an
// election under way — cancels nothing: the old leader may still answer).
// It returns how many it marked for the cut.
func (w *forwardWatch) leaderIs(id string) int {
	if id == "" {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for f := range w.inflight {
		if f.target != id {
			cause := leaderChanged(f.target, id)
			if w.grace <= 0 {
				f.cancel(cause)
			} else {
				// A forward that ended meanwhile was cancelled without a
				// cause by its done; this is then a no-op.
				time.AfterFunc(w.grace, func() { f.cancel(cause) })
			}
			delete(w.inflight, f)
			n++
		}
	}
	return n
}

func leaderChanged(from, to string) error {
	return fmt.Errorf("%w (forwarded to %s, the raft leader is now %s)", errLeaderChanged, from, to)
}

// leaderObserver registers a Raft observer of leader changes. It is
// non-blocking: an observation only wakes watchLeader, which reads the
// current leader from Raft, so one that is dropped while others are
// queued, or one that is stale, cannot mislead it.
func (n *Node) leaderObserver() (*raft.Observer, <-chan raft.Observation) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.r().RegisterObserver(obs)
	return obs, ch
}

// watchLeader cancels the forwards to a replaced leader on every
// observed change of leader, until ctx ends.
func (n *Node) watchLeader(ctx context.Context, obs *raft.Observer, ch <-chan raft.Observation) {
	defer n.wg.Done()
	defer n.r().DeregisterObserver(obs)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		id := n.currentLeaderID()
		if cut := n.forwards.leaderIs(id); cut > 0 {
			n.log.Info("ended forwards to the previous raft leader", "forwards", cut, "leader", id,
				"why", "their answers would come from a leader that was replaced")
		}
	}
}

// currentLeaderID is the node ID of the Raft leader this agent knows.
func (n *Node) currentLeaderID() string {
	_, id := n.r().LeaderWithID()
	return string(id)
}

// withLeaderCut adds the cause to err (keeping err's class) when ctx was
// ended by a change of leader and err does not say so yet.
func withLeaderCut(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if !errors.Is(cause, errLeaderChanged) || errors.Is(err, errLeaderChanged) {
		return err
	}
	if strings.Contains(err.Error(), cause.Error()) {
		// net/http put the cause's text in err; keep the text once.
		return &leaderCutError{err: err, cause: cause}
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// leaderCutError is err, whose text already names cause, wrapping both.
type leaderCutError struct{ err, cause error }

func (e *leaderCutError) Error() string   { return e.err.Error() }
func (e *leaderCutError) Unwrap() []error { return []error{e.err, e.cause} }
