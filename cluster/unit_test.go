package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

func TestResultCodecRoundTrip(t *testing.T) {
	for _, r := range []*fsm.Result{
		{},
		{TopicID: 42},
		{BaseOffset: 1 << 40, Count: 17},
		{Epoch: 9},
		{Accepted: []bool{true, false, true}},
		{Accepted: []bool{}},
		{Code: fsm.CodeStaleEpoch, Message: "expected epoch 3, partition is at epoch 4"},
		// AppendBatches: each batch's own outcome crosses the forward hop.
		{Index: 12, Batches: []fsm.Result{
			{BaseOffset: 100, Count: 50, Index: 12},
			{Code: fsm.CodeStaleEpoch, Message: "batch for epoch 1, partition is at epoch 2", Index: 12},
			{BaseOffset: 7, Count: 3, Duplicate: true, Index: 12},
		}},
	} {
		b, err := EncodeResult(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResult(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %+v gave %+v", r, got)
		}
	}
	got, _ := DecodeResult([]byte(`{"code":4,"message":"m"}`))
	if !errors.Is(got.Err(), fsm.ErrStaleEpoch) {
		t.Errorf("decoded code does not map to its sentinel: %v", got.Err())
	}
	for _, bad := range []string{"", "{", "[]", `{"code":"x"}`, `{} {}`} {
		if _, err := DecodeResult([]byte(bad)); err == nil {
			t.Errorf("DecodeResult(%q) succeeded", bad)
		}
	}
	if _, err := EncodeResult(nil); err == nil {
		t.Error("EncodeResult(nil) succeeded")
	}
}

// TestPostApplyErrorClasses pins how a forwarding failure is classified:
// nothing sent → ErrUnavailable; sent and no (readable) answer →
// ErrOutcomeUnknown; the leader's own class otherwise.
func TestPostApplyErrorClasses(t *testing.T) {
	cmd := fsm.Encode(&fsm.DeleteTopic{Name: "t"})
	okBody, _ := EncodeResult(&fsm.Result{TopicID: 7})
	handlers := map[string]http.HandlerFunc{
		"ok": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(okBody) },
		"not_leader": func(w http.ResponseWriter, _ *http.Request) {
			writeRPCError(w, 503, outcomeNotApplied, errors.New("not the raft leader"))
		},
		"lost": func(w http.ResponseWriter, _ *http.Request) {
			writeRPCError(w, 503, outcomeUnknown, errors.New("leadership lost"))
		},
		"invalid": func(w http.ResponseWriter, _ *http.Request) {
			writeRPCError(w, 400, outcomeInvalid, errors.New("bad command"))
		},
		"500":     func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) },
		"404":     func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) },
		"garbage": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{")) },
		"hangup": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		},
	}
	want := map[string]error{
		"ok": nil, "not_leader": fsm.ErrUnavailable, "lost": fsm.ErrOutcomeUnknown,
		"invalid": fsm.ErrInvalidCommand, "500": fsm.ErrOutcomeUnknown, "404": fsm.ErrUnavailable,
		"garbage": fsm.ErrOutcomeUnknown, "hangup": fsm.ErrOutcomeUnknown,
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			res, _, _, err := postApply(context.Background(), srv.Client(), addr, "leader", cmd, 0)
			if want[name] == nil {
				if err != nil || res.TopicID != 7 {
					t.Fatalf("got %+v, %v", res, err)
				}
				return
			}
			if !errors.Is(err, want[name]) {
				t.Fatalf("got %v, want an error wrapping %v", err, want[name])
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		_, _, _, err = postApply(context.Background(), http.DefaultClient, addr, "leader", cmd, 0)
		if !errors.Is(err, fsm.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})
	t.Run("timeout after send", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, _, _, err := postApply(ctx, srv.Client(), strings.TrimPrefix(srv.URL, "http://"), "leader", cmd, 0)
		if !errors.Is(err, fsm.ErrOutcomeUnknown) {
			t.Fatalf("got %v, want ErrOutcomeUnknown", err)
		}
	})
}

func meta(id string, expect int, cluster string) gossipMember {
	return gossipMember{Name: id, State: StateAlive, MetaOK: true,
		Meta: nodeMeta{ID: id, Peer: id + ":7000", Instance: "i-" + id, Expect: expect, Cluster: cluster}}
}

func TestPlanBootstrap(t *testing.T) {
	three := func(mods ...func(map[string]gossipMember)) map[string]gossipMember {
		m := map[string]gossipMember{"a": meta("a", 3, ""), "b": meta("b", 3, ""), "c": meta("c", 3, "")}
		for _, f := range mods {
			f(m)
		}
		return m
	}
	ready := planBootstrap("b", 3, three())
	if !ready.ready || len(ready.servers) != 3 || ready.servers[0].ID != "a" || ready.servers[2].ID != "c" {
		t.Fatalf("three matching agents: %+v", ready)
	}
	// Every agent plans the same configuration.
	if planBootstrap("a", 3, three()).key() != ready.key() || planBootstrap("c", 3, three()).key() != ready.key() {
		t.Fatal("agents disagree on the bootstrap configuration")
	}
	cid := bootstrapClusterID(ready.servers)
	cases := []struct {
		name     string
		members  map[string]gossipMember
		ready    bool
		existing bool
	}{
		{"two of three", three(func(m map[string]gossipMember) { delete(m, "c") }), false, false},
		{"one dead", three(func(m map[string]gossipMember) { c := m["c"]; c.State = StateDead; m["c"] = c }), false, false},
		{"four expecting three", three(func(m map[string]gossipMember) { m["d"] = meta("d", 3, "") }), false, false},
		{"joiner ignored", three(func(m map[string]gossipMember) { m["d"] = meta("d", 0, "") }), true, false},
		{"expect mismatch", three(func(m map[string]gossipMember) { m["c"] = meta("c", 5, "") }), false, false},
		{"existing cluster", three(func(m map[string]gossipMember) { m["d"] = meta("d", 0, "x") }), false, true},
		{"co-founder already bootstrapped", three(func(m map[string]gossipMember) { m["a"] = meta("a", 3, cid) }), true, false},
		{"founder of another set", three(func(m map[string]gossipMember) { m["a"] = meta("a", 3, "other") }), false, true},
		{"no metadata", three(func(m map[string]gossipMember) { c := m["c"]; c.MetaOK = false; m["c"] = c }), false, false},
	}
	for _, tc := range cases {
		p := planBootstrap("b", 3, tc.members)
		if p.ready != tc.ready || p.existing != tc.existing {
			t.Errorf("%s: ready=%v existing=%v (%s), want ready=%v existing=%v", tc.name, p.ready, p.existing, p.reason, tc.ready, tc.existing)
		}
	}
	if p := planBootstrap("z", 3, three()); p.ready {
		t.Error("an agent outside the set planned to bootstrap it")
	}
}

func TestPlanRemoval(t *testing.T) {
	now := time.Now()
	v := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)}
	}
	nv := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)}
	}
	m := func(id, state string, ago time.Duration) gossipMember {
		return gossipMember{Name: id, State: state, Since: now.Add(-ago)}
	}
	members := func(ms ...gossipMember) map[string]gossipMember {
		out := map[string]gossipMember{}
		for _, x := range ms {
			out[x.Name] = x
		}
		return out
	}
	const timeout = 10 * time.Second
	cases := []struct {
		name    string
		servers []raft.Server
		members map[string]gossipMember
		unknown map[string]time.Time
		want    string
	}{
		{"all alive", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateAlive, 0)), nil, ""},
		{"dead not long enough", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateDead, 5*time.Second)), nil, ""},
		{"dead long enough", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateDead, 11*time.Second)), nil, "c"},
		{"left goes at once", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateLeft, 0)), nil, "c"},
		{"never self", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateDead, time.Hour), m("b", StateAlive, 0), m("c", StateAlive, 0)), nil, ""},
		{"non-voter first", []raft.Server{v("a"), v("b"), v("c"), nv("d")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateDead, time.Hour), m("d", StateDead, time.Hour)), nil, "d"},
		{"majority looks dead: gossip is wrong", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateDead, time.Hour), m("c", StateDead, time.Hour)), nil, ""},
		{"two of five dead", []raft.Server{v("a"), v("b"), v("c"), v("d"), v("e")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0), m("c", StateAlive, 0), m("d", StateDead, time.Hour), m("e", StateDead, time.Hour)), nil, "d"},
		{"unknown long enough", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0)), map[string]time.Time{"c": now.Add(-time.Minute)}, "c"},
		{"unknown recently", []raft.Server{v("a"), v("b"), v("c")},
			members(m("a", StateAlive, 0), m("b", StateAlive, 0)), map[string]time.Time{"c": now}, ""},
	}
	for _, tc := range cases {
		got, why := planRemoval(&membershipView{self: "a", servers: tc.servers, members: tc.members, unknownSince: tc.unknown, now: now, deadTimeout: timeout})
		if got != tc.want {
			t.Errorf("%s: removes %q (%s), want %q", tc.name, got, why, tc.want)
		}
	}
	if targetVoters(1) != 3 || targetVoters(4) != 3 || targetVoters(5) != 5 || targetVoters(9) != 5 {
		t.Error("targetVoters")
	}
}

func TestPlanLeadership(t *testing.T) {
	now := time.Now()
	servers := []raft.Server{
		{Suffrage: raft.Voter, ID: "a"}, {Suffrage: raft.Voter, ID: "b"}, {Suffrage: raft.Voter, ID: "c"},
		{Suffrage: raft.Nonvoter, ID: "d"},
	}
	alive := map[string]gossipMember{
		"a": {Name: "a", State: StateAlive}, "b": {Name: "b", State: StateAlive},
		"c": {Name: "c", State: StateAlive}, "d": {Name: "d", State: StateAlive},
	}
	parts := func(leaders ...string) []fsm.PartitionInfo {
		out := make([]fsm.PartitionInfo, len(leaders))
		for i, l := range leaders {
			out[i] = fsm.PartitionInfo{TopicID: 1, Partition: int32(i), Leader: l, LeaderEpoch: 5}
		}
		return out
	}
	view := func(members map[string]gossipMember, ps []fsm.PartitionInfo, rebalance bool) leadershipView {
		return leadershipView{self: "a", servers: servers, members: members, now: now, failover: 3 * time.Second,
			rebalance: rebalance, maxMoves: 2, parts: ps}
	}

	if mv := planLeadership(view(alive, parts("a", "b", "c"), true)); len(mv) != 0 {
		t.Errorf("balanced: %+v", mv)
	}
	// Unassigned and non-member leaders go to the least loaded voters.
	mv := planLeadership(view(alive, parts("", "x", "a", "a"), false))
	if len(mv) != 2 || mv[0].To != "b" || mv[1].To != "c" || mv[0].Reason != moveUnassigned || mv[1].Reason != moveNotMember || mv[0].Epoch != 5 {
		t.Errorf("unassigned/not member: %+v", mv)
	}
	// Death shorter than the failover timeout moves nothing.
	young := map[string]gossipMember{"a": alive["a"], "b": alive["b"], "c": {Name: "c", State: StateDead, Since: now.Add(-time.Second)}}
	if mv := planLeadership(view(young, parts("a", "b", "c"), false)); len(mv) != 0 {
		t.Errorf("recently dead leader lost a partition: %+v", mv)
	}
	// Dead past the timeout: its partitions fail over to alive voters,
	// never to the non-voter d.
	dead := map[string]gossipMember{"a": alive["a"], "b": alive["b"], "c": {Name: "c", State: StateDead, Since: now.Add(-time.Minute)}, "d": alive["d"]}
	mv = planLeadership(view(dead, parts("a", "b", "c", "c"), false))
	if len(mv) != 2 || mv[0].Reason != moveFailover || mv[0].To == "c" || mv[0].To == "d" || mv[1].To == "c" || mv[1].To == "d" || mv[0].To == mv[1].To {
		t.Errorf("failover: %+v", mv)
	}
	// Rebalancing: at most maxMoves, from the most to the least loaded.
	mv = planLeadership(view(alive, parts("a", "a", "a", "a", "b", "b"), true))
	if len(mv) != 2 || mv[0].From != "a" || mv[0].To != "c" || mv[1].From != "a" || mv[1].To != "c" {
		t.Errorf("rebalance: %+v", mv)
	}
	if mv := planLeadership(view(alive, parts("a", "a", "b", "c"), true)); len(mv) != 0 {
		t.Errorf("difference of one moved: %+v", mv)
	}
	if mv := planLeadership(view(alive, parts("a", "a", "a", "a", "b", "b"), false)); len(mv) != 0 {
		t.Errorf("rebalanced without being asked: %+v", mv)
	}
}

func TestIdentityPersistence(t *testing.T) {
	dir := t.TempDir()
	fresh, err := loadIdentity(dir, false)
	if err != nil || fresh.Instance == "" || fresh.Admitted {
		t.Fatalf("fresh identity %+v, %v", fresh, err)
	}
	// Still without Raft state, never admitted, of no cluster: it never
	// took part in Raft, so a restart keeps it.
	restarted, err := loadIdentity(dir, false)
	if err != nil || restarted != fresh {
		t.Fatalf("restarted before admission: %+v, %v; want %+v", restarted, err, fresh)
	}
	for _, was := range []identity{{Instance: fresh.Instance, Admitted: true}, {Instance: fresh.Instance, Cluster: "c0"}} {
		if err := was.save(dir); err != nil {
			t.Fatal(err)
		}
		if got, err := loadIdentity(dir, false); err != nil || got.Instance == fresh.Instance || got.Admitted || got.Cluster != "" {
			t.Fatalf("without Raft state after %+v: %+v, %v; want a new instance", was, got, err)
		}
	}
	// A founder stopped in its bootstrap never opened its gate: without
	// Raft state it keeps its instance and plans again; with it (its
	// BootstrapCluster completed) it is admitted.
	founding := identity{Instance: fresh.Instance, Cluster: "c0", Founding: true, Version: identityVersion}
	if err := founding.save(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := loadIdentity(dir, false); err != nil || got != fresh {
		t.Fatalf("founding without Raft state: %+v, %v; want %+v", got, err, fresh)
	}
	if err := founding.save(dir); err != nil {
		t.Fatal(err)
	}
	want := identity{Instance: fresh.Instance, Cluster: "c0", Admitted: true, Version: identityVersion}
	for range 2 {
		if got, err := loadIdentity(dir, true); err != nil || got != want {
			t.Fatalf("founding with Raft state: %+v, %v; want %+v", got, err, want)
		}
	}
	fresh.Cluster, fresh.Admitted = "c1", true
	if err := fresh.save(dir); err != nil {
		t.Fatal(err)
	}
	again, err := loadIdentity(dir, true)
	if err != nil || again != fresh {
		t.Fatalf("reloaded %+v, %v; want %+v", again, err, fresh)
	}
	// Without Raft state the data is new, whatever the file says.
	wiped, err := loadIdentity(dir, false)
	if err != nil || wiped.Instance == fresh.Instance || wiped.Admitted || wiped.Cluster != "" {
		t.Fatalf("identity after wipe %+v, %v", wiped, err)
	}
	// Raft state without a file predates identities: admitted, legacy.
	legacy, err := loadIdentity(t.TempDir(), true)
	if err != nil || !legacy.Admitted || !legacy.Legacy || legacy.raftCluster() != "" {
		t.Fatalf("legacy identity %+v, %v", legacy, err)
	}
	// A file an earlier release wrote (no version) cannot say whether its
	// group holds one cluster ID: legacy, and it stays so.
	old := t.TempDir()
	if err := os.WriteFile(filepath.Join(old, identityFile), []byte(`{"instance":"i1","cluster":"c1","admitted":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := loadIdentity(old, true)
		if err != nil || got.Instance != "i1" || got.Cluster != "c1" || !got.Legacy || got.raftCluster() != "" {
			t.Fatalf("identity of an earlier release: %+v, %v", got, err)
		}
	}
	if again.Legacy || again.raftCluster() != "c1" {
		t.Fatalf("an identity this release wrote is legacy: %+v", again)
	}
}

func TestMetaFitsGossipLimit(t *testing.T) {
	m := nodeMeta{Version: metaVersion, ID: strings.Repeat("n", 64), Peer: strings.Repeat("p", 60) + ":65535",
		HTTP: strings.Repeat("h", 60) + ":65535", GRPC: strings.Repeat("g", 60) + ":65535",
		Kafka: strings.Repeat("k", 60) + ":65535", Ver: gossipVersion(strings.Repeat("v", 100)),
		Instance: randomID(), Cluster: randomID(), Admitted: true, Legacy: true, Expect: 5, Features: 3, LowDisk: true, Leaving: true}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeMeta(b)
	if !ok || got != m {
		t.Fatalf("meta round trip: %+v", got)
	}
	m.ID = strings.Repeat("n", 600)
	if _, err := m.encode(); err == nil {
		t.Fatal("oversized metadata accepted")
	}
	if _, ok := decodeMeta([]byte("not json")); ok {
		t.Fatal("garbage metadata decoded")
	}
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		c := Config{NodeID: "a", DataDir: "/d", Mux: transport.NewPeerMux(transport.PeerConfig{}), GossipBindAddr: "127.0.0.1:0"}
		return c
	}
	bad := []func(*Config){
		func(c *Config) { c.NodeID = "" },
		func(c *Config) { c.DataDir = "" },
		func(c *Config) { c.Mux = nil },
		func(c *Config) { c.BootstrapExpect = -1 },
		func(c *Config) { c.Bootstrap = true; c.Join = []string{"x:1"} },
		func(c *Config) { c.GossipBindAddr = "nope" },
	}
	for i, f := range bad {
		c := base()
		f(&c)
		c.setDefaults()
		if err := c.validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: validate = %v", i, err)
		}
	}
	c := base()
	c.setDefaults()
	if err := c.validate(); err != nil || !c.Bootstrap {
		t.Errorf("single agent: %v, bootstrap %v", err, c.Bootstrap)
	}
	c = base()
	c.Join = []string{"x:1"}
	c.setDefaults()
	if err := c.validate(); err != nil || c.Bootstrap {
		t.Errorf("joiner: %v, bootstrap %v", err, c.Bootstrap)
	}
}

func TestNodeBeforeStart(t *testing.T) {
	n := New(Config{NodeID: "a", DataDir: t.TempDir()}, fsm.New(nil))
	if _, err := n.Propose(context.Background(), fsm.Encode(&fsm.DeleteTopic{Name: "x"})); !errors.Is(err, fsm.ErrUnavailable) {
		t.Fatalf("Propose before Start: %v", err)
	}
	if ok, _ := n.Ready(); ok {
		t.Fatal("ready before Start")
	}
	if n.Members() != nil || n.LeaderID() != "" || n.Status().State != "Stopped" {
		t.Fatal("state before Start")
	}
	if got := n.Placement(2); len(got) != 2 || got[0] != "a" {
		t.Fatalf("placement before Start: %v", got)
	}
	rec := httptest.NewRecorder()
	n.RPCHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PeerStatusPath, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status RPC before Start: %d", rec.Code)
	}
	for body, want := range map[string]string{"\x01": outcomeInvalid, string(fsm.Encode(&fsm.DeleteTopic{Name: "x"})): outcomeNotApplied} {
		rec := httptest.NewRecorder()
		n.RPCHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PeerApplyPath, strings.NewReader(body)))
		var e rpcError
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code == http.StatusOK || e.Outcome != want {
			t.Fatalf("apply RPC of %q before Start: %d %+v, want outcome %s", body, rec.Code, e, want)
		}
	}
	if err := n.Leave(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Leave before Start: %v", err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, ErrConfig) {
		t.Fatalf("Start without a peer listener: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

// postApply performs one forwarding request and waits for its answer.
func postApply(ctx context.Context, client *http.Client, addr, leaderID string, cmd []byte, deadline int64) (*fsm.Result, uint64, string, error) {
	return sendApply(ctx, client, addr, leaderID, cmd, deadline, 0)()
}
