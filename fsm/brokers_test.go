package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestRegisterBrokerAllocatesSmallestFreeAndKeepsIDs(t *testing.T) {
	h := newHarness(t)
	for i, n := range []string{"a", "b", "c"} {
		if got := h.mustOK(&RegisterBroker{Node: n}).BrokerID; got != int32(i+1) {
			t.Fatalf("%s: broker ID %d, want %d", n, got, i+1)
		}
	}
	// Registering again keeps the ID.
	if got := h.mustOK(&RegisterBroker{Node: "b"}).BrokerID; got != 2 {
		t.Fatalf("b re-registered as %d", got)
	}
	// An unregistered ID is free again, and goes to the next new node.
	h.mustOK(&RegisterBroker{Node: "b", Remove: true})
	if _, ok := h.f.BrokerID("b"); ok {
		t.Fatal("b still registered")
	}
	h.mustOK(&RegisterBroker{Node: "b", Remove: true}) // no-op
	if got := h.mustOK(&RegisterBroker{Node: "d"}).BrokerID; got != 2 {
		t.Fatalf("d got %d, want the freed 2", got)
	}
	if got := h.mustOK(&RegisterBroker{Node: "b"}).BrokerID; got != 4 {
		t.Fatalf("b came back as %d, want 4", got)
	}
	want := map[string]int32{"a": 1, "c": 3, "d": 2, "b": 4}
	if got := h.f.BrokerIDs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("brokers %v, want %v", got, want)
	}
	if err := h.apply(&RegisterBroker{}).Err(); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("empty node: %v", err)
	}
	assertCodecRoundTrip(t, []Command{&RegisterBroker{Node: "x"}, &RegisterBroker{Node: "y", Remove: true}})
}

func TestSnapshotCarriesBrokerIDs(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&RegisterBroker{Node: "a"})
	h.mustOK(&RegisterBroker{Node: "b"})
	h2 := snapshotRoundTrip(t, h)
	if got := h2.f.BrokerIDs(); !reflect.DeepEqual(got, map[string]int32{"a": 1, "b": 2}) {
		t.Fatalf("restored brokers %v", got)
	}
	if got := h2.mustOK(&RegisterBroker{Node: "c"}).BrokerID; got != 3 {
		t.Fatalf("c after restore: %d", got)
	}
	// A snapshot without brokers (older agents wrote none) restores with
	// none registered.
	h3 := snapshotRoundTrip(t, newHarness(t))
	if got := h3.f.BrokerIDs(); len(got) != 0 {
		t.Fatalf("brokers from an empty snapshot: %v", got)
	}
}

func TestBrokerSectionRejectsDuplicatesAndFutureVersions(t *testing.T) {
	st := newState()
	st.Brokers = map[string]int32{"a": 1}
	good := encodeBrokers(st)[1:]
	if err := decodeBrokers(good, newState()); err != nil {
		t.Fatal(err)
	}
	future := append([]byte{brokersSectionVersion + 1}, good[1:]...)
	e := enc{}
	e.u8(brokersSectionVersion)
	e.uv(2)
	e.str("a")
	e.iv(1)
	e.str("b")
	e.iv(1)
	dup := e.b
	for name, b := range map[string][]byte{"future": future, "duplicate ID": dup, "truncated": good[:len(good)-1]} {
		if err := decodeBrokers(b, newState()); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}
	// The whole snapshot still refuses truncation with the new item.
	h := newHarness(t)
	h.mustOK(&RegisterBroker{Node: "a"})
	snap, _ := h.f.Snapshot()
	var buf bufSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if err := newHarness(t).f.Restore(io.NopCloser(bytes.NewReader(full[:len(full)-2]))); err == nil {
		t.Fatal("truncated snapshot restored")
	}
}
