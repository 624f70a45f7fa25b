package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ObjectStore is the part of the cluster's object store the leader uses to
// check that an agent shares it (implemented by s3seg.ObjectStore).
type ObjectStore interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// PeerProbeStorePath is the peer route on which the leader asks an agent
// to read back a probe object it wrote.
const PeerProbeStorePath = "/peer/v1/probe-store"

// storeProbeKeyPrefix is where probe objects live: outside "segments/", so
// segment GC and DR restore never look at them.
const storeProbeKeyPrefix = "cluster-probes/"

// storeRecheck is how long the leader waits before probing an agent again
// after a failed probe of the same incarnation.
const storeRecheck = 10 * time.Second

// probeRequest is the body of POST /peer/v1/probe-store.
type probeRequest struct {
	NodeID   string `json:"node_id"`
	Instance string `json:"instance"`
	Leader   string `json:"leader"`
	Key      string `json:"key"`
	SHA256   string `json:"sha256"`
	// Term and Seq order the leader's probes (its Raft term, then a counter
	// of the leader process): a probe delivered late — held in a cut link
	// after the leader gave up on it and deleted its object — is older than
	// a verdict the agent already has and must not overwrite it. 0: a
	// leader that does not send them (every verdict counts).
	Term uint64 `json:"term,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
}

// errStoreNotShared marks a probe the agent answered: it cannot read what
// the leader wrote.
var errStoreNotShared = errors.New("object store not shared with the cluster")

// errProbeInterrupted marks a probe read that did not finish before the
// probe request ended or timed out: it says nothing about the store.
var errProbeInterrupted = errors.New("object store probe interrupted")

// errLeaderStore marks a probe that failed on the leader's side: it could
// not write the probe object (an object store outage).
var errLeaderStore = errors.New("the raft leader cannot write a probe object")

// storeCheck is the leader's memory of one agent's probe.
type storeCheck struct {
	instance string
	err      error
	at       time.Time
}

// verifyStore reports whether agent id (incarnation instance, peer address
// peer) reads the cluster's object store. Without an ObjectStore (tests) it
// always does. A success is remembered for the term, a failure for
// storeRecheck; a failure to write the probe object holds back every probe
// for storeRecheck, so an object store outage stalls the leader loop for at
// most one write timeout per storeRecheck.
func (l *leaderState) verifyStore(ctx context.Context, id, peer, instance string) error {
	n := l.n
	if n.cfg.Objects == nil {
		return nil
	}
	if c := l.storeDown; c.err != nil && time.Since(c.at) < storeRecheck {
		return c.err
	}
	if c, ok := l.stores[id]; ok && c.instance == instance && (c.err == nil || time.Since(c.at) < storeRecheck) {
		return c.err
	}
	err := n.probeStore(ctx, id, peer, instance)
	if errors.Is(err, errLeaderStore) {
		l.storeDown = storeCheck{err: err, at: time.Now()}
		return err
	}
	l.stores[id] = storeCheck{instance: instance, err: err, at: time.Now()}
	return err
}

// probeStore writes a probe object, asks the agent to read it back, and
// deletes it.
func (n *Node) probeStore(ctx context.Context, id, peer, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*n.cfg.RPCTimeout)
	defer cancel()
	cluster := n.identity().Cluster
	key := storeProbeKeyPrefix + cluster + "/" + instance + "-" + randomID()
	body := []byte(fmt.Sprintf("streamhouse object store probe: leader %s, agent %s, instance %s, %s\n", n.cfg.NodeID, id, instance, randomID()))
	pctx, pcancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	err := n.cfg.Objects.Put(pctx, key, body)
	pcancel()
	if err != nil {
		return fmt.Errorf("%w: %v", errLeaderStore, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), n.cfg.RPCTimeout)
		defer dcancel()
		if err := n.cfg.Objects.Delete(dctx, key); err != nil {
			n.log.Warn("cannot delete an object store probe", "key", key, "err", err)
		}
	}()
	sum := sha256.Sum256(body)
	var term uint64
	if r := n.r(); r != nil {
		term = r.CurrentTerm()
	}
	err = n.postJSON(ctx, peer, PeerProbeStorePath, probeRequest{
		NodeID: id, Instance: instance, Leader: n.cfg.NodeID, Key: key, SHA256: hex.EncodeToString(sum[:]),
		Term: term, Seq: n.probeSeq.Add(1),
	})
	if err != nil {
		return fmt.Errorf("store probe of %s: %w", id, err)
	}
	return nil
}

// handleProbeStore is the agent side: read the leader's probe object back
// from this agent's own object store and compare it. The outcome is kept
// for /ready.
func (n *Node) handleProbeStore(w http.ResponseWriter, req *http.Request) {
	if !n.started.Load() || n.closed.Load() {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, ErrNotStarted)
		return
	}
	var p probeRequest
	if err := json.NewDecoder(io.LimitReader(req.Body, 4096)).Decode(&p); err != nil || p.Key == "" {
		writeRPCError(w, http.StatusBadRequest, outcomeInvalid, fmt.Errorf("bad store probe: %v", err))
		return
	}
	if cur := n.identity(); p.NodeID != n.cfg.NodeID || p.Instance != cur.Instance {
		writeRPCError(w, http.StatusConflict, outcomeNotApplied,
			fmt.Errorf("store probe for %s/%s, this is %s/%s", p.NodeID, p.Instance, n.cfg.NodeID, cur.Instance))
		return
	}
	if r := n.r(); r != nil && r.State() == raft.Leader {
		// The leader's store is the reference: a probe reaching it comes
		// from a replaced leader (held in a cut link, its object possibly
		// deleted), and nobody would ever probe the leader to clear it.
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied,
			fmt.Errorf("store probe of term %d from %s reached the raft leader: ignored", p.Term, p.Leader))
		return
	}
	err := n.readProbe(req.Context(), p)
	if errors.Is(err, errProbeInterrupted) {
		// The read did not finish in time: no verdict either way, and the
		// last one stands until the leader probes again.
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied, err)
		return
	}
	if !n.storeProblem.setFrom(err, p.Term, p.Seq) {
		writeRPCError(w, http.StatusServiceUnavailable, outcomeNotApplied,
			fmt.Errorf("store probe of term %d (#%d) is older than the last verdict: ignored", p.Term, p.Seq))
		return
	}
	if err != nil {
		n.log.Error("cannot read the raft leader's probe object: this agent does not share the cluster's object store and is not admitted",
			"leader", p.Leader, "key", p.Key, "err", err)
		writeRPCError(w, http.StatusConflict, outcomeNotApplied, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (n *Node) readProbe(ctx context.Context, p probeRequest) error {
	hint := "every agent of a cluster must use the same S3_BUCKET (and S3_ENDPOINT), or an OBJECT_STORE_DIR on storage they all share"
	if n.cfg.Objects == nil {
		return fmt.Errorf("%w: this agent has no object store to read probe object %s from", errStoreNotShared, p.Key)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	defer cancel()
	b, err := n.cfg.Objects.Get(ctx, p.Key)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: reading probe object %s: %v", errProbeInterrupted, p.Key, err)
	}
	if err != nil {
		return fmt.Errorf("%w: probe object %s written by raft leader %s cannot be read here (%v); %s", errStoreNotShared, p.Key, p.Leader, err, hint)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != p.SHA256 {
		return fmt.Errorf("%w: probe object %s written by raft leader %s reads back different bytes here; %s", errStoreNotShared, p.Key, p.Leader, hint)
	}
	return nil
}

// problemNote holds the last store probe failure this agent saw ("" when
// the last probe passed or none ran).
type problemNote struct {
	mu        sync.Mutex
	msg       string
	term, seq uint64 // the newest probe that gave a verdict
}

// clearFor clears the note as this agent becomes the leader of term: no
// probe of term or earlier — one whose read was still running when the
// election ended, from a replaced leader — may set it again, nor one
// without a term, until a leader of a later term probes. A verdict of a
// later term stands: this node no longer leads (it was paused after
// winning, and another agent won the next election meanwhile).
func (p *problemNote) clearFor(term uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if term < p.term {
		return
	}
	p.msg, p.term, p.seq = "", term, math.MaxUint64
}

// setFrom records the verdict of the probe (term, seq) unless a newer
// probe already gave one; it reports whether it did. A probe without a
// term (an older leader) counts unless the note was cleared by clearFor
// and no later leader has probed since.
func (p *problemNote) setFrom(err error, term, seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if term == 0 && p.seq == math.MaxUint64 {
		return false
	}
	if term != 0 {
		if term < p.term || (term == p.term && seq <= p.seq) {
			return false
		}
		p.term, p.seq = term, seq
	}
	// Under the same lock as the check: a newer verdict, or clearFor,
	// between the two would otherwise be overwritten by this older one.
	p.msg = ""
	if err != nil {
		p.msg = err.Error()
	}
	return true
}

func (p *problemNote) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.msg
}

// checkMemberStores probes, once per leadership term and incarnation, every
// live Raft member that is already admitted (founders never went through
// admission): one that cannot read the store is not removed — it holds Raft
// state the group may need — but it reports the problem on /ready, and the
// leader logs it.
func (l *leaderState) checkMemberStores(ctx context.Context) {
	n := l.n
	if n.cfg.Objects == nil {
		return
	}
	servers, err := n.configuration()
	if err != nil {
		return
	}
	members := n.gossip.snapshot()
	for _, s := range sortedServers(servers) {
		id := string(s.ID)
		m, ok := members[id]
		if id == n.cfg.NodeID || !ok || m.State != StateAlive || !m.MetaOK || !m.Meta.Admitted || m.Meta.Peer == "" {
			continue
		}
		if err := l.verifyStore(ctx, id, m.Meta.Peer, m.Meta.Instance); err != nil {
			l.warnEvery("store:"+id, "object store probe of a raft member failed (if it cannot read the store, it reports not ready)", "node", id, "err", err)
		}
	}
}
