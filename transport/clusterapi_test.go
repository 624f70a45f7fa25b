package transport

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

type staticCluster ClusterStatus

func (c staticCluster) ClusterStatus() ClusterStatus { return ClusterStatus(c) }

func TestClusterEndpoint(t *testing.T) {
	f := newFakeAgent()
	s := NewHTTPServer(HTTPConfig{Cluster: staticCluster{NodeID: "b", Leader: "a", Term: 3, CommitIndex: 9, AppliedIndex: 9,
		Voters: []string{"a", "b"}, Members: []ClusterMember{
			{ID: "b", GossipState: "alive", Suffrage: "voter"},
			{ID: "a", GossipState: "alive", Suffrage: "voter", RaftLeader: true, Leaderships: []string{"t/0"}},
		}}}, f, f, f, f)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/cluster", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got ClusterStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Leader != "a" || got.Term != 3 || len(got.Members) != 2 || got.Members[0].ID != "a" || got.Members[0].Leaderships[0] != "t/0" || got.Members[1].Leaderships == nil || got.NonVoters == nil {
		t.Fatalf("body %+v", got)
	}
	// Without cluster info: a JSON 404.
	s2 := NewHTTPServer(HTTPConfig{}, f, f, f, f)
	rec = httptest.NewRecorder()
	s2.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/cluster", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("no cluster info: %d", rec.Code)
	}
}
