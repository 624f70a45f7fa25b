package cluster

import (
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// freeGossipPort returns a port that is free for TCP and UDP on 127.0.0.1
// at the time of the call.
func freeGossipPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port for gossip")
	return 0
}

// TestBootstrapExpectOneWithItselfInJoin: a one-replica StatefulSet sets
// BOOTSTRAP_EXPECT=1 and a JOIN list naming the agent itself (by a DNS
// name, so it is not filtered as its own address). It must bootstrap
// alone; a second agent started the same way, once the first exists, is
// added to that cluster instead of founding another.
func TestBootstrapExpectOneWithItselfInJoin(t *testing.T) {
	c := newTestCluster(t)
	port := strconv.Itoa(freeGossipPort(t))
	a := c.startAt("a", "", "127.0.0.1:0", "127.0.0.1:"+port, func(cfg *Config) {
		cfg.BootstrapExpect = 1
		cfg.Join = []string{"localhost:" + port}
	})
	if a.node.cfg.Bootstrap {
		t.Fatal("JOIN was ignored: the agent took the plain single-agent path")
	}
	c.waitLeader(deadline)
	c.waitConfig(deadline, []string{"a"}, nil)
	if ok, why := a.node.Ready(); !ok {
		waitFor(t, deadline, "a ready ("+why+")", func() bool { ok, _ := a.node.Ready(); return ok })
	}

	b := c.start("b", "", func(cfg *Config) {
		cfg.BootstrapExpect = 1
		cfg.Join = []string{"localhost:" + port, "127.0.0.1:1"}
	})
	c.waitConfig(deadline, []string{"a", "b"}, nil)
	if ca, cb := a.node.Status().ClusterID, b.node.Status().ClusterID; ca == "" || ca != cb {
		t.Fatalf("b is in cluster %q, a in %q", cb, ca)
	}
}

// TestPlanBootstrapExpectOne: the expected-count rule for a count of one
// (BOOTSTRAP_EXPECT=1 with JOIN).
func TestPlanBootstrapExpectOne(t *testing.T) {
	alone := map[string]gossipMember{"a": meta("a", 1, "")}
	if p := planBootstrap("a", 1, alone); !p.ready || len(p.servers) != 1 {
		t.Fatalf("alone: %+v", p)
	}
	cases := []struct {
		name     string
		members  map[string]gossipMember
		existing bool
	}{
		// A cluster founded by an agent with the same setting (a scaled-up
		// StatefulSet): two candidates, no guess; its leader adds us.
		{"same setting, existing cluster", map[string]gossipMember{"a": meta("a", 1, ""), "b": meta("b", 1, "c1")}, false},
		{"joiner-built cluster", map[string]gossipMember{"a": meta("a", 1, ""), "b": meta("b", 0, "c1")}, true},
		{"founders of three", map[string]gossipMember{"a": meta("a", 1, ""), "b": meta("b", 3, "")}, false},
	}
	for _, tc := range cases {
		if p := planBootstrap("a", 1, tc.members); p.ready || p.existing != tc.existing {
			t.Errorf("%s: ready=%v existing=%v (%s)", tc.name, p.ready, p.existing, p.reason)
		}
	}
	// A joiner without BOOTSTRAP_EXPECT and without a cluster is ignored.
	if p := planBootstrap("a", 1, map[string]gossipMember{"a": meta("a", 1, ""), "j": meta("j", 0, "")}); !p.ready {
		t.Errorf("a bare joiner blocked the bootstrap: %s", p.reason)
	}
}

// TestFoundersJoinedBeforeTheirOwnJoin: founders that others join before
// their own join loop runs (gossip from a quicker co-founder arrives
// first) still bootstrap, so the group has a quorum: before the fix they
// waited for a join attempt that never came, and the one founder that did
// bootstrap could never be elected.
func TestFoundersJoinedBeforeTheirOwnJoin(t *testing.T) {
	c := newTestCluster(t)
	ports := map[string]string{}
	var join []string
	for _, id := range []string{"a", "b", "c"} {
		ports[id] = strconv.Itoa(freeGossipPort(t))
		join = append(join, "127.0.0.1:"+ports[id])
	}
	hold := make(chan struct{})
	start := func(id string, held bool) *testNode {
		return c.startAt(id, "", "127.0.0.1:0", "127.0.0.1:"+ports[id], func(cfg *Config) {
			cfg.BootstrapExpect = 3
			cfg.Join = join
			if held {
				cfg.joinHold = hold
			}
		})
	}
	b, cc := start("b", true), start("c", true)
	a := start("a", false)
	waitFor(t, deadline, "a's join to reach b and c", func() bool {
		return b.node.gossip.ml.NumMembers() == 3 && cc.node.gossip.ml.NumMembers() == 3
	})
	close(hold)
	c.waitLeader(deadline)
	c.waitConfig(deadline, []string{"a", "b", "c"}, nil)
	for _, n := range []*testNode{a, b, cc} {
		waitFor(t, deadline, n.id+" ready", func() bool { ok, _ := n.node.Ready(); return ok })
	}
}

// fixedAddrs gives each agent a gossip and a peer address (distinct free
// ports, kept across its restarts) and a data dir; join lists the gossip
// addresses.
func fixedAddrs(t *testing.T, ids ...string) (gossip, peer, dirs map[string]string, join []string) {
	t.Helper()
	gossip, peer, dirs = map[string]string{}, map[string]string{}, map[string]string{}
	used := map[int]bool{}
	port := func() string {
		for {
			if p := freeGossipPort(t); !used[p] {
				used[p] = true
				return "127.0.0.1:" + strconv.Itoa(p)
			}
		}
	}
	for _, id := range ids {
		gossip[id], peer[id] = port(), port()
		dirs[id] = filepath.Join(t.TempDir(), id)
		join = append(join, gossip[id])
	}
	return gossip, peer, dirs, join
}

// TestFoundersRestartedBeforeTheyBootstrapped: one founder bootstraps, the
// other two are restarted before they do (a crash loop at start). They
// keep their instances, so they derive the cluster ID the first one
// bootstrapped and bootstrap the same group: before the fix each restart
// made a new instance, the two derived another cluster ID, took the first
// founder for a cluster that exists without them and waited to be added
// by a leader that one voter of three could never elect.
func TestFoundersRestartedBeforeTheyBootstrapped(t *testing.T) {
	c := newTestCluster(t)
	gossip, peer, dirs, join := fixedAddrs(t, "a", "b", "c")
	start := func(id string, settle time.Duration) *testNode {
		return c.startAt(id, dirs[id], peer[id], gossip[id], func(cfg *Config) {
			cfg.BootstrapExpect = 3
			cfg.Join = join
			cfg.BootstrapSettle = settle
		})
	}
	b, cc := start("b", time.Hour), start("c", time.Hour)
	a := start("a", 200*time.Millisecond)
	waitFor(t, deadline, "a to bootstrap", a.node.hasRaftState)
	instances := map[string]string{}
	for _, n := range []*testNode{b, cc} {
		if n.node.hasRaftState() || n.node.identity().Admitted {
			t.Fatalf("%s bootstrapped despite its settle time", n.id)
		}
		instances[n.id] = n.node.identity().Instance
		c.kill(n.id)
	}
	for _, id := range []string{"b", "c"} {
		n := start(id, 200*time.Millisecond)
		if got := n.node.identity().Instance; got != instances[id] {
			t.Errorf("%s restarted as instance %s, was %s", id, got, instances[id])
		}
	}
	waitFoundedTogether(t, c, []string{"a", "b", "c"}, a)
}

// errStoppedHere stands for a process that stopped at a bootstrap step.
var errStoppedHere = errors.New("test: stopped at this bootstrap step")

// TestFoundersStoppedInsideTheirBootstrap: two founders of three stop in
// their bootstrap — right after its first identity write, before
// BootstrapCluster, or after BootstrapCluster, before the identity says
// admitted — while the third is held at its first step; then the third
// bootstraps. (The two's hook fails every attempt until they are killed,
// as a stopped process never goes on; their gates stay closed, so they
// take no part in Raft meanwhile.) Each gate must be closed at those
// points (admitting before the Raft state is written lets a founder vote,
// lose raft.db and vote again in the same term as the same instance), and
// the two, restarted, must finish the same bootstrap. Before, the first
// identity write admitted them: restarted, they were new instances,
// derived another cluster ID, took the third for a cluster that exists
// without them and waited for a leader that one voter of three could
// never elect.
func TestFoundersStoppedInsideTheirBootstrap(t *testing.T) {
	for _, at := range []string{"identity", "bootstrapped"} {
		t.Run(at, func(t *testing.T) { foundersStoppedAt(t, at) })
	}
}

func foundersStoppedAt(t *testing.T, at string) {
	c := newTestCluster(t)
	gossip, peer, dirs, join := fixedAddrs(t, "a", "b", "c")
	type stop struct {
		id       string
		gateOpen bool
	}
	reached := make(chan stop, 16)
	release := make(chan struct{})
	var once sync.Once
	releaseC := func() { once.Do(func() { close(release) }) }
	start := func(id, step string, hook func() error) *testNode {
		return c.startAt(id, dirs[id], peer[id], gossip[id], func(cfg *Config) {
			cfg.BootstrapExpect = 3
			cfg.Join = join
			if hook != nil {
				cfg.bootstrapStep = func(n *Node, s string) error {
					if s != step {
						return nil
					}
					select {
					case reached <- stop{n.cfg.NodeID, n.transport.open.Load()}:
					default:
					}
					return hook()
				}
			}
		})
	}
	stopHere := func() error { return errStoppedHere }
	a, b := start("a", at, stopHere), start("b", at, stopHere)
	start("c", "identity", func() error { <-release; return nil })
	t.Cleanup(releaseC) // before the cluster stops
	instances := map[string]string{"a": a.node.identity().Instance, "b": b.node.identity().Instance}
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case s := <-reached:
			if s.gateOpen {
				t.Errorf("%s's raft gate is open before its bootstrap's last identity write", s.id)
			}
			seen[s.id] = true
		case <-time.After(deadline):
			t.Fatalf("founders did not reach their bootstrap (reached: %v)", seen)
		}
	}
	c.kill("a")
	c.kill("b")
	releaseC()
	cc := c.node("c")
	waitFor(t, deadline, "c to bootstrap", cc.node.hasRaftState)
	for _, id := range []string{"a", "b"} {
		n := start(id, "", nil)
		if got := n.node.identity().Instance; got != instances[id] {
			t.Errorf("%s restarted as instance %s, was %s", id, got, instances[id])
		}
	}
	waitFoundedTogether(t, c, []string{"a", "b", "c"}, cc)
}

// TestSingleAgentStoppedInsideItsBootstrap: a single agent stopped at
// each point of its bootstrap must come up as a one-voter cluster on its
// next start, as the same instance: right after the identity write,
// inside BootstrapCluster (the term stored, no configuration entry yet),
// and after BootstrapCluster before its identity says admitted. Stopped
// inside, it was admitted with a term and no configuration before, so it
// never campaigned and waited forever.
func TestSingleAgentStoppedInsideItsBootstrap(t *testing.T) {
	for _, at := range []string{"identity", "term", "bootstrapped"} {
		t.Run(at, func(t *testing.T) {
			c := newTestCluster(t)
			dir := filepath.Join(t.TempDir(), "a")
			var gateOpen atomic.Bool
			var stoppedInstance atomic.Value
			step := at
			if at == "term" {
				step = "identity"
			}
			node, err := c.tryStart("a", dir, func(cfg *Config) {
				cfg.Bootstrap = true
				cfg.bootstrapStep = func(n *Node, s string) error {
					if s != step {
						return nil
					}
					gateOpen.Store(n.transport.open.Load())
					stoppedInstance.Store(n.identity().Instance)
					return errStoppedHere
				}
			})
			if err == nil {
				node.stop()
				t.Fatal("the agent started although its bootstrap stopped")
			}
			if gateOpen.Load() {
				t.Errorf("the raft gate is open at %q, before the bootstrap's last identity write", at)
			}
			if at == "term" {
				// BootstrapCluster's first write, the term, as a process
				// stopped before its second would leave it.
				stable, logs, err := openLogStores(filepath.Join(dir, "raft"), newHCLogger("raft", slog.New(slog.DiscardHandler)))
				if err != nil {
					t.Fatal(err)
				}
				if err := stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
					t.Fatal(err)
				}
				_ = logs.Close()
				_ = stable.Close()
			}
			a := c.start("a", dir, nil)
			c.waitLeader(deadline)
			waitFor(t, deadline, "a ready", func() bool { ok, _ := a.node.Ready(); return ok })
			id := a.node.identity()
			if !id.Admitted || id.Founding || id.Cluster == "" {
				t.Errorf("identity after the restart: %+v", id)
			}
			if was, _ := stoppedInstance.Load().(string); id.Instance != was {
				t.Errorf("restarted as instance %s, was %s", id.Instance, was)
			}
		})
	}
}

// TestDiscardUnfinishedBootstrap: only a founding identity's term without
// a log entry (what a BootstrapCluster stopped between its writes leaves)
// is discarded; a term next to an admitted identity may have recorded a
// vote, and a founding identity with a log bootstrapped.
func TestDiscardUnfinishedBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      identity
		withLog bool
		discard bool
	}{
		{"founding, term only", identity{Instance: "i", Cluster: "c", Founding: true, Version: identityVersion}, false, true},
		{"founding, with a log", identity{Instance: "i", Cluster: "c", Founding: true, Version: identityVersion}, true, false},
		{"admitted, term only", identity{Instance: "i", Cluster: "c", Admitted: true, Version: identityVersion}, false, false},
		{"never admitted, term only", identity{Instance: "i", Version: identityVersion}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.id.save(dir); err != nil {
				t.Fatal(err)
			}
			hl := newHCLogger("raft", slog.New(slog.DiscardHandler))
			stable, logs, err := openLogStores(dir, hl)
			if err != nil {
				t.Fatal(err)
			}
			defer stable.Close()
			defer logs.Close()
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
			if err != nil {
				t.Fatal(err)
			}
			if err := stable.SetUint64(keyCurrentTerm, 1); err != nil {
				t.Fatal(err)
			}
			if tc.withLog {
				if err := logs.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration}); err != nil {
					t.Fatal(err)
				}
			}
			discarded, err := discardUnfinishedBootstrap(dir, logs, stable, snaps)
			if err != nil || discarded != tc.discard {
				t.Fatalf("discarded %v, %v; want %v", discarded, err, tc.discard)
			}
			term, _ := stable.GetUint64(keyCurrentTerm)
			if want := map[bool]uint64{true: 0, false: 1}[tc.discard]; term != want {
				t.Fatalf("term %d after, want %d", term, want)
			}
		})
	}
}

// waitFoundedTogether waits until the running agents have a leader, hold
// the voters ids, are ready, and are all in ref's cluster.
func waitFoundedTogether(t *testing.T, c *testCluster, ids []string, ref *testNode) {
	t.Helper()
	c.waitLeader(deadline)
	c.waitConfig(deadline, ids, nil)
	cid := ref.node.Status().ClusterID
	for _, n := range c.running() {
		waitFor(t, deadline, n.id+" ready", func() bool { ok, _ := n.node.Ready(); return ok })
		if got := n.node.Status().ClusterID; got != cid {
			t.Errorf("%s is in cluster %q, %s in %q", n.id, got, ref.id, cid)
		}
	}
}

// TestFounderStopsWhileItsBootstrapWaitsForDisk: a founder whose disk
// refuses BootstrapCluster's term write waits (the write is retried in
// place, so nothing is half written), and is still stopped promptly: Raft
// drops the bootstrap's future unanswered when it shuts down in the
// middle, and a wait on it without a way out kept Close (a founder of
// several) or Start (a single agent, past its context) from returning.
func TestFounderStopsWhileItsBootstrapWaitsForDisk(t *testing.T) {
	refuseTerm := func(full **termRefusing) func(*Config) {
		return func(cfg *Config) {
			cfg.wrapStable = func(s raft.StableStore) raft.StableStore {
				*full = &termRefusing{fullStable{StableStore: s, fullDisk: fullDisk{full: true}}}
				return *full
			}
		}
	}
	within := func(what string, fn func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			fn()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(deadline):
			t.Fatalf("%s did not return while the bootstrap waited for the disk", what)
		}
	}
	t.Run("single agent", func(t *testing.T) {
		c := newTestCluster(t)
		var full *termRefusing
		within("Start", func() {
			if n, err := c.tryStart("a", "", func(cfg *Config) { cfg.Bootstrap = true; refuseTerm(&full)(cfg) }); err == nil {
				n.stop()
				t.Error("started although its bootstrap could not write")
			}
		})
		if full == nil || full.attempts() < 2 {
			t.Error("the bootstrap's term write was not retried")
		}
	})
	t.Run("founders", func(t *testing.T) {
		c := newTestCluster(t)
		gossip, peer, dirs, join := fixedAddrs(t, "a", "b", "c")
		var full *termRefusing
		for _, id := range []string{"a", "b", "c"} {
			c.startAt(id, dirs[id], peer[id], gossip[id], func(cfg *Config) {
				cfg.BootstrapExpect = 3
				cfg.Join = join
				if id == "a" {
					refuseTerm(&full)(cfg)
				}
			})
		}
		a := c.node("a")
		waitFor(t, deadline, "a's bootstrap term write to be retried", func() bool { return full.attempts() >= 2 })
		if ok, why := a.node.Ready(); ok || !strings.Contains(why, "bootstrapping") {
			t.Errorf("a ready %v (%s) while its bootstrap waits for the disk", ok, why)
		}
		within("Close", func() { c.kill("a") })
	})
}

// termRefusing is a stable store whose disk is full, while full is set,
// for a term above 0 (the first write of a bootstrap; Raft writes 0 when
// it starts on empty state).
type termRefusing struct{ fullStable }

func (s *termRefusing) SetUint64(k []byte, v uint64) error {
	if string(k) != string(keyCurrentTerm) || v == 0 {
		return s.StableStore.SetUint64(k, v)
	}
	return s.fullStable.SetUint64(k, v)
}

// lastIndexFailing fails LastIndex while fail is set: BootstrapCluster's
// check for existing state then fails before it writes anything.
type lastIndexFailing struct {
	raft.LogStore
	fail atomic.Bool
}

func (l *lastIndexFailing) LastIndex() (uint64, error) {
	if l.fail.Load() {
		return 0, errors.New("test: injected read failure")
	}
	return l.LogStore.LastIndex()
}

func (l *lastIndexFailing) IsMonotonic() bool { return true }

// TestFailedBootstrapDropsItsFoundingIdentity: a BootstrapCluster that
// fails while the agent runs, before it wrote anything, leaves the
// identity as it was before the bootstrap (no cluster, not founding), so
// that its gossip does not keep naming a cluster that does not exist; once
// the disk reads again the founder bootstraps with the others.
func TestFailedBootstrapDropsItsFoundingIdentity(t *testing.T) {
	c := newTestCluster(t)
	gossip, peer, dirs, join := fixedAddrs(t, "a", "b", "c")
	var logs atomic.Pointer[lastIndexFailing]
	var failed atomic.Bool
	for _, id := range []string{"a", "b", "c"} {
		c.startAt(id, dirs[id], peer[id], gossip[id], func(cfg *Config) {
			cfg.BootstrapExpect = 3
			cfg.Join = join
			if id != "a" {
				return
			}
			cfg.wrapLog = func(s raft.LogStore) raft.LogStore {
				l := &lastIndexFailing{LogStore: s}
				logs.Store(l)
				return l
			}
			cfg.bootstrapStep = func(_ *Node, step string) error {
				if step == "identity" && !failed.Swap(true) {
					logs.Load().fail.Store(true)
				}
				return nil
			}
		})
	}
	a := c.node("a")
	waitFor(t, deadline, "a's bootstrap to begin (its reads fail from then on)", failed.Load)
	waitFor(t, deadline, "a's identity to drop the planned cluster", func() bool {
		id := a.node.identity()
		return id.Cluster == "" && !id.Founding && !id.Admitted
	})
	logs.Load().fail.Store(false)
	waitFoundedTogether(t, c, []string{"a", "b", "c"}, c.node("b"))
}
