package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// Peer RPC routes served by RPCHandler.
const (
	PeerStatusPath = "/peer/v1/status"
	PeerApplyPath  = "/peer/v1/apply"
	PeerAdmitPath  = "/peer/v1/admit"
	PeerLeavePath  = "/peer/v1/leave"
)

// maxApplyBody bounds a forwarded command.
const maxApplyBody = 256 << 20

// Outcome classes of a failed forwarded proposal, carried in the error body
// so the forwarding agent restores the right fsm sentinel.
const (
	outcomeNotApplied = "not_applied" // fsm.ErrUnavailable
	outcomeUnknown    = "unknown"     // fsm.ErrOutcomeUnknown
	outcomeInvalid    = "invalid"     // fsm.ErrInvalidCommand (never applied)
	outcomeOK         = "ok"          // applied (metric label only)
)

type rpcError struct {
	Error   string `json:"error"`
	Outcome string `json:"outcome"`
}

// RPCHandler returns the handler of this node's peer RPC routes (GET
// /peer/v1/status, POST /peer/v1/apply, /peer/v1/admit, /peer/v1/leave). The agent
// installs it, combined with its other peer routes, on the peer mux. It
// answers 503 until Start.
func (n *Node) RPCHandler() http.Handler { return n.rpc }

func (n *Node) newRPCMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PeerStatusPath, n.handleStatus)
	mux.HandleFunc("POST "+PeerApplyPath, n.handleApply)
	mux.HandleFunc("POST "+PeerReadIndexPath, n.handleReadIndex)
	mux.HandleFunc("POST "+PeerAdmitPath, n.handleAdmit)
	mux.HandleFunc("POST "+PeerLeavePath, n.handleLeave)
	mux.HandleFunc("POST "+PeerProbeStorePath, n.handleProbeStore)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeRPCError(w http.ResponseWriter, status int, outcome string, err error) {
	writeJSON(w, status, rpcError{Error: err.Error(), Outcome: outcome})
}

func (n *Node) handleStatus(w http.ResponseWriter, _ *http.Request) {
	if !n.started.Load() {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, ErrNotStarted)
		return
	}
	writeJSON(w, http.StatusOK, n.Status())
}

// handleApply is the leader side of forwarding: it validates the command
// and applies it locally. It never forwards again: if this node is no
// longer the leader it answers "not applied".
func (n *Node) handleApply(w http.ResponseWriter, req *http.Request) {
	body, err := transport.ReadBody(req, maxApplyBody)
	switch {
	case err != nil:
		writeRPCError(w, http.StatusBadRequest, outcomeNotApplied, fmt.Errorf("reading the command: %w", err))
		return
	case len(body) > maxApplyBody:
		writeRPCError(w, http.StatusRequestEntityTooLarge, outcomeInvalid, fmt.Errorf("command larger than %d bytes", maxApplyBody))
		return
	}
	if _, err := fsm.Decode(body); err != nil {
		writeRPCError(w, http.StatusBadRequest, outcomeInvalid, err)
		return
	}
	r := n.r()
	if r == nil || !n.started.Load() || n.closed.Load() {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, errors.New("agent not running"))
		return
	}
	if r.State() != raft.Leader {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, fmt.Errorf("agent %s is not the raft leader", n.cfg.NodeID))
		return
	}
	if other, term, now := forwardTermDiffers(req, r.CurrentTerm()); other {
		err := fmt.Errorf("forwarded to the raft leader of term %d; this agent leads term %d; not applied", term, now)
		n.log.Warn("refused a forwarded command of another term", "err", err)
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, err)
		return
	}
	if late, deadline := forwardExpired(req, n.fsm.Clock()); late {
		err := fmt.Errorf("forwarded command arrived after the caller's deadline (cluster time %d, clock %d); not applied", deadline, n.fsm.Clock())
		n.log.Warn("refused a late forwarded command", "err", err)
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, err)
		return
	}
	if req.Header.Get(applyEarlyHeader) != "" {
		n.applyEarly(w, req, r, body)
		return
	}
	res, index, err := n.applyLocal(req.Context(), body)
	if err != nil {
		outcome := outcomeUnknown
		if errors.Is(err, fsm.ErrUnavailable) {
			outcome = outcomeNotApplied
		}
		writeRPCError(w, http.StatusServiceUnavailable, outcome, err)
		return
	}
	b, err := EncodeResult(res)
	if err != nil {
		writeRPCError(w, http.StatusInternalServerError, outcomeUnknown, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(raftIndexHeader, strconv.FormatUint(index, 10))
	_, _ = w.Write(b)
}

// raftIndexHeader carries the Raft index of a forwarded command's entry, so
// the forwarding agent can wait until it applied it too.
const raftIndexHeader = "Streamhouse-Raft-Index"

// admitRequest is the body of POST /peer/v1/admit: the leader tells a
// non-voter that its current incarnation is a member of the cluster.
type admitRequest struct {
	NodeID   string `json:"node_id"`
	Instance string `json:"instance"`
	Cluster  string `json:"cluster"`
	Legacy   bool   `json:"legacy,omitempty"` // the leader's identity is legacy: so is the admitted one's
	// Version is identityVersion from a leader of this release; a request
	// without it comes from an earlier release, whose identity may be one
	// of several names of its group: the admitted identity is legacy.
	Version int `json:"version,omitempty"`
}

func (n *Node) handleAdmit(w http.ResponseWriter, req *http.Request) {
	if !n.started.Load() || n.closed.Load() {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, ErrNotStarted)
		return
	}
	var a admitRequest
	if err := json.NewDecoder(io.LimitReader(req.Body, 4096)).Decode(&a); err != nil {
		writeRPCError(w, http.StatusBadRequest, outcomeInvalid, err)
		return
	}
	cur := n.identity()
	legacy := a.Legacy || a.Version < identityVersion
	switch {
	case a.NodeID != n.cfg.NodeID || a.Instance != cur.Instance:
		writeRPCError(w, http.StatusConflict, outcomeNotApplied,
			fmt.Errorf("admission for %s/%s, this is %s/%s", a.NodeID, a.Instance, n.cfg.NodeID, cur.Instance))
		return
	// Two legacy identities may be two names of one group (DESIGN.md,
	// "Identity"): the later leader's name is taken. An agent admitted to
	// an unnamed group (an earlier release's Raft state) belongs to that
	// group: only its own, legacy, leader names it.
	case a.Cluster == "" || (cur.Cluster != "" && cur.Cluster != a.Cluster && !(cur.Legacy && legacy)) ||
		(cur.Admitted && cur.Cluster == "" && !legacy):
		writeRPCError(w, http.StatusConflict, outcomeNotApplied,
			fmt.Errorf("admission to cluster %q, this agent belongs to %q", a.Cluster, cur.Cluster))
		return
	}
	if err := n.updateIdentity(func(id *identity) {
		id.Cluster, id.Admitted, id.Founding, id.Legacy, id.Version = a.Cluster, true, false, id.Legacy || legacy, identityVersion
	}); err != nil {
		writeRPCError(w, http.StatusInternalServerError, outcomeNotApplied, err)
		return
	}
	if !cur.Admitted {
		n.log.Info("admitted to the cluster", "cluster", a.Cluster, "instance", cur.Instance)
	}
	writeJSON(w, http.StatusOK, n.Status())
}

// leaveRequest is the body of POST /peer/v1/leave: an agent asks the Raft
// leader to remove it from the group before it goes.
type leaveRequest struct {
	NodeID string `json:"node_id"`
}

// departGrace is how long the leader refrains from re-adding an agent it
// removed on request, unless gossip shows it leaving or gone sooner.
const departGrace = 10 * time.Second

func (n *Node) handleLeave(w http.ResponseWriter, req *http.Request) {
	var lr leaveRequest
	if err := json.NewDecoder(io.LimitReader(req.Body, 4096)).Decode(&lr); err != nil || lr.NodeID == "" {
		writeRPCError(w, http.StatusBadRequest, outcomeInvalid, fmt.Errorf("bad leave request: %v", err))
		return
	}
	r := n.r()
	if r == nil || !n.started.Load() || n.closed.Load() || r.State() != raft.Leader {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, fmt.Errorf("agent %s is not the raft leader", n.cfg.NodeID))
		return
	}
	if lr.NodeID == n.cfg.NodeID {
		writeRPCError(w, http.StatusConflict, outcomeNotApplied, errors.New("the raft leader does not remove itself; transfer leadership first"))
		return
	}
	servers, err := n.configuration()
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, err)
		return
	}
	var target *raft.Server
	voters, alive := 0, 0
	members := n.gossip.snapshot()
	for i, s := range servers {
		if string(s.ID) == lr.NodeID {
			target = &servers[i]
		}
		if s.Suffrage == raft.Voter {
			voters++
			if m, ok := members[string(s.ID)]; string(s.ID) == n.cfg.NodeID || (ok && m.State == StateAlive) {
				alive++
			}
		}
	}
	if target == nil {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if target.Suffrage == raft.Voter && alive-1 < quorum(voters-1) {
		writeRPCError(w, http.StatusConflict, outcomeNotApplied,
			fmt.Errorf("removing voter %s would leave %d live voters of %d, below a quorum", lr.NodeID, alive-1, voters-1))
		return
	}
	n.departMu.Lock()
	n.departing[lr.NodeID] = time.Now().Add(departGrace)
	n.departMu.Unlock()
	if err := n.await(req.Context(), r.RemoveServer(target.ID, 0, n.cfg.ApplyTimeout)); err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeUnknown, fmt.Errorf("removing %s: %w", lr.NodeID, err))
		return
	}
	n.log.Info("removed raft member", "node", lr.NodeID, "why", "it is leaving the cluster")
	n.metrics.membershipChange(changeRemove)
	writeJSON(w, http.StatusOK, struct{}{})
}

// recentlyDeparted reports whether id asked to be removed within the grace
// period.
func (n *Node) recentlyDeparted(id string) bool {
	n.departMu.Lock()
	defer n.departMu.Unlock()
	until, ok := n.departing[id]
	if ok && time.Now().After(until) {
		delete(n.departing, id)
		return false
	}
	return ok
}

// requestLeave asks the Raft leader at addr to remove this agent.
func (n *Node) requestLeave(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout+n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.postJSON(ctx, addr, PeerLeavePath, leaveRequest{NodeID: n.cfg.NodeID}); err != nil {
		return fmt.Errorf("raft leader: %w", err)
	}
	return nil
}

// postJSON posts v as JSON to a peer RPC route and turns a non-200 answer
// into an error carrying the peer's message.
func (n *Node) postJSON(ctx context.Context, addr, path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.peer.RPCClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		return fmt.Errorf("answered %d: %s", resp.StatusCode, e.Error)
	}
	return nil
}

// peerStatus fetches another agent's status.
func (n *Node) peerStatus(ctx context.Context, addr string) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+PeerStatusPath, nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := n.peer.RPCClient().Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("status of %s: HTTP %d", addr, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", addr, err)
	}
	return st, nil
}

// admit tells a non-voter it is admitted.
func (n *Node) admit(ctx context.Context, addr string, a admitRequest) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	defer cancel()
	if err := n.postJSON(ctx, addr, PeerAdmitPath, a); err != nil {
		return fmt.Errorf("admit %s: %w", a.NodeID, err)
	}
	n.log.Info("admitted non-voter", "node", a.NodeID, "instance", a.Instance)
	return nil
}

// startForward sends cmd once to the Raft leader's POST /peer/v1/apply.
// Until the request has been written nothing can have been applied
// (fsm.ErrUnavailable); after that, a missing or unreadable answer is
// fsm.ErrOutcomeUnknown. An answer from the leader carries its own class.
// net/http never resends a POST once it was written. The forward ends,
// with those classes, at the caller's deadline (else ForwardTimeout) or as
// soon as this agent knows another Raft leader (forwards.go).
//
// It works in two steps: it returns once the leader enqueued the command,
// and the returned wait (which must be called) reads the leader's answer
// and waits until this agent applied the entry too. Between the two the
// caller may forward the next command. With early (produce entries,
// ackbarrier.go) wait does not wait for this agent's apply: it records
// the index for AwaitAcked instead.
func (n *Node) startForward(ctx context.Context, cmd []byte, early bool) (wait func() (*fsm.Result, error)) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	}
	answer := n.doForward(ctx, cmd)
	return func() (*fsm.Result, error) {
		defer cancel()
		res, index, outcome, err := answer()
		if n.metrics != nil {
			n.metrics.forwarded.WithLabelValues(outcome).Inc()
		}
		if err != nil || index == 0 {
			return res, err
		}
		if early {
			n.noteAcked(index)
			return res, err
		}
		// Read your writes, within ctx and ApplyTimeout: a healthy
		// member applies within milliseconds; one that no longer
		// receives the log (removed, cut off) must not hold the caller.
		wctx, wcancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		if !n.waitApplied(wctx, index) {
			n.log.Warn("forwarded command committed but not applied locally in time", "index", index)
		}
		wcancel()
		return res, err
	}
}

// doForward sends cmd to the Raft leader and returns once the leader has
// enqueued it (or answered); answer gives the outcome. The request runs
// under a context that ends when another leader is known (forwardWatch),
// until the answer has been read.
func (n *Node) doForward(ctx context.Context, cmd []byte) (answer applyAnswer) {
	addr, id := n.r().LeaderWithID()
	if addr == "" {
		return answered(nil, 0, outcomeNotApplied, fmt.Errorf("%w: no raft leader known", fsm.ErrUnavailable))
	}
	if string(id) == n.cfg.NodeID {
		// We lost leadership between the check and now, or won it.
		return answered(nil, 0, outcomeNotApplied, fmt.Errorf("%w: raft leadership is changing", fsm.ErrUnavailable))
	}
	// The term this agent knows its leader in: the leader refuses the
	// forward in any other term (forwardterm.go), so a request the
	// network delivers after the forward was cut for a new leader can
	// never be applied.
	// The early cut relies on that refusal, so it is armed only once every
	// member applies it (a rolling upgrade has finished): an older leader
	// would apply a late request up to the caller's deadline.
	term := n.r().CurrentTerm()
	fctx, done := ctx, func() {}
	if n.gossipAt(fsm.FeatureForwardTerm) {
		fctx, done = n.forwards.track(ctx, string(id), n.currentLeaderID)
	}
	sent := sendApply(fctx, n.peer.RPCClient(), string(addr), string(id), cmd, forwardDeadline(ctx, n.fsm.Clock()), term)
	return func() (*fsm.Result, uint64, string, error) {
		defer done()
		res, index, outcome, err := sent()
		return res, index, outcome, withLeaderCut(fctx, err)
	}
}

// sendApply performs one forwarding request in two steps (applyearly.go):
// it returns once the leader has enqueued the command in Raft, or
// answered; the answer classifies its failure and gives the outcome label
// for metrics. deadline (cluster time, 0 = none) travels with it (see
// clock.go).
func sendApply(ctx context.Context, client *http.Client, addr, leaderID string, cmd []byte, deadline int64, term uint64) applyAnswer {
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	url := "http://" + addr + PeerApplyPath
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, url, bytes.NewReader(cmd))
	if err != nil {
		return answered(nil, 0, outcomeNotApplied, fmt.Errorf("%w: %v", fsm.ErrUnavailable, err))
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(applyEarlyHeader, "1")
	setForwardDeadline(req, deadline)
	setForwardTerm(req, term)
	resp, err := client.Do(req)
	if err != nil {
		if !wrote.Load() {
			return answered(nil, 0, outcomeNotApplied, fmt.Errorf("%w: forwarding to raft leader %s (%s): request not sent: %v", fsm.ErrUnavailable, leaderID, addr, err))
		}
		return answered(nil, 0, outcomeUnknown, fmt.Errorf("%w: forwarded to raft leader %s (%s), no answer: %v", fsm.ErrOutcomeUnknown, leaderID, addr, err))
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get(applyEnqueuedHeader) != "" {
		return func() (*fsm.Result, uint64, string, error) {
			defer resp.Body.Close()
			return readApplied(resp.Body, leaderID)
		}
	}
	defer resp.Body.Close()
	return answered(readApplyAnswer(resp, leaderID))
}

// readApplyAnswer classifies a one-step answer of POST /peer/v1/apply.
func readApplyAnswer(resp *http.Response, leaderID string) (*fsm.Result, uint64, string, error) {
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusOK {
		if rerr != nil {
			return nil, 0, outcomeUnknown, fmt.Errorf("%w: reading the answer of raft leader %s: %v", fsm.ErrOutcomeUnknown, leaderID, rerr)
		}
		res, err := DecodeResult(body)
		if err != nil {
			return nil, 0, outcomeUnknown, fmt.Errorf("%w: answer of raft leader %s: %v", fsm.ErrOutcomeUnknown, leaderID, err)
		}
		index, _ := strconv.ParseUint(resp.Header.Get(raftIndexHeader), 10, 64)
		return res, index, outcomeOK, nil
	}
	var e rpcError
	_ = json.Unmarshal(body, &e)
	if e.Error == "" {
		e.Error = http.StatusText(resp.StatusCode)
	}
	if e.Outcome == "" && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
		e.Outcome = outcomeNotApplied
	}
	return nil, 0, outcomeLabel(e.Outcome), classifyApplyError(e, leaderID, resp.StatusCode)
}

// classifyApplyError turns the leader's error answer into the error class
// its outcome names (anything unrecognised: outcome unknown).
func classifyApplyError(e rpcError, leaderID string, status int) error {
	switch e.Outcome {
	case outcomeNotApplied:
		return fmt.Errorf("%w: raft leader %s answered %d: %s", fsm.ErrUnavailable, leaderID, status, e.Error)
	case outcomeInvalid:
		return fmt.Errorf("%w: raft leader %s answered %d: %s", fsm.ErrInvalidCommand, leaderID, status, e.Error)
	}
	return fmt.Errorf("%w: raft leader %s answered %d: %s", fsm.ErrOutcomeUnknown, leaderID, status, e.Error)
}

// resultJSON is the wire form of an fsm.Result on peer RPC. Batches
// carries the per-batch results of an AppendBatches entry.
type resultJSON struct {
	Code       uint8        `json:"code"`
	Message    string       `json:"message,omitempty"`
	TopicID    uint64       `json:"topic_id,omitempty"`
	BaseOffset int64        `json:"base_offset,omitempty"`
	Count      int32        `json:"count,omitempty"`
	Epoch      uint64       `json:"epoch,omitempty"`
	Accepted   []bool       `json:"accepted"`
	Duplicate  bool         `json:"duplicate,omitempty"`
	Index      uint64       `json:"index,omitempty"`
	ProducerID uint64       `json:"producer_id,omitempty"`
	ProdEpoch  uint32       `json:"producer_epoch,omitempty"`
	Batches    []resultJSON `json:"batches,omitempty"`
}

func resultToJSON(r *fsm.Result) resultJSON {
	j := resultJSON{
		Code: uint8(r.Code), Message: r.Message, TopicID: r.TopicID, BaseOffset: r.BaseOffset,
		Count: r.Count, Epoch: r.Epoch, Accepted: r.Accepted,
		Duplicate: r.Duplicate, ProducerID: r.ProducerID, ProdEpoch: r.ProducerEpoch, Index: r.Index,
	}
	for i := range r.Batches {
		j.Batches = append(j.Batches, resultToJSON(&r.Batches[i]))
	}
	return j
}

func resultFromJSON(j *resultJSON) fsm.Result {
	r := fsm.Result{
		Code: fsm.Code(j.Code), Message: j.Message, TopicID: j.TopicID, BaseOffset: j.BaseOffset,
		Count: j.Count, Epoch: j.Epoch, Accepted: j.Accepted,
		Duplicate: j.Duplicate, ProducerID: j.ProducerID, ProducerEpoch: j.ProdEpoch, Index: j.Index,
	}
	if len(j.Batches) > 0 {
		r.Batches = make([]fsm.Result, len(j.Batches))
		for i := range j.Batches {
			r.Batches[i] = resultFromJSON(&j.Batches[i])
		}
	}
	return r
}

// EncodeResult encodes an apply result for peer RPC (JSON of its fields).
func EncodeResult(r *fsm.Result) ([]byte, error) {
	if r == nil {
		return nil, errors.New("cluster: nil result")
	}
	return json.Marshal(resultToJSON(r))
}

// DecodeResult decodes what EncodeResult produced.
func DecodeResult(b []byte) (*fsm.Result, error) {
	var j resultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("cluster: decode result: %w", err)
	}
	if dec.More() {
		return nil, errors.New("cluster: decode result: trailing data")
	}
	r := resultFromJSON(&j)
	return &r, nil
}
