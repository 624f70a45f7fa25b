package client

import (
	"reflect"
	"testing"
)

func TestAssignors(t *testing.T) {
	subs := map[string][]string{"b": {"t", "u"}, "a": {"t"}, "c": {"t", "u"}}
	counts := map[string]int32{"t": 5, "u": 2}
	got := AssignRange(subs, counts)
	want := map[string]map[string][]int32{
		"a": {"t": {0, 1}},
		"b": {"t": {2, 3}, "u": {0}},
		"c": {"t": {4}, "u": {1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("range = %v, want %v", got, want)
	}
	rr := AssignRoundRobin(subs, counts)
	seen := map[string]map[int32]bool{}
	for m, tps := range rr {
		for topic, ps := range tps {
			for _, p := range ps {
				if seen[topic] == nil {
					seen[topic] = map[int32]bool{}
				}
				if seen[topic][p] {
					t.Fatalf("round robin gives %s/%d twice", topic, p)
				}
				seen[topic][p] = true
				if topic == "u" && m == "a" {
					t.Fatal("round robin gives a topic to a member not subscribed to it")
				}
			}
		}
	}
	if len(seen["t"]) != 5 || len(seen["u"]) != 2 {
		t.Fatalf("round robin left partitions out: %v", rr)
	}
}
