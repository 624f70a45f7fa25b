package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

func TestNextTick(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name       string
		wall, base int64
		known      int64 // the newest time the state knows of (fsm.NewestKnownTime)
		elapsed    time.Duration
		want       int64
	}{
		{"new cluster takes the wall clock", 5_000_000, 0, 0, 0, 5_000_000},
		{"restored state, wall clock hours ahead: capped at the newest known time + one interval", 10_000 + 5*3600_000, 0, 10_000, 0, 11_000},
		{"restored state, wall clock behind the newest known time: the wall clock", 9_000, 0, 10_000, 0, 9_000},
		{"normal", 10_500, 10_000, 0, 500 * time.Millisecond, 10_500},
		{"wall clock behind: proposed as is (the state machine keeps the max)", 9_000, 10_000, 0, sec, 9_000},
		{"a jump of hours is limited to double speed", 10_000 + 2*3600_000, 10_000, 0, 3 * sec, 10_000 + 6_000 + 1_000},
	}
	for _, c := range cases {
		if got := nextTick(c.wall, c.base, c.known, c.elapsed, sec); got != c.want {
			t.Errorf("%s: got %d want %d", c.name, got, c.want)
		}
	}
}

func TestAllMembersAt(t *testing.T) {
	servers := []raft.Server{{ID: "a"}, {ID: "b"}, {ID: "c", Suffrage: raft.Nonvoter}}
	at := func(level int) gossipMember {
		return gossipMember{MetaOK: true, Meta: nodeMeta{Features: level}}
	}
	cases := []struct {
		name    string
		members map[string]gossipMember
		want    bool
	}{
		{"every other member at level 2", map[string]gossipMember{"b": at(2), "c": at(3)}, true},
		{"a non-voter of an older version", map[string]gossipMember{"b": at(2), "c": at(0)}, false},
		{"a member gossip does not know", map[string]gossipMember{"b": at(2)}, false},
		{"unreadable metadata", map[string]gossipMember{"b": at(2), "c": {Meta: nodeMeta{Features: 2}}}, false},
	}
	for _, c := range cases {
		if got := allMembersAt("a", servers, c.members, 2); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

func TestForwardExpired(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if late, _ := forwardExpired(req, 1e12); late {
		t.Fatal("a forward without a deadline (an older agent) was refused")
	}
	setForwardDeadline(req, 1000)
	if late, _ := forwardExpired(req, 1000); late {
		t.Fatal("refused at the deadline")
	}
	if late, _ := forwardExpired(req, 1001); !late {
		t.Fatal("accepted past the deadline")
	}
	req.Header.Set(forwardDeadlineHeader, "soon")
	if late, _ := forwardExpired(req, 0); !late {
		t.Fatal("a malformed deadline was accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if d := forwardDeadline(ctx, 0); d != 0 {
		t.Fatalf("deadline before the first tick = %d", d)
	}
	if d := forwardDeadline(context.Background(), 5); d != 0 {
		t.Fatalf("deadline without a context deadline = %d", d)
	}
	if d := forwardDeadline(ctx, 5); d < 5+3500_000 || d > 5+3600_000 {
		t.Fatalf("deadline = %d", d)
	}
}

// lateNetwork is an http.RoundTripper whose requests leave the sender but
// reach the receiver only when the test delivers them: like a forwarded
// request held in a kernel's retransmission queue after its caller gave
// up (docs/jepsen.md finding 6). The caller sees its context end after the
// request was written (outcome unknown).
type lateNetwork struct {
	mu   sync.Mutex
	held []*http.Request
	body [][]byte
}

func (l *lateNetwork) RoundTrip(req *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.held = append(l.held, req.Clone(context.Background()))
	l.body = append(l.body, b)
	l.mu.Unlock()
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
	<-req.Context().Done()
	return nil, req.Context().Err()
}

// deliver sends the held request i to url now and returns the answer.
func (l *lateNetwork) deliver(t *testing.T, i int, url string) (int, rpcError) {
	t.Helper()
	l.mu.Lock()
	req, body := l.held[i], l.body[i]
	l.mu.Unlock()
	out, err := http.NewRequest(req.Method, url+req.URL.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e rpcError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// TestLateForwardIsRefused: a follower forwards a command; its caller
// gives up (deadline) while the request is still on its way; the request
// reaches the Raft leader later. The leader must refuse it as not applied
// instead of applying a command whose caller was told "outcome unknown"
// long ago.
func TestLateForwardIsRefused(t *testing.T) {
	c := newTestCluster(t)
	c.edit = func(cfg *Config) { cfg.ClockTickInterval = 20 * time.Millisecond }
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	f1 := c.followers(lead)[0]
	waitFor(t, deadline, "the cluster clock ticks on the follower", func() bool { return f1.fsm.Clock() > 0 })

	late := &lateNetwork{}
	cmd := fsm.Encode(&fsm.CreateTopic{Name: "late", Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, _, _, err := postApply(ctx, &http.Client{Transport: late}, lead.mux.Addr(), lead.id, cmd, forwardDeadline(ctx, f1.fsm.Clock()))
	cancel()
	if !errors.Is(err, fsm.ErrOutcomeUnknown) {
		t.Fatalf("the caller's view: %v, want outcome unknown", err)
	}
	sent := time.Now()
	waitFor(t, deadline, "the cluster clock passes the caller's deadline", func() bool {
		for _, n := range c.running() {
			if n.fsm.Clock() <= sent.Add(time.Second).UnixMilli() {
				return false
			}
		}
		return true
	})

	// Deliver to whichever agent leads now (leadership may move under a
	// loaded machine; a follower answers "not the raft leader").
	var status int
	var e rpcError
	waitFor(t, deadline, "a Raft leader answers the late forward", func() bool {
		srv := httptest.NewServer(c.waitLeader(deadline).node.RPCHandler())
		defer srv.Close()
		status, e = late.deliver(t, 0, srv.URL)
		return !strings.Contains(e.Error, "not the raft leader")
	})
	for _, n := range c.running() {
		if _, ok := n.fsm.Topic("late"); ok {
			t.Fatalf("a forward that arrived after its caller's deadline was applied (on %s)", n.id)
		}
	}
	if status != http.StatusServiceUnavailable || e.Outcome != outcomeNotApplied || !strings.Contains(e.Error, "deadline") {
		t.Fatalf("late forward answered %d %+v, want 503 not_applied", status, e)
	}
	// An on-time forward still goes through.
	waitFor(t, deadline, "an on-time forward is applied", func() bool {
		srv := httptest.NewServer(c.waitLeader(deadline).node.RPCHandler())
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, _, _, err := postApply(ctx, srv.Client(), strings.TrimPrefix(srv.URL, "http://"), "leader", cmd, forwardDeadline(ctx, f1.fsm.Clock()))
		if errors.Is(err, fsm.ErrUnavailable) || errors.Is(err, fsm.ErrOutcomeUnknown) {
			return false // leadership moved; try the new leader
		}
		if err == nil && errors.Is(res.Err(), fsm.ErrTopicExists) {
			return true // an earlier attempt with an unknown outcome applied it
		}
		if err != nil || res.Err() != nil {
			t.Fatalf("on-time forward: %v %v", err, res)
		}
		return true
	})
}

// TestLeaderTicksTheClusterClock: the Raft leader (after its barrier) moves
// the cluster clock with its own clock; every agent applies the same
// value; LeaderReady holds only on the leader.
func TestLeaderTicksTheClusterClock(t *testing.T) {
	c := newTestCluster(t)
	offset := 3 * time.Hour
	c.edit = func(cfg *Config) {
		cfg.ClockTickInterval = 20 * time.Millisecond
		cfg.Clock = func() time.Time { return time.Now().Add(offset) }
	}
	c.startBootstrapped("a", "b", "c")
	lead := c.waitLeader(deadline)
	waitFor(t, deadline, "every agent applied a tick", func() bool {
		for _, n := range c.running() {
			if n.fsm.Clock() < time.Now().Add(offset-time.Minute).UnixMilli() {
				return false
			}
		}
		return true
	})
	waitFor(t, deadline, "the leader is ready", func() bool { return lead.node.LeaderReady() })
	for _, f := range c.followers(lead) {
		if f.node.LeaderReady() {
			t.Fatalf("follower %s reports LeaderReady", f.id)
		}
	}
}
