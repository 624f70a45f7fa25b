package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/jepsen/workload"
)

func names(runs []runSpec) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.name())
	}
	return out
}

// TestPlanClients: gRPC by default; the smoke profile adds its Kafka runs
// unless -clients is given; -clients is an axis over every class.
func TestPlanClients(t *testing.T) {
	smoke, err := plan(options{profile: "smoke", seed: 1, seeds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(smoke) != len(smokeClasses)+len(smokeKafkaClasses) {
		t.Fatalf("smoke runs %v", names(smoke))
	}
	for i, r := range smoke {
		want := workload.ClientGRPC
		if i >= len(smokeClasses) {
			want = workload.ClientKafka
		}
		if r.client != want {
			t.Fatalf("smoke run %d: %+v, want client %s", i, r, want)
		}
	}
	if got := smoke[len(smokeClasses)].name(); got != "kill-leader-kafka-s1" {
		t.Fatalf("first Kafka run's directory %q", got)
	}
	if got := smoke[0].name(); got != "kill-leader-s1" {
		t.Fatalf("gRPC run's directory %q (unchanged from before the Kafka mode)", got)
	}

	onlyKafka, err := plan(options{profile: "smoke", seed: 1, seeds: 1, clients: []string{"kafka"}})
	if err != nil || len(onlyKafka) != len(smokeClasses) || onlyKafka[0].client != workload.ClientKafka {
		t.Fatalf("-clients kafka: %v %v", names(onlyKafka), err)
	}
	axis, err := plan(options{class: "pause,kill-one", seed: 3, seeds: 2, clients: []string{"grpc", "kafka"}})
	want := []string{"pause-s3", "pause-s4", "kill-one-s3", "kill-one-s4", "pause-kafka-s3", "pause-kafka-s4", "kill-one-kafka-s3", "kill-one-kafka-s4"}
	if err != nil || !slices.Equal(names(axis), want) {
		t.Fatalf("axis: %v %v, want %v", names(axis), err, want)
	}
	if _, err := plan(options{class: "pause", seeds: 1, clients: []string{"rest"}}); err == nil || !strings.Contains(err.Error(), "rest") {
		t.Fatalf("unknown client mode: %v", err)
	}
}

func TestClassLabelGroupsRuns(t *testing.T) {
	rows := classStatsOf([]RunResult{
		{Class: "pause", Client: "grpc", SendsOK: 1},
		{Class: "pause", SendsOK: 2}, // results from before the Kafka mode
		{Class: "pause", Client: "kafka", SendsOK: 4},
	})
	if len(rows) != 2 || rows[0].row.Class != "pause" || rows[0].row.Acked != 3 || rows[1].row.Class != "pause (kafka)" || rows[1].row.Acked != 4 {
		t.Fatalf("rows %+v %+v", rows[0].row, rows[len(rows)-1].row)
	}
}

// TestProducerTail: a producer that stops being acknowledged while
// another goes on is named with its sends after its last acknowledgement.
func TestProducerTail(t *testing.T) {
	s := func(sec float64) int64 { return int64(sec * float64(time.Second)) }
	var ops []history.Op
	send := func(proc int, inv, done float64, typ history.Type) {
		ops = append(ops, history.Op{F: history.FSend, Process: proc, Type: history.Invoke, Time: s(inv)},
			history.Op{F: history.FSend, Process: proc, Type: typ, Time: s(done)})
	}
	for sec := 0.0; sec < 40; sec += 0.1 {
		send(3, sec, sec+0.05, history.OK) // acknowledged throughout
	}
	send(3, 40, 41, history.Info) // an unknown outcome at the end is not a wedge
	send(1, 0, 1, history.OK)
	send(1, 2.5, 60, history.OK) // acknowledged late, when the client stopped
	for sec := 3.0; sec < 40; sec += 0.1 {
		send(1, sec, sec+15, history.Info) // wedged from here on
	}
	ops = append(ops, history.Op{F: history.FPoll, Process: 5, Type: history.OK, Time: s(50)})
	got := producerTail(ops)
	if got.Process != 1 || got.Sends != 370 || got.LastAckS != 2.5 {
		t.Fatalf("tail %+v, want process 1, 370 sends, last acknowledged send at 2.5 s", got)
	}
	line := verdict(RunResult{ProcTail: got})
	if want := "ok (producer process 1: 370 sends after its last acknowledged one (sent at 2.5 s))"; line != want {
		t.Fatalf("verdict %q, want %q", line, want)
	}
	if v := verdict(RunResult{ProcTail: ProcTail{Process: 3, Sends: 1, LastAckS: 39.9}}); v != "ok" {
		t.Fatalf("a healthy tail is named: %q", v)
	}
}
