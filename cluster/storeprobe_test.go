package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// memObjects is an in-memory object store for the probe tests (the agent's
// real stores are exercised by cmd/streamhouse's TestJoinerMustShareTheObjectStore).
type memObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemObjects() *memObjects { return &memObjects{objs: map[string][]byte{}} }

func (m *memObjects) Put(_ context.Context, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = append([]byte(nil), data...)
	return nil
}

func (m *memObjects) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, errors.New("object not found")
	}
	return b, nil
}

func (m *memObjects) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *memObjects) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objs)
}

// TestStoreProbeKeepsPrivateStoresOut: founders a and b share a store, c
// has its own. As a founder c is already a voter: it stays one but reports
// the problem on /ready. A joiner d with a private store is never added; a
// joiner e sharing the store is admitted.
func TestStoreProbeKeepsPrivateStoresOut(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	stores := map[string]*memObjects{"a": shared, "b": shared, "c": newMemObjects(), "d": newMemObjects(), "e": shared}
	c.edit = func(cfg *Config) { cfg.Objects = stores[cfg.NodeID] }
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)

	// Whichever founder leads, the founders not sharing its store say so.
	for _, n := range c.running() {
		if stores[n.id] == stores[lead.id] {
			continue
		}
		waitFor(t, deadline, n.id+" reports the unshared store on /ready", func() bool {
			ok, why := n.node.Ready()
			return !ok && strings.Contains(why, "object store not shared")
		})
		_, why := n.node.Ready()
		t.Logf("/ready of founder %s: %s", n.id, why)
	}
	if lead.id == "c" {
		// The rest of the test needs a leader on the shared store.
		_ = lead.node.r().LeadershipTransfer().Error()
		lead = c.waitLeader(deadline)
		if lead.id == "c" {
			t.Fatal("leadership did not move off c")
		}
	}

	d := c.start("d", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "d refused with a reason naming the object store", func() bool {
		ok, why := d.node.Ready()
		return !ok && strings.Contains(why, "not admitted: object store not shared")
	})
	e := c.start("e", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "e admitted", func() bool { return e.node.identity().Admitted })
	for _, n := range c.running() {
		st := n.node.Status()
		for _, m := range append(st.Voters, st.NonVoters...) {
			if m == "d" {
				t.Errorf("%s has d in its raft configuration", n.id)
			}
		}
	}
	if d.node.identity().Admitted {
		t.Error("d was admitted")
	}
	// Agents on the leader's store are ready, the probe verdicts of an
	// earlier leader on another store notwithstanding.
	for _, id := range []string{"a", "b", "e"} {
		n := c.node(id)
		waitFor(t, deadline, id+" ready", func() bool { ok, _ := n.node.Ready(); return ok })
	}
	waitFor(t, deadline, "probe objects deleted", func() bool { return shared.len() == 0 })
}
