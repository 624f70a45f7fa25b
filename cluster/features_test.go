package cluster

import (
	"testing"

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
