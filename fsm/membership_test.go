package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func member(id string) GroupMember {
	return GroupMember{ID: id, ClientID: "c-" + id, ClientHost: "/127.0.0.1", SessionTimeoutMs: 10000, RebalanceTimeoutMs: 20000, Metadata: []byte("meta-" + id)}
}

func joinCmd(group string, prev int32, leader string, ids ...string) *GroupJoin {
	c := &GroupJoin{Group: group, PrevGeneration: prev, ProtocolType: "consumer", Protocol: "range", Leader: leader, Timestamp: 7}
	for _, id := range ids {
		c.Members = append(c.Members, member(id))
	}
	return c
}

func TestMembershipCommandsCodecRoundTrip(t *testing.T) {
	assertCodecRoundTrip(t, []Command{
		joinCmd("g", 3, "b", "b", "a"),
		&GroupJoin{Group: "g", PrevGeneration: 0, ProtocolType: "consumer", Protocol: "range", Leader: "a", Members: []GroupMember{member("a")}, MaxGroups: 9},
		&GroupSync{Group: "g", Generation: 4, Timestamp: 8, Assignments: []MemberAssignment{{MemberID: "a", Assignment: []byte{1}}, {MemberID: "b", Assignment: []byte{}}}},
		&GroupRemoveMembers{Group: "g", Generation: 4, MemberIDs: []string{"a"}, Timestamp: 9},
		&CommitOffsets{Group: "g", Timestamp: 3, Offsets: []OffsetCommit{{TopicID: 7, Partition: 1, Offset: 10}}, MemberID: "a", Generation: 4},
		&CommitOffsets{Group: "g", Timestamp: 3, Offsets: []OffsetCommit{{TopicID: 7, Partition: 1, Offset: 10}}, MemberID: "a", Generation: 0, MaxGroups: 5},
	})
	// A plain commit keeps its old payload versions (older agents decode it).
	if b := Encode(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: 1}}}); b[1] != 1 {
		t.Fatalf("plain commit written in version %d", b[1])
	}
}

// TestMembershipGenerations walks a group through Kafka's states: join
// (CompletingRebalance), sync (Stable), a member leaving
// (PreparingRebalance), the next generation, the last member leaving
// (Empty, a new generation).
func TestMembershipGenerations(t *testing.T) {
	h := newHarness(t)
	h.mustOK(joinCmd("g", 0, "a", "b", "a"))
	m, ok := h.f.Membership("g")
	if !ok || m.Generation != 1 || m.State != GroupStateCompletingRebalance || m.Leader != "a" || len(m.Members) != 2 || m.Members[0].ID != "a" {
		t.Fatalf("after join: %+v", m)
	}
	// A second join for generation 0 (a deposed coordinator) is refused.
	if r := h.apply(joinCmd("g", 0, "x", "x")); !errors.Is(r.Err(), ErrIllegalGeneration) {
		t.Fatalf("stale join: %v", r.Err())
	}
	// Assignments for another generation, or naming a stranger, are refused.
	if r := h.apply(&GroupSync{Group: "g", Generation: 2}); !errors.Is(r.Err(), ErrIllegalGeneration) {
		t.Fatalf("sync of a future generation: %v", r.Err())
	}
	if r := h.apply(&GroupSync{Group: "g", Generation: 1, Assignments: []MemberAssignment{{MemberID: "z"}}}); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("sync naming a stranger: %v", r.Err())
	}
	h.mustOK(&GroupSync{Group: "g", Generation: 1, Assignments: []MemberAssignment{{MemberID: "a", Assignment: []byte("pa")}, {MemberID: "b", Assignment: []byte("pb")}}})
	m, _ = h.f.Membership("g")
	if m.State != GroupStateStable || string(m.Members[1].Assignment) != "pb" {
		t.Fatalf("after sync: %+v", m)
	}
	// A second sync of the same generation is refused (it is Stable).
	if r := h.apply(&GroupSync{Group: "g", Generation: 1}); !errors.Is(r.Err(), ErrIllegalGeneration) {
		t.Fatalf("second sync: %v", r.Err())
	}
	h.mustOK(&GroupRemoveMembers{Group: "g", Generation: 1, MemberIDs: []string{"a"}})
	m, _ = h.f.Membership("g")
	if m.State != GroupStatePreparingRebalance || len(m.Members) != 1 || m.Leader != "" || m.Generation != 1 {
		t.Fatalf("after leave: %+v", m)
	}
	if r := h.apply(&GroupRemoveMembers{Group: "g", Generation: 1, MemberIDs: []string{"a"}}); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("removing a removed member: %v", r.Err())
	}
	h.mustOK(joinCmd("g", 1, "b", "b"))
	h.mustOK(&GroupRemoveMembers{Group: "g", Generation: 2, MemberIDs: []string{"b"}})
	m, _ = h.f.Membership("g")
	if m.State != GroupStateEmpty || m.Generation != 3 || len(m.Members) != 0 || m.Protocol != "" {
		t.Fatalf("after the last member left: %+v", m)
	}
	if got := h.f.GroupNames(); !reflect.DeepEqual(got, []string{"g"}) {
		t.Fatalf("group names = %v", got)
	}
	h.mustOK(&DeleteGroup{Group: "g"})
	if _, ok := h.f.Membership("g"); ok {
		t.Fatal("membership survives DeleteGroup")
	}
}

func TestJoinValidation(t *testing.T) {
	h := newHarness(t)
	for name, c := range map[string]*GroupJoin{
		"no members":     joinCmd("g", 0, "a"),
		"leader missing": joinCmd("g", 0, "z", "a"),
		"duplicate":      joinCmd("g", 0, "a", "a", "a"),
		"no protocol":    {Group: "g", ProtocolType: "consumer", Leader: "a", Members: []GroupMember{member("a")}},
		"bad name":       joinCmd("a/b", 0, "a", "a"),
	} {
		if r := h.apply(c); !errors.Is(r.Err(), ErrInvalidCommand) {
			t.Errorf("%s: %v", name, r.Err())
		}
	}
	tid := h.mustOK(&CreateTopic{Name: "t", Partitions: 1}).TopicID
	c := joinCmd("g2", 0, "a", "a")
	c.MaxGroups = 1
	h.mustOK(&CommitOffsets{Group: "g1", Offsets: []OffsetCommit{{TopicID: tid, Partition: 0, Offset: 0}}})
	if r := h.apply(c); !errors.Is(r.Err(), ErrLimitExceeded) {
		t.Fatalf("join past MAX_GROUPS: %v", r.Err())
	}
}

// TestCommitGenerationChecks: a member commits only in the current
// generation; a commit without a member only when the group has none.
func TestCommitGenerationChecks(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n1"}}).TopicID
	h.mustOK(appendCmd(id, 0, 1, "a", "b", "c"))
	commit := func(member string, gen int32, off int64) *Result {
		return h.apply(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: off}}, MemberID: member, Generation: gen})
	}
	if err := commit("", 0, 1).Err(); err != nil {
		t.Fatalf("simple commit to a group without members: %v", err)
	}
	if r := commit("a", 1, 1); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("member commit before any join: %v", r.Err())
	}
	h.mustOK(joinCmd("g", 0, "a", "a", "b"))
	if err := commit("a", 1, 2).Err(); err != nil {
		t.Fatalf("current generation: %v", err)
	}
	if r := commit("", 0, 3); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("simple commit to an active group: %v", r.Err())
	}
	if r := commit("z", 1, 3); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("stranger: %v", r.Err())
	}
	h.mustOK(&GroupRemoveMembers{Group: "g", Generation: 1, MemberIDs: []string{"b"}})
	if r := commit("b", 1, 3); !errors.Is(r.Err(), ErrUnknownMember) {
		t.Fatalf("removed member: %v", r.Err())
	}
	// In PreparingRebalance the remaining member still commits (before it
	// rejoins), then the new generation refuses the old one.
	if err := commit("a", 1, 3).Err(); err != nil {
		t.Fatalf("commit while preparing: %v", err)
	}
	h.mustOK(joinCmd("g", 1, "a", "a"))
	if r := commit("a", 1, 0); !errors.Is(r.Err(), ErrIllegalGeneration) {
		t.Fatalf("stale generation: %v", r.Err())
	}
	offs, _ := h.f.GroupOffsets("g")
	if got := offs[PartitionKey{id, 0}].Offset; got != 3 {
		t.Fatalf("committed offset = %d, want 3 (refused commits changed nothing)", got)
	}
	if r := h.apply(&DeleteGroup{Group: "g"}); !errors.Is(r.Err(), ErrGroupNotEmpty) {
		t.Fatalf("delete of an active group: %v", r.Err())
	}
}

// TestMembershipSnapshotRoundTrip: memberships travel in their own
// snapshot item; a state without them writes no item (old agents read it),
// and replaying the same log gives the same memberships.
func TestMembershipSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.mustOK(&CreateTopic{Name: "t", Partitions: 1})
	before := snapshotBytes(t, h)
	h.mustOK(joinCmd("g", 0, "a", "a", "b"))
	h.mustOK(&GroupSync{Group: "g", Generation: 1, Assignments: []MemberAssignment{{MemberID: "a", Assignment: []byte("x")}}})
	h.mustOK(joinCmd("h", 0, "c", "c"))
	h2 := snapshotRoundTrip(t, h)
	if got, want := h2.f.Memberships(), h.f.Memberships(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored memberships\n got %+v\nwant %+v", got, want)
	}
	m, _ := h2.f.Membership("g")
	if m.Members[1].Assignment != nil || string(m.Members[0].Assignment) != "x" {
		t.Fatalf("nil vs set assignments not kept: %+v", m.Members)
	}
	// The restored FSM continues: generation checks hold.
	if r := h2.apply(joinCmd("g", 0, "a", "a")); !errors.Is(r.Err(), ErrIllegalGeneration) {
		t.Fatalf("restored generation: %v", r.Err())
	}
	h3 := newHarness(t)
	if err := h3.f.Restore(io.NopCloser(bytes.NewReader(before))); err != nil {
		t.Fatal(err)
	}
	if len(h3.f.Memberships()) != 0 {
		t.Fatal("a snapshot without memberships restored some")
	}
	corrupt := append([]byte(nil), snapshotBytes(t, h)...)
	i := bytes.Index(corrupt, encodeMemberships(h.f.state))
	if i < 0 {
		t.Fatal("membership item not found in the snapshot")
	}
	corrupt[i+1] = 9
	if err := newHarness(t).f.Restore(io.NopCloser(bytes.NewReader(corrupt))); !errors.Is(err, ErrDecode) {
		t.Fatalf("future membership item version: %v", err)
	}
}

func snapshotBytes(t *testing.T, h *harness) []byte {
	t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bufSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMembershipReplayIsDeterministic: two replays of one log reach the
// same memberships and results (Apply reads nothing but the log).
func TestMembershipReplayIsDeterministic(t *testing.T) {
	run := func() ([]GroupMembership, []Code) {
		h := newHarness(t)
		var codes []Code
		for _, c := range []Command{
			joinCmd("g", 0, "a", "a", "b"), joinCmd("g", 0, "c", "c"),
			&GroupSync{Group: "g", Generation: 1, Assignments: []MemberAssignment{{MemberID: "b", Assignment: []byte("1")}}},
			&GroupRemoveMembers{Group: "g", Generation: 1, MemberIDs: []string{"a"}},
			joinCmd("g", 1, "b", "b", "d"),
		} {
			codes = append(codes, h.apply(c).Code)
		}
		return h.f.Memberships(), codes
	}
	m1, c1 := run()
	m2, c2 := run()
	if !reflect.DeepEqual(m1, m2) || !reflect.DeepEqual(c1, c2) {
		t.Fatal("replays differ")
	}
}

// FuzzDecodeMembership: membership commands and the snapshot item decode
// without panicking, and what decodes re-encodes to something that
// decodes.
func FuzzDecodeMembership(f *testing.F) {
	f.Add(Encode(joinCmd("g", 3, "a", "a", "b")))
	f.Add(Encode(&GroupSync{Group: "g", Generation: 1, Assignments: []MemberAssignment{{MemberID: "a", Assignment: []byte{0, 1}}}}))
	f.Add(Encode(&GroupRemoveMembers{Group: "g", Generation: 1, MemberIDs: []string{"a"}}))
	f.Add(Encode(&CommitOffsets{Group: "g", Offsets: []OffsetCommit{{TopicID: 1}}, MemberID: "a", Generation: 2}))
	st := newState()
	st.Memberships["g"] = &GroupMembership{Group: "g", Generation: 2, State: GroupStateStable, Members: []GroupMember{member("a")}}
	f.Add(encodeMemberships(st))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == itemMembership {
			_ = decodeMemberships(b[1:], newState())
			return
		}
		c, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := Decode(Encode(c)); err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
	})
}
