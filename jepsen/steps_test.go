package main

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/checker"
	"github.com/streamhouse/streamhouse/jepsen/history"
)

func TestRecoveryPoint(t *testing.T) {
	acked := map[int32]int64{1: 3}
	ackedBefore([]history.Op{
		{F: history.FSend, Type: history.OK, P: 0, O: 9},
		{F: history.FSend, Type: history.OK, P: 0, O: 4},
		{F: history.FSend, Type: history.Info, P: 1, O: 50},
		{F: history.FPoll, Type: history.OK, P: 1, O: 60},
	}, acked)
	if want := map[int32]int64{0: 10, 1: 3}; !maps.Equal(acked, want) {
		t.Fatalf("acked = %v, want %v", acked, want)
	}
	got := recoveryPoint(map[int32]int64{0: 7, 1: 0}, acked)
	if want := "p0: flushed >= 7 of 10 acked, p1: flushed >= 0 of 3 acked"; got != want {
		t.Fatalf("recovery point = %q, want %q", got, want)
	}
}

func TestRestoreGaps(t *testing.T) {
	var rr restoreReport
	if err := json.Unmarshal([]byte(`{"partitions_restored": [
		{"topic": "jepsen", "partition": 0, "recovered_to": 10, "resume_at": 100010},
		{"topic": "jepsen", "partition": 1, "recovered_to": 5, "resume_at": 5},
		{"topic": "other", "partition": 0, "recovered_to": 1, "resume_at": 9},
		{"topic": "jepsen", "partition": 0, "recovered_to": 200000, "resume_at": 300000}]}`), &rr); err != nil {
		t.Fatal(err)
	}
	gaps := map[int32][]checker.Range{}
	restoreGaps(rr, gaps)
	want := []checker.Range{{From: 10, To: 100010}, {From: 200000, To: 300000}}
	if len(gaps) != 1 || !slices.Equal(gaps[0], want) {
		t.Fatalf("gaps = %v, want partition 0: %v", gaps, want)
	}
}

func TestVerdictAndExitCode(t *testing.T) {
	ok := RunResult{Counts: map[string]int{"lost-write": 0}}
	bad := RunResult{Anomalies: 2, Counts: map[string]int{"lost-write": 2, "unseen": 0}, Errors: []string{"x"}}
	failed := RunResult{Errors: []string{"cluster: boom", "y"}}
	cases := []struct {
		res  RunResult
		want string
	}{{ok, "ok"}, {bad, "ANOMALIES map[lost-write:2]"}, {failed, "ERROR cluster: boom"}}
	for _, c := range cases {
		if got := verdict(c.res); got != c.want {
			t.Errorf("verdict = %q, want %q", got, c.want)
		}
	}
	if got := exitCode([]RunResult{ok, ok}, 2); got != 0 {
		t.Errorf("all ok: exit %d", got)
	}
	if got := exitCode([]RunResult{ok}, 2); got != 1 {
		t.Errorf("cut short: exit %d", got)
	}
	if got := exitCode([]RunResult{ok, failed}, 2); got != 1 {
		t.Errorf("an error: exit %d", got)
	}
}
