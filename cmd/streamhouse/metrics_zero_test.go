package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/transport"
)

// TestFreshAgentExportsCountersAtZero: the labelled counters that alerts
// and dashboards use exist at 0 on a fresh agent, for every label value
// they can take, so panels show 0 rather than "no data" and rate() sees
// the first increment.
func TestFreshAgentExportsCountersAtZero(t *testing.T) {
	a, base := startTestAgent(t, testConfig(t, t.TempDir()))
	defer a.Close(context.Background())
	text := scrape(t, base)

	want := map[string][]string{
		"streamhouse_errors_total{kind=%q}":                                        append(transport.ErrorCodes(), partition.ErrorKinds...),
		"streamhouse_partition_leadership_changes_total{reason=%q}":                {"unassigned", "not_member", "failover", "rebalance"},
		"streamhouse_raft_membership_changes_total{change=%q}":                     {"add_nonvoter", "promote", "remove", "update_address"},
		"streamhouse_raft_forwarded_proposals_total{outcome=%q}":                   {"ok", "not_applied", "unknown", "invalid"},
		"streamhouse_raft_rpcs_refused_total{rpc=%q}":                              {"request_vote", "request_pre_vote", "append_entries", "heartbeat", "install_snapshot", "timeout_now"},
		"streamhouse_quota_throttled_total{quota=%q}":                              {"producer_byte_rate", "consumer_byte_rate", "controller_mutation_rate"},
		`streamhouse_s3_requests_total{backend="local",operation="put",result=%q}`: {"ok", "error"},
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		lines[l] = true
	}
	for format, values := range want {
		for _, v := range values {
			if series := fmt.Sprintf(format, v) + " 0"; !lines[series] {
				t.Errorf("a fresh agent's /metrics lacks %s", series)
			}
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}
