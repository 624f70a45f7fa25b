package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport"
)

// produceRoundRetrying is produceRound through base, retried while the
// cluster elects a new leader.
func produceRoundRetrying(t *testing.T, base string, parts, n int, round string) []string {
	t.Helper()
	var vals []string
	for p := 0; p < parts; p++ {
		var recs []map[string]any
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("%s-p%d-%d", round, p, i)
			recs = append(recs, map[string]any{"partition": p, "value": v})
			vals = append(vals, v)
		}
		waitFor(t, 30*time.Second, "produce to kg/"+fmt.Sprint(p), func() bool {
			code, err := tryCall("POST", base+"/api/v1/produce/batch", map[string]any{"topic": "kg", "records": recs}, nil)
			return err == nil && code == 200
		})
	}
	return vals
}

// TestKafkaGroupCoordinatorFailover: three agent processes, a group of
// two kgo members; SIGKILL the Raft leader (the coordinator): the
// members find the new coordinator, keep consuming every record, and a
// third member joining afterwards gets its share.
func TestKafkaGroupCoordinatorFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "3 voters and a leader", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	leader := nodeIndex(st.Leader)
	survivor := (leader + 1) % 3
	const parts = 6
	createTopic(t, c.base(survivor), "kg", parts)
	o := newOwnership()
	want := produceRoundRetrying(t, c.base(survivor), parts, 10, "r0")
	seeds := strings.Join(c.kafkaAddrs(), ",")
	groupMember(t, seeds, "fo", "m1", o)
	groupMember(t, seeds, "fo", "m2", o)
	waitFor(t, 30*time.Second, "m1 and m2 share the partitions", func() bool { return o.settled(parts, "m1", "m2") })
	o.consumedAll(t, want, "round 0 consumed")

	c.procs[leader].kill(t)
	t.Logf("killed the Raft leader node-%d", leader+1)
	want = append(want, produceRoundRetrying(t, c.base(survivor), parts, 10, "r1")...)
	waitFor(t, 60*time.Second, "round 1 consumed after the coordinator failover", func() bool { return len(o.missing(want)) == 0 })

	alive := append(append([]string{}, c.kafkaAddrs()[:leader]...), c.kafkaAddrs()[leader+1:]...)
	groupMember(t, strings.Join(alive, ","), "fo", "m3", o)
	waitFor(t, 30*time.Second, "m3 joins through the new coordinator", func() bool { return o.settled(parts, "m1", "m2", "m3") })
	want = append(want, produceRoundRetrying(t, c.base(survivor), parts, 10, "r2")...)
	o.consumedAll(t, want, "round 2 consumed")
	o.check(t)
}
