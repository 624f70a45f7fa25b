package nemesis

import (
	"slices"
	"testing"
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
