package main

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport"
)

// TestJoinerMustShareTheObjectStore: agents use local object directories.
// A joiner whose directory is private cannot read the leader's probe
// object: it is never added to Raft and its /ready says why. A joiner that
// points OBJECT_STORE_DIR at the same directory is admitted and promoted.
func TestJoinerMustShareTheObjectStore(t *testing.T) {
	root := t.TempDir()
	c1 := testConfig(t, filepath.Join(root, "a1"))
	a1, base1 := startTestAgent(t, c1)
	defer a1.Close(context.Background())
	join := "127.0.0.1:" + strconv.Itoa(c1.GossipPort)

	c2 := testConfig(t, filepath.Join(root, "a2")) // OBJECT_STORE_DIR defaults to its own DATA_DIR/objects
	c2.NodeID, c2.Join = "agent-2", join
	a2, err := startAgent(context.Background(), c2)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close(context.Background())
	base2 := "http://" + a2.http.Addr()
	var r struct {
		Reason string `json:"reason"`
	}
	waitFor(t, 30*time.Second, "the private-store joiner's /ready names the object store", func() bool {
		code, err := tryCall("GET", base2+"/ready", nil, &r)
		return err == nil && code == 503 && strings.Contains(r.Reason, "object store not shared")
	})
	t.Logf("/ready of the private-store joiner: %s", r.Reason)
	if !strings.Contains(r.Reason, "OBJECT_STORE_DIR") {
		t.Errorf("reason does not say how to fix it: %s", r.Reason)
	}

	c3 := testConfig(t, filepath.Join(root, "a3"))
	c3.NodeID, c3.Join, c3.ObjectStoreDir = "agent-3", join, c1.ObjectStoreDir
	a3, base3 := startTestAgent(t, c3)
	defer a3.Close(context.Background())
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "the shared-store joiner is a voter", func() bool {
		code, err := tryCall("GET", base1+"/api/v1/cluster", nil, &st)
		return err == nil && code == 200 && slices.Contains(st.Voters, "agent-3")
	})
	if slices.Contains(st.Voters, "agent-2") || slices.Contains(st.NonVoters, "agent-2") {
		t.Errorf("the private-store joiner is in the raft configuration: voters %v, non-voters %v", st.Voters, st.NonVoters)
	}
	if code, err := tryCall("GET", base3+"/ready", nil, nil); err != nil || code != 200 {
		t.Errorf("shared-store joiner not ready: %d %v", code, err)
	}
	if code, _ := tryCall("GET", base2+"/ready", nil, nil); code != 503 {
		t.Errorf("private-store joiner became ready: %d", code)
	}
}
