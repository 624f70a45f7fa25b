package nemesis

import (
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/control"
)

func TestCompatibleNeverCombinesWipeWithKills(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{Wipe, KillAll, Pause}, []string{Wipe, Pause}},
		{[]string{KillMajority, Wipe}, []string{Wipe}},
		{[]string{KillOne, PartitionHalves}, []string{KillOne, PartitionHalves}},
		{[]string{Wipe, S3Outage}, []string{Wipe, S3Outage}},
		{[]string{Pause, WipeKill, Wipe}, []string{Pause, WipeKill}},
		{[]string{KillMajorityWipe, KillLeader, PartitionOne}, []string{KillMajorityWipe, PartitionOne}},
		{[]string{KillOne, WipeKill}, []string{WipeKill}},
	}
	for _, c := range cases {
		if got := compatible(slices.Clone(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("compatible(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestAsymmetricCuts(t *testing.T) {
	all := control.ClassAll
	cases := []struct {
		agents, i int
		inbound   bool
		want      []control.Cut
	}{
		{3, 1, true, []control.Cut{{From: 0, To: 1, Class: all}, {From: 2, To: 1, Class: all}}},
		{3, 1, false, []control.Cut{{From: 1, To: 0, Class: all}, {From: 1, To: 2, Class: all}}},
		{5, 0, false, []control.Cut{{From: 0, To: 1, Class: all}, {From: 0, To: 2, Class: all}, {From: 0, To: 3, Class: all}, {From: 0, To: 4, Class: all}}},
		{1, 0, true, nil},
	}
	for _, c := range cases {
		if got := asymmetricCuts(c.agents, c.i, c.inbound); !slices.Equal(got, c.want) {
			t.Errorf("asymmetricCuts(%d, %d, %v) = %v, want %v", c.agents, c.i, c.inbound, got, c.want)
		}
	}
}
