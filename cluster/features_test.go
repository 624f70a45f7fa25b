package cluster

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestMembersAt: a level above this agent's is never reached; one the
// replicated state requires is reached without asking gossip; otherwise
// gossip decides.
func TestMembersAt(t *testing.T) {
	asked := 0
	gossip := func(v bool) func() bool { return func() bool { asked++; return v } }
	if membersAt(fsm.FeatureLevel+1, fsm.FeatureLevel+1, gossip(true)) {
		t.Fatal("a level above this agent's own was reached")
	}
	if !membersAt(fsm.FeatureEpochBump, requiredFeatures(1, 1, true), gossip(false)) || asked != 0 {
		t.Fatalf("a level the state requires: asked gossip %d times", asked)
	}
	if membersAt(fsm.FeatureEpochBump, requiredFeatures(1, 1, false), gossip(false)) || asked != 1 {
		t.Fatal("an older member in gossip did not hold the level back")
	}
	if !membersAt(fsm.FeatureEpochBump, requiredFeatures(1, 1, false), gossip(true)) {
		t.Fatal("every member at the level in gossip, not reached")
	}
}

// A joining agent needs the highest level every current member advertises,
// not only what the state already uses: proposers may start writing that
// level's commands at any moment (MembersAt, with a cached gossip verdict),
// and an agent below it admitted meanwhile would stop on the first one.
func TestJoinLevelFollowsTheMembers(t *testing.T) {
	at := func(level int) gossipMember { return gossipMember{MetaOK: true, Meta: nodeMeta{Features: level}} }
	servers := []raft.Server{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	top := fsm.FeatureLevel
	for _, tc := range []struct {
		name     string
		required int
		members  map[string]gossipMember
		want     int
	}{
		{"every member at this version", 2, map[string]gossipMember{"b": at(top), "c": at(top)}, top},
		{"one member older", 2, map[string]gossipMember{"b": at(top), "c": at(3)}, 3},
		{"a member unknown to gossip", 2, map[string]gossipMember{"b": at(top)}, 2},
		{"the state requires more than gossip shows", top, map[string]gossipMember{"b": at(2), "c": at(2)}, top},
	} {
		if got := joinLevel(tc.required, "a", servers, tc.members); got != tc.want {
			t.Errorf("%s: join level %d, want %d", tc.name, got, tc.want)
		}
	}
}
