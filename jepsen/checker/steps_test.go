package checker

import (
	"reflect"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

func TestKeyedConflicts(t *testing.T) {
	m := keyed{}
	// partition 1, key 7: one other coordinate, seen twice: no conflict.
	m.add(1, 7, 3, 10)
	m.add(1, 7, 3, 11)
	// partition 1, key 2: others 9 and 4 (first seen by ops 12 and 13).
	m.add(1, 2, 9, 12)
	m.add(1, 2, 4, 13)
	m.add(1, 2, 9, 14)
	// partition 0, key 5: others 1, 2, 3.
	m.add(0, 5, 3, 20)
	m.add(0, 5, 1, 21)
	m.add(0, 5, 2, 22)
	want := []conflict{
		{pkey: pkey{0, 5}, others: []int64{1, 2, 3}, ops: []int64{21, 22, 20}},
		{pkey: pkey{1, 2}, others: []int64{4, 9}, ops: []int64{13, 12}},
	}
	if got := m.conflicts(); !reflect.DeepEqual(got, want) {
		t.Fatalf("conflicts = %+v, want %+v", got, want)
	}
	if got := (keyed{}).conflicts(); got != nil {
		t.Fatalf("conflicts of nothing = %+v", got)
	}
}

func TestCommitFloor(t *testing.T) {
	evs := []commitEv{
		{o: 5, inv: 1, complete: 2, t: history.OK},
		{o: 9, inv: 3, complete: 8, t: history.OK},    // completes after the read below is invoked
		{o: 7, inv: 4, complete: 5, t: history.Info},  // not acknowledged
		{o: 6, inv: 4, complete: -1, t: history.Info}, // never completed
		{o: 4, inv: 5, complete: 6, t: history.OK},
	}
	cases := []struct {
		name     string
		disaster int64
		readInv  int64
		want     int // index into evs, -1 for none
	}{
		{"nothing completed yet", -1, 2, -1},
		{"the highest acknowledged before the read", -1, 7, 0},
		{"a later acknowledgement raises it", -1, 9, 1},
		{"commits before the disaster do not floor a read after it", 3, 7, 4},
		{"after the disaster, only commits completed after it", 7, 9, 1},
		{"a disaster before every completion changes nothing", 1, 7, 0},
		{"a read before the disaster", 5, 4, 0},
	}
	for _, tc := range cases {
		c := &checker{disaster: tc.disaster}
		got := c.commitFloor(evs, tc.readInv)
		var want *commitEv
		if tc.want >= 0 {
			want = &evs[tc.want]
		}
		if got != want {
			t.Errorf("%s: floor = %+v, want %+v", tc.name, got, want)
		}
	}
}

func TestExcusedRegression(t *testing.T) {
	floor := &commitEv{o: 10, inv: 5, complete: 6, t: history.OK}
	cases := []struct {
		name string
		ev   commitEv
		want bool
	}{
		{"pending commit of the value read", commitEv{o: 4, inv: 3, complete: -1, t: history.Info}, true},
		{"indefinite commit of the value read", commitEv{o: 4, inv: 3, complete: 4, t: history.Info}, true},
		{"acknowledged after the floor was invoked", commitEv{o: 4, inv: 3, complete: 7, t: history.OK}, true},
		{"acknowledged before the floor was invoked", commitEv{o: 4, inv: 1, complete: 2, t: history.OK}, false},
		{"failed", commitEv{o: 4, inv: 3, complete: 7, t: history.Fail}, false},
		{"another value", commitEv{o: 5, inv: 3, complete: -1, t: history.Info}, false},
		{"invoked after the read completed", commitEv{o: 4, inv: 20, complete: -1, t: history.Info}, false},
	}
	for _, tc := range cases {
		evs := []commitEv{*floor, tc.ev}
		if got := excusedRegression(evs, 4, 12, floor); got != tc.want {
			t.Errorf("%s: excused = %v, want %v", tc.name, got, tc.want)
		}
	}
}
