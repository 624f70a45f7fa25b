package cluster

import (
	"context"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Kafka broker IDs live in the replicated state (fsm/brokers.go): the
// Raft leader registers every member of the Raft configuration (voters and
// non-voters, as it adds them) and unregisters a node once it is neither
// in the configuration nor alive in gossip, so a node that is briefly
// removed and re-added (a replaced incarnation) keeps its ID. An agent with
// no ID yet is not listed as a Kafka broker.

// brokerLevel is the fsm.FeatureLevel that applies RegisterBroker.
const brokerLevel = 3

// planBrokers returns the nodes to register (in the configuration without
// an ID) and to unregister (registered, out of the configuration and not
// alive in gossip), each sorted.
func planBrokers(servers []raft.Server, members map[string]gossipMember, registered map[string]int32) (add, remove []string) {
	inConfig := map[string]bool{}
	for _, s := range servers {
		id := string(s.ID)
		inConfig[id] = true
		if _, ok := registered[id]; !ok {
			add = append(add, id)
		}
	}
	for id := range registered {
		if m, ok := members[id]; !inConfig[id] && (!ok || m.State != StateAlive) {
			remove = append(remove, id)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	return add, remove
}

// registerBrokers makes one registration pass, once every member of the
// configuration applies RegisterBroker (a rolling upgrade has finished).
// A failed proposal is retried on the next pass.
func (l *leaderState) registerBrokers(ctx context.Context) {
	n := l.n
	if n.r().State() != raft.Leader {
		return
	}
	servers, err := n.configuration()
	if err != nil {
		return
	}
	members := n.gossip.snapshot()
	if !allMembersAt(n.cfg.NodeID, servers, members, brokerLevel) {
		return
	}
	add, remove := planBrokers(servers, members, n.fsm.BrokerIDs())
	for _, id := range add {
		l.proposeBroker(ctx, &fsm.RegisterBroker{Node: id})
	}
	for _, id := range remove {
		l.proposeBroker(ctx, &fsm.RegisterBroker{Node: id, Remove: true})
	}
}

func (l *leaderState) proposeBroker(ctx context.Context, c *fsm.RegisterBroker) {
	n := l.n
	actx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	res, _, err := n.applyLocal(actx, fsm.Encode(c))
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		l.warnEvery("broker:"+c.Node, "kafka broker registration failed", "member", c.Node, "remove", c.Remove, "err", err)
		return
	}
	n.log.Info("kafka broker registration", "member", c.Node, "broker_id", res.BrokerID, "removed", c.Remove)
}
