package transport

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestConsolePeerReadsIgnoreGossipAddresses: a process that joined gossip
// (no GOSSIP_KEY) and advertises an HTTP address — its own server, or a
// URL path aimed at an internal service — never receives the caller's
// Authorization header, and nothing of the internal service reaches the
// caller, whether it is in the Raft configuration or not.
func TestConsolePeerReadsIgnoreGossipAddresses(t *testing.T) {
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/meta-data/iam/security-credentials/role" {
			_, _ = io.WriteString(w, "SECRET-CREDS")
			return
		}
		http.NotFound(w, r)
	}))
	defer internal.Close()
	var leaked atomic.Value
	leaked.Store("")
	var hits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		leaked.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, internal.URL+"/latest/meta-data/iam/security-credentials/role", http.StatusFound)
	}))
	defer evil.Close()
	ih := strings.TrimPrefix(internal.URL, "http://")
	eh := strings.TrimPrefix(evil.URL, "http://")
	pathAddr := ih + "/latest/meta-data/iam/security-credentials/role#"
	f := newFakeAgent()
	mux := startPeerMux(t, nil)
	s := NewHTTPServer(HTTPConfig{
		Cluster: staticCluster{NodeID: "a", Members: []ClusterMember{
			{ID: "a", GossipState: "alive", Suffrage: "voter"},
			// Gossip only: never asked.
			{ID: "path", GossipState: "alive", Suffrage: "none", HTTPAddr: pathAddr, PeerAddr: pathAddr},
			{ID: "redir", GossipState: "alive", Suffrage: "none", HTTPAddr: eh, PeerAddr: eh},
			// Admitted, with addresses that are not agents' peer ports.
			{ID: "vpath", GossipState: "alive", Suffrage: "voter", HTTPAddr: pathAddr, PeerAddr: pathAddr},
			{ID: "vredir", GossipState: "alive", Suffrage: "nonvoter", HTTPAddr: eh, PeerAddr: eh}}},
		Durability: fakeDurability{DurabilityStatus{NodeID: "a"}},
		PeerRPC:    mux.RPCClient(),
	}, f, f, f, f)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer sh_victim_token")
		s.Handler().ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "SECRET-CREDS") {
			t.Errorf("%s: the internal service's answer reached the caller: %s", path, rec.Body)
		}
		return rec
	}
	for node, want := range map[string]int{"path": 404, "redir": 404, "vpath": 503, "vredir": 503} {
		if rec := get("/api/v1/metrics/history?node=" + node); rec.Code != want {
			t.Errorf("history of %s: %d %s, want %d", node, rec.Code, rec.Body, want)
		}
	}
	var got DurabilityResponse
	rec := get("/api/v1/durability")
	if err := decodePeerJSON(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("durability: %d %s", rec.Code, rec.Body)
	}
	ids := []string{}
	for _, a := range got.Agents {
		ids = append(ids, a.ID)
		if a.ID != "a" && (a.DurabilityStatus != nil || a.Error == "") {
			t.Errorf("agent %s answered: %+v", a.ID, a)
		}
	}
	if strings.Join(ids, ",") != "a,vpath,vredir" {
		t.Errorf("durability rows %v: want only this agent and the admitted ones", ids)
	}
	if l := leaked.Load().(string); l != "" {
		t.Errorf("the caller's Authorization header was sent to a gossip address: %q", l)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d HTTP requests reached a gossip-advertised address", n)
	}
}

// TestConsolePeerReadsOverPeerChannel: durability and metrics history of
// an admitted agent come over the peer channel (with the cluster secret),
// without the caller's Authorization header, from the agent's own state.
func TestConsolePeerReadsOverPeerChannel(t *testing.T) {
	secret := func(c *PeerConfig) { c.ClusterSecret = []byte("0123456789abcdef0123") }
	ma, mb := startPeerMux(t, nil, secret), startPeerMux(t, nil, secret)
	f := newFakeAgent()
	b := NewHTTPServer(HTTPConfig{Cluster: staticCluster{NodeID: "b"},
		Durability: fakeDurability{DurabilityStatus{NodeID: "b", ClusterUnflushedRecords: 5, OldestUnflushedMs: 1000, NowMs: 4000}}}, f, f, f, f)
	var auth atomic.Int64
	mb.HandleRPC(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			auth.Add(1)
		}
		b.PeerReadHandler().ServeHTTP(w, r)
	}))
	a := NewHTTPServer(HTTPConfig{
		Cluster: staticCluster{NodeID: "a", Members: []ClusterMember{
			{ID: "a", GossipState: "alive", Suffrage: "voter"},
			{ID: "b", GossipState: "alive", Suffrage: "voter", HTTPAddr: "127.0.0.1:1", PeerAddr: mb.Addr()}}},
		Durability: fakeDurability{DurabilityStatus{NodeID: "a", ClusterUnflushedRecords: 4}},
		PeerRPC:    ma.RPCClient(),
	}, f, f, f, f)
	var got DurabilityResponse
	if code := getJSON(t, a.Handler(), "/api/v1/durability", &got); code != http.StatusOK || len(got.Agents) != 2 {
		t.Fatalf("durability: %d %+v", code, got)
	}
	if r := got.Agents[1]; r.ID != "b" || r.DurabilityStatus == nil || r.NodeID != "b" || r.OldestUnflushedAgeMs != 3000 {
		t.Errorf("agent b: %+v (error %q)", r.DurabilityStatus, r.Error)
	}
	if got.RecoveryPoint.RecordsAtRisk != 5 {
		t.Errorf("recovery point %+v", got.RecoveryPoint)
	}
	var h HistoryResponse
	if code := getJSON(t, a.Handler(), "/api/v1/metrics/history?node=b", &h); code != http.StatusOK || h.NodeID != "b" || h.Points == nil {
		t.Errorf("history of b: %d %+v", code, h)
	}
	if n := auth.Load(); n != 0 {
		t.Errorf("%d peer reads carried an Authorization header", n)
	}
	// The peer routes answer only GET, and only their own paths.
	rec := httptest.NewRecorder()
	b.PeerReadHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PeerDurabilityPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d", PeerDurabilityPath, rec.Code)
	}
}

// TestConsolePeerReadsBounded: at most maxPeerFanout agents are asked per
// request, and an answer larger than peerBodyLimit is refused.
func TestConsolePeerReadsBounded(t *testing.T) {
	big := startPeerMux(t, nil)
	big.HandleRPC(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"node_id":"`+strings.Repeat("x", peerBodyLimit)+`"}`)
	}))
	small := startPeerMux(t, nil)
	small.HandleRPC(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusTeapot)
	}))
	ma := startPeerMux(t, nil)
	members := []ClusterMember{{ID: "a", GossipState: "alive", Suffrage: "voter"},
		{ID: "big", GossipState: "alive", Suffrage: "voter", PeerAddr: big.Addr()}}
	for i := range maxPeerFanout + 1 {
		members = append(members, ClusterMember{ID: fmt.Sprintf("m%02d", i),
			GossipState: "alive", Suffrage: "nonvoter", PeerAddr: small.Addr()})
	}
	f := newFakeAgent()
	s := NewHTTPServer(HTTPConfig{Cluster: staticCluster{NodeID: "a", Members: members},
		Durability: fakeDurability{DurabilityStatus{NodeID: "a"}}, PeerRPC: ma.RPCClient()}, f, f, f, f)
	var got DurabilityResponse
	if code := getJSON(t, s.Handler(), "/api/v1/durability", &got); code != http.StatusOK || len(got.Agents) != len(members) {
		t.Fatalf("durability: %d, %d rows", code, len(got.Agents))
	}
	if b := got.Agents[1]; b.DurabilityStatus != nil || !strings.Contains(b.Error, "larger than") {
		t.Errorf("oversize answer: %+v", b)
	}
	var refused, notAsked int
	for _, a := range got.Agents[2:] {
		switch {
		case a.DurabilityStatus != nil:
			t.Errorf("agent %s answered", a.ID)
		case a.Error == "HTTP 418":
			refused++
		case strings.Contains(a.Error, "not asked"):
			notAsked++
		default:
			t.Errorf("agent %s: %q", a.ID, a.Error)
		}
	}
	if refused != maxPeerFanout-1 || notAsked != 2 {
		t.Errorf("%d asked, %d not asked; want %d and 2", refused, notAsked, maxPeerFanout-1)
	}
}
