package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
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

// TestStoreProbeKeepsPrivateStoresOut: founders share a store. A joiner d
// with a private store is never added and its /ready says why; a joiner e
// sharing the store is admitted; probe objects are deleted.
func TestStoreProbeKeepsPrivateStoresOut(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	stores := map[string]*memObjects{"a": shared, "b": shared, "c": shared, "d": newMemObjects(), "e": shared}
	c.edit = func(cfg *Config) { cfg.Objects = stores[cfg.NodeID] }
	c.startBootstrapped("a", "b", "c")
	c.waitLeader(deadline)

	d := c.start("d", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "d refused with a reason naming the object store", func() bool {
		ok, why := d.node.Ready()
		return !ok && strings.Contains(why, "not admitted: object store not shared")
	})
	_, why := d.node.Ready()
	t.Logf("/ready of the private-store joiner: %s", why)
	e := c.start("e", "", func(cfg *Config) { cfg.Join = c.joinAddrs() })
	waitFor(t, deadline, "e admitted and ready", func() bool { ok, _ := e.node.Ready(); return ok && e.node.identity().Admitted })
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
	waitFor(t, deadline, "probe objects deleted", func() bool { return shared.len() == 0 })
}

// TestStoreProbeFlagsFoundersOnAnotherStore: founders a and b share a
// store, c has its own. Founders are admitted by bootstrap, so c stays a
// voter, but whichever founder leads, the founders whose store differs
// from the leader's report it on /ready and the others are ready.
func TestStoreProbeFlagsFoundersOnAnotherStore(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	stores := map[string]*memObjects{"a": shared, "b": shared, "c": newMemObjects()}
	c.edit = func(cfg *Config) { cfg.Objects = stores[cfg.NodeID] }
	c.startBootstrapped("a", "b", "c")
	waitFor(t, deadline, "founders off the leader's store report it, the others are ready", func() bool {
		lead := c.leader()
		if lead == nil {
			return false
		}
		for _, n := range c.running() {
			ok, why := n.node.Ready()
			if stores[n.id] == stores[lead.id] && !ok {
				return false
			}
			if stores[n.id] != stores[lead.id] && (ok || !strings.Contains(why, "object store not shared")) {
				return false
			}
		}
		return true
	})
	for _, n := range c.running() {
		_, why := n.node.Ready()
		t.Logf("%s: %q", n.id, why)
	}
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
}

// failingObjects fails every Put and counts the attempts.
type failingObjects struct {
	*memObjects
	puts int
}

func (f *failingObjects) Put(context.Context, string, []byte) error {
	f.puts++
	return errors.New("connection refused")
}

// TestStoreProbeBacksOffWhileTheLeaderCannotWrite: during an object store
// outage the leader tries one probe write per storeRecheck, not one per
// agent and pass, so the leader loop is not held up by write timeouts.
func TestStoreProbeBacksOffWhileTheLeaderCannotWrite(t *testing.T) {
	objs := &failingObjects{memObjects: newMemObjects()}
	n := New(Config{NodeID: "a", Objects: objs}, nil)
	l := &leaderState{n: n, stores: map[string]storeCheck{}}
	for _, id := range []string{"b", "c", "b"} {
		err := l.verifyStore(context.Background(), id, "127.0.0.1:1", "i-"+id)
		if !errors.Is(err, errLeaderStore) || errors.Is(err, errStoreNotShared) {
			t.Fatalf("probe of %s during an outage: %v", id, err)
		}
	}
	if objs.puts != 1 {
		t.Errorf("%d probe writes during one outage window, want 1", objs.puts)
	}
	if len(l.stores) != 0 {
		t.Errorf("an outage was recorded as the agents' failure: %v", l.stores)
	}
}

// stalledObjects answers Get only when its context ends: a store slower
// than the leader's probe deadline.
type stalledObjects struct{ *memObjects }

func (s stalledObjects) Get(ctx context.Context, key string) ([]byte, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("s3 get %q: %w", key, ctx.Err())
}

// TestInterruptedStoreProbeIsNoVerdict: a probe whose request ends (the
// leader gave up, or the connection dropped) before the agent's read
// finished says nothing about the store. It must not mark the agent "object
// store not shared": nothing would clear that note if the leader did not
// probe again, and the agent would stay not ready.
func TestInterruptedStoreProbeIsNoVerdict(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	c.edit = func(cfg *Config) {
		cfg.Objects = shared
		if cfg.NodeID == "c" {
			cfg.Objects = stalledObjects{shared}
		}
	}
	c.startBootstrapped("a", "b", "c")
	c.waitLeaderNot("c") // the Raft leader refuses every probe
	n := c.node("c").node
	body, _ := json.Marshal(probeRequest{NodeID: "c", Instance: n.identity().Instance, Leader: "a", Key: "cluster-probes/x", SHA256: "00"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodPost, PeerProbeStorePath, bytes.NewReader(body)).WithContext(ctx)
	rec := httptest.NewRecorder()
	n.handleProbeStore(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("interrupted probe answered %d %s, want 503", rec.Code, rec.Body)
	}
	if p := n.storeProblem.get(); p != "" {
		t.Fatalf("an interrupted probe left a verdict: %q", p)
	}
}

// TestLateStoreProbeIsNoVerdict: a probe held in a cut link and delivered
// after the leader gave up on it (and deleted its object) reads nothing. It
// is older than the verdict the agent already has and must not overwrite
// it, or the agent would report "not shared" until the next term.
func TestLateStoreProbeIsNoVerdict(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	c.edit = func(cfg *Config) { cfg.Objects = shared }
	c.startBootstrapped("a", "b", "c")
	c.waitLeaderNot("c") // the Raft leader refuses every probe
	n := c.node("c").node
	if err := shared.Put(context.Background(), "cluster-probes/live", []byte("probe")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("probe"))
	probe := func(key string, term, seq uint64) int {
		body, _ := json.Marshal(probeRequest{NodeID: "c", Instance: n.identity().Instance, Leader: "a", Key: key,
			SHA256: hex.EncodeToString(sum[:]), Term: term, Seq: seq})
		rec := httptest.NewRecorder()
		n.handleProbeStore(rec, httptest.NewRequest(http.MethodPost, PeerProbeStorePath, bytes.NewReader(body)))
		return rec.Code
	}
	if code := probe("cluster-probes/live", 7, 3); code != http.StatusOK {
		t.Fatalf("a readable probe answered %d", code)
	}
	for _, late := range []struct{ term, seq uint64 }{{6, 9}, {7, 2}, {7, 3}} {
		if code := probe("cluster-probes/deleted", late.term, late.seq); code != http.StatusServiceUnavailable {
			t.Errorf("late probe %v answered %d, want 503", late, code)
		}
		if p := n.storeProblem.get(); p != "" {
			t.Fatalf("late probe %v left a verdict: %q", late, p)
		}
	}
	// A newer probe that cannot read is a verdict.
	if code := probe("cluster-probes/deleted", 8, 1); code != http.StatusConflict || n.storeProblem.get() == "" {
		t.Fatalf("a newer failing probe answered %d with note %q", code, n.storeProblem.get())
	}
}

// TestStaleStoreProbeIsNoVerdict: a probe from the leader of an earlier
// term, delivered after another agent was elected (the jepsen
// partition-leader class: the old leader's probe sat in a cut link, the
// probed agent became leader meanwhile, then the probe arrived and its
// object was gone), must not mark the agent "object store not shared":
// a leader is never probed, so nothing would clear the note and the
// cluster's leader would stay not ready.
func TestStaleStoreProbeIsNoVerdict(t *testing.T) {
	c := newTestCluster(t)
	shared := newMemObjects()
	c.edit = func(cfg *Config) { cfg.Objects = shared }
	c.startBootstrapped("a", "b", "c")
	leader := c.waitLeader(deadline)
	if leader.node.r().CurrentTerm() < 2 {
		leader = c.waitLeaderNot(leader.id) // a new election: a term above 1
	}
	n := leader.node
	sum := sha256.Sum256([]byte("probe"))
	body, _ := json.Marshal(probeRequest{NodeID: leader.id, Instance: n.identity().Instance, Leader: "old", Key: "cluster-probes/deleted",
		SHA256: hex.EncodeToString(sum[:]), Term: n.r().CurrentTerm() - 1, Seq: 1})
	rec := httptest.NewRecorder()
	n.handleProbeStore(rec, httptest.NewRequest(http.MethodPost, PeerProbeStorePath, bytes.NewReader(body)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a probe of an earlier term answered %d %s, want 503", rec.Code, rec.Body)
	}
	if p := n.storeProblem.get(); p != "" {
		t.Fatalf("a probe of an earlier term left a verdict on the leader: %q", p)
	}
	waitFor(t, 20*time.Second, "the leader ready after a stale probe", func() bool {
		ready, _ := n.Ready()
		return ready
	})
}

// A probe whose read was still running when this agent won an election
// finishes after the leader cleared its note: neither it (an earlier term)
// nor a probe without a term may set the note again; a later leader's
// probe may.
func TestStoreProblemClearedByTheLeaderStaysClear(t *testing.T) {
	var p problemNote
	notShared := errors.New("not shared")
	if !p.setFrom(nil, 4, 7) {
		t.Fatal("a first verdict was refused")
	}
	p.clearFor(5)
	for _, late := range []struct{ term, seq uint64 }{{4, 8}, {5, 1}, {0, 0}} {
		if p.setFrom(notShared, late.term, late.seq) || p.get() != "" {
			t.Fatalf("probe %v set the note of the leader of term 5: %q", late, p.get())
		}
	}
	if !p.setFrom(notShared, 6, 1) || p.get() == "" {
		t.Fatal("a probe of a later leader was refused")
	}
}

// A leader paused after winning term 7 resumes as a follower of the
// leader of term 8, which has already probed it: its late clearFor(7)
// must not erase that verdict, nor make the later leader's next probe
// look old.
func TestStoreProblemOfALaterTermSurvivesALateClear(t *testing.T) {
	var p problemNote
	notShared := errors.New("not shared")
	if !p.setFrom(notShared, 8, 1) {
		t.Fatal("the verdict of term 8 was refused")
	}
	p.clearFor(7)
	if p.get() == "" {
		t.Fatal("clearFor(7) erased the verdict of term 8")
	}
	if !p.setFrom(nil, 8, 2) || p.get() != "" {
		t.Fatal("the next probe of term 8 was refused after clearFor(7)")
	}
}
