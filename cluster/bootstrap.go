package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// bootstrapPlan is the outcome of looking at gossip for a BootstrapExpect
// bootstrap.
type bootstrapPlan struct {
	ready    bool
	existing bool       // an agent that belongs to a cluster is visible
	servers  []nodeMeta // sorted by ID when ready
	reason   string     // why not ready
}

// key identifies the planned configuration, to check it stays unchanged.
func (p bootstrapPlan) key() string {
	parts := make([]string, len(p.servers))
	for i, s := range p.servers {
		parts[i] = s.ID + "@" + s.Peer + "/" + s.Instance
	}
	return strings.Join(parts, ",")
}

// planBootstrap decides whether self can bootstrap a BootstrapExpect
// cluster: exactly expect live agents with the same BootstrapExpect, none
// of any existing cluster, self among them, and no live agent expecting a
// different count. Agents without BootstrapExpect (joiners) are ignored;
// the leader adds them later. Every agent computes the same plan from the
// same gossip view, so they bootstrap identical configurations.
func planBootstrap(self string, expect int, members map[string]gossipMember) bootstrapPlan {
	var cands []nodeMeta
	for _, m := range members {
		if m.State != StateAlive {
			continue
		}
		if !m.MetaOK {
			return bootstrapPlan{reason: fmt.Sprintf("agent %s has no readable gossip metadata yet", m.Name)}
		}
		switch {
		case m.Meta.Expect == expect:
			cands = append(cands, m.Meta)
		case m.Meta.Cluster != "":
			return bootstrapPlan{existing: true, reason: fmt.Sprintf("agent %s already belongs to cluster %s", m.Name, m.Meta.Cluster)}
		case m.Meta.Expect > 1:
			return bootstrapPlan{reason: fmt.Sprintf("agent %s expects %d agents, this one %d: fix BOOTSTRAP_EXPECT", m.Name, m.Meta.Expect, expect)}
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ID < cands[j].ID })
	switch {
	case len(cands) < expect:
		return bootstrapPlan{reason: fmt.Sprintf("%d of %d expected agents visible", len(cands), expect)}
	case len(cands) > expect:
		return bootstrapPlan{reason: fmt.Sprintf("%d agents with BOOTSTRAP_EXPECT=%d visible; refusing to guess which ones form the cluster", len(cands), expect)}
	}
	// A candidate that already bootstrapped this very set carries the
	// cluster ID derived from it; any other cluster ID means the cluster
	// exists without us.
	cid := bootstrapClusterID(cands)
	for _, c := range cands {
		if c.Cluster != "" && c.Cluster != cid {
			return bootstrapPlan{existing: true, reason: fmt.Sprintf("agent %s already belongs to cluster %s", c.ID, c.Cluster)}
		}
		if c.Peer == "" {
			return bootstrapPlan{reason: fmt.Sprintf("agent %s advertises no peer address", c.ID)}
		}
	}
	if i := sort.Search(len(cands), func(i int) bool { return cands[i].ID >= self }); i == len(cands) || cands[i].ID != self {
		return bootstrapPlan{reason: "this agent is not among the expected agents"}
	}
	return bootstrapPlan{ready: true, servers: cands}
}

// bootstrap bootstraps Raft with the given voters (DESIGN.md, "Bootstrap
// rules"): the identity names the cluster and says founding, not yet
// admitted, so the Raft gate stays closed; BootstrapCluster writes the
// term and the configuration entry; only then is the identity admitted
// (the gate opens). A restart after any of these steps finishes or
// restarts the bootstrap as the same instance (loadIdentity,
// discardUnfinishedBootstrap). ErrCantBootstrap with a log (state exists
// already) is not an error.
func (n *Node) bootstrap(ctx context.Context, servers []nodeMeta, clusterID string) error {
	if cur := n.identity(); cur.Admitted && cur.Cluster != "" && cur.Cluster != clusterID {
		return fmt.Errorf("cluster: not bootstrapping %s: this agent was admitted to cluster %s meanwhile", clusterID, cur.Cluster)
	}
	if err := n.updateIdentity(func(id *identity) {
		if !id.Admitted {
			id.Cluster, id.Founding, id.Legacy, id.Version = clusterID, true, false, identityVersion
		}
	}); err != nil {
		return err
	}
	if err := n.bootstrapStep("identity"); err != nil {
		return err
	}
	cfg := raft.Configuration{}
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Peer)})
	}
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = s.ID
	}
	n.log.Info("bootstrapping raft group", "voters", ids, "cluster", clusterID)
	// await, not Error: Raft drops the future unanswered when it shuts
	// down in the middle (a stop while a full disk holds the term write).
	err := n.await(ctx, n.r().BootstrapCluster(cfg))
	if errors.Is(err, raft.ErrCantBootstrap) && n.hasRaftState() {
		err = nil
	}
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, raft.ErrRaftShutdown) {
			n.abandonFounding()
		}
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	return n.finishBootstrap()
}

// abandonFounding drops the founding identity of a BootstrapCluster that
// failed while the agent runs — raft's bootstrap fails only before it
// writes anything (a failed read; a failed write is retried in place) —
// back to "never admitted, no cluster", so that its gossip does not keep
// naming the planned ID (a new plan with other co-founders took it for an
// existing cluster). The check and the reset are one identity update: an
// admission (which opens the gate, under the same lock) wins over it.
func (n *Node) abandonFounding() {
	if n.hasRaftState() {
		return
	}
	if err := n.updateIdentity(func(id *identity) {
		if id.Founding && !id.Admitted {
			id.Cluster, id.Founding = "", false
		}
	}); err != nil {
		n.log.Error("cannot reset the identity of a failed bootstrap", "err", err)
	}
}

// finishBootstrap admits a founding identity once its Raft state is
// written (the gate opens), and lets a sole voter elect itself.
func (n *Node) finishBootstrap() error {
	if err := n.bootstrapStep("bootstrapped"); err != nil {
		return err
	}
	if err := n.updateIdentity(func(id *identity) {
		if id.Founding {
			id.Admitted, id.Founding = true, false
		}
	}); err != nil {
		return err
	}
	n.electIfSoleVoter()
	return nil
}

// bootstrapLoop waits, on a node without Raft state, until planBootstrap
// says go and the plan has stayed the same for BootstrapSettle, then
// bootstraps. It ends when the node bootstrapped or a leader admitted it.
// (Until one of those, the Raft gate keeps every Raft RPC away, so a
// co-founder's leader cannot replicate to it first.)
func (n *Node) bootstrapLoop(ctx context.Context) {
	defer n.wg.Done()
	tick := time.NewTicker(min(max(n.cfg.BootstrapSettle/4, 10*time.Millisecond), 100*time.Millisecond))
	defer tick.Stop()
	var (
		lastKey    string
		since      time.Time
		lastReason string
	)
	for {
		if n.hasRaftState() && n.identity().Founding {
			// BootstrapCluster ran but the identity write after it failed.
			if err := n.finishBootstrap(); err != nil {
				n.log.Error("bootstrap failed; retrying", "err", err)
				lastKey = ""
			}
		}
		if (n.hasRaftState() && !n.identity().Founding) || n.identity().Admitted {
			return
		}
		changed := n.gossip.changedCh()
		plan := planBootstrap(n.cfg.NodeID, n.cfg.BootstrapExpect, n.gossip.snapshot())
		if plan.ready && !n.gossip.joinTried.Load() {
			// Look at whom JOIN reaches before deciding we are alone.
			plan = bootstrapPlan{reason: "joining the JOIN addresses first"}
		}
		switch {
		case plan.ready:
			if k := plan.key(); k != lastKey {
				lastKey, since = k, time.Now()
			} else if time.Since(since) >= n.cfg.BootstrapSettle {
				if err := n.bootstrap(ctx, plan.servers, bootstrapClusterID(plan.servers)); err != nil {
					n.log.Error("bootstrap failed; retrying", "err", err)
					lastKey = ""
					break
				}
				return
			}
		default:
			lastKey = ""
			if plan.reason != lastReason {
				lastReason = plan.reason
				if plan.existing {
					n.log.Info("an existing cluster is visible; waiting to be added by its leader", "why", plan.reason)
				} else {
					n.log.Info("waiting to bootstrap", "bootstrap_expect", n.cfg.BootstrapExpect, "why", plan.reason)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// bootstrapStep calls the test hook after a bootstrap step.
func (n *Node) bootstrapStep(step string) error {
	if n.cfg.bootstrapStep == nil {
		return nil
	}
	return n.cfg.bootstrapStep(n, step)
}
