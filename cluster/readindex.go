package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// PeerReadIndexPath is the peer RPC a follower uses to learn the Raft
// leader's read index.
const PeerReadIndexPath = "/peer/v1/read-index"

type readIndexAnswer struct {
	Index uint64 `json:"index"`
}

// leaderReadIndex is the Raft read-index protocol on the leader: note the
// index, then confirm leadership with a heartbeat round. The index is the
// last command the leader's FSM applied, not Raft's commit index: a write
// is acknowledged only after the leader applied it, so every write
// acknowledged before the call is at or below it, and a follower can wait
// for that same command index in its own FSM. (Raft's AppliedIndex is
// advanced when entries are handed to the FSM goroutine, before they are
// applied, and the commit index may name a no-op the FSM never sees; the
// jepsen harness caught a read older than an acknowledged commit through
// the first.)
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	r := n.r()
	if r == nil || r.State() != raft.Leader {
		return 0, fmt.Errorf("agent %s is not the raft leader", n.cfg.NodeID)
	}
	if !n.leaderReady.Load() {
		return 0, errors.New("raft leader is applying the log from earlier terms")
	}
	idx := n.fsm.LastApplied()
	if err := n.await(ctx, r.VerifyLeader()); err != nil {
		return 0, fmt.Errorf("verifying raft leadership: %w", err)
	}
	return idx, nil
}

func (n *Node) handleReadIndex(w http.ResponseWriter, req *http.Request) {
	idx, err := n.leaderReadIndex(req.Context())
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, err)
		return
	}
	writeJSON(w, http.StatusOK, readIndexAnswer{Index: idx})
}

// SyncRead waits until this agent has applied every entry committed before
// the call, so that what it reads next is at least as new as any
// acknowledged write (a linearizable read point). An agent that restarted
// and is still replaying, or a follower that lags, catches up first. Errors
// wrap fsm.ErrUnavailable: no leader, leader unreachable, or not caught up
// within ApplyTimeout.
func (n *Node) SyncRead(ctx context.Context) error {
	r := n.r()
	if r == nil {
		return fmt.Errorf("%w: raft not started", fsm.ErrUnavailable)
	}
	var idx uint64
	var err error
	if r.State() == raft.Leader {
		idx, err = n.leaderReadIndex(ctx)
	} else {
		idx, err = n.remoteReadIndex(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	}
	wctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if !n.waitApplied(wctx, idx) {
		return fmt.Errorf("%w: this agent has applied the raft log to %d of %d; catching up", fsm.ErrUnavailable, n.fsm.LastApplied(), idx)
	}
	return nil
}

func (n *Node) remoteReadIndex(ctx context.Context) (uint64, error) {
	addr, id := n.r().LeaderWithID()
	if addr == "" {
		return 0, errors.New("no raft leader known")
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	defer cancel()
	// Like a forward, the question ends once another leader is known.
	ctx, done := n.forwards.track(ctx, string(id), n.currentLeaderID)
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+string(addr)+PeerReadIndexPath, nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.peer.RPCClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("asking raft leader %s for its read index: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		return 0, fmt.Errorf("raft leader %s answered %d: %s", id, resp.StatusCode, e.Error)
	}
	var a readIndexAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return 0, fmt.Errorf("read index from %s: %w", id, err)
	}
	return a.Index, nil
}
