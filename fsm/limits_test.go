package fsm

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// The cluster-wide limits travel inside CreateTopic, so every agent applies
// the same decision for the same log entry; deleted topics free capacity.
func TestApplyCreateTopicEnforcesClusterLimits(t *testing.T) {
	h := newHarness(t)
	lim := ClusterLimits{MaxTopics: 2, MaxPartitions: 5}
	h.mustOK(&CreateTopic{Name: "a", Partitions: 2, Limits: lim})
	r := h.apply(&CreateTopic{Name: "b", Partitions: 4, Limits: lim})
	if !errors.Is(r.Err(), ErrLimitExceeded) {
		t.Fatalf("6 partitions with MaxPartitions 5: %v", r.Err())
	}
	h.mustOK(&CreateTopic{Name: "b", Partitions: 3, Limits: lim})
	r = h.apply(&CreateTopic{Name: "c", Partitions: 1, Limits: lim})
	if !errors.Is(r.Err(), ErrLimitExceeded) {
		t.Fatalf("third topic with MaxTopics 2: %v", r.Err())
	}
	if _, ok := h.f.Topic("c"); ok {
		t.Fatal("a refused topic was created")
	}
	// An existing name is still "exists", not "limit": the clearer answer.
	if r := h.apply(&CreateTopic{Name: "a", Partitions: 1, Limits: lim}); !errors.Is(r.Err(), ErrTopicExists) {
		t.Fatalf("duplicate at the limit: %v", r.Err())
	}
	h.mustOK(&DeleteTopic{Name: "a"})
	h.mustOK(&CreateTopic{Name: "c", Partitions: 2, Limits: lim})
	// Zero limits mean unlimited (also what version-1 commands decode to).
	h.mustOK(&CreateTopic{Name: "d", Partitions: 100})
}

// A version-1 CreateTopic (written before limits existed) still decodes and
// applies, unlimited.
func TestCreateTopicVersion1StillApplies(t *testing.T) {
	v1 := []byte{byte(CmdCreateTopic), 1}
	e := enc{b: v1}
	e.str("old")
	e.iv(3)
	e.iv(0)
	e.iv(0)
	e.str("")
	e.uv(0)
	e.iv(5)
	c, err := Decode(e.b)
	if err != nil {
		t.Fatal(err)
	}
	ct := c.(*CreateTopic)
	if ct.Name != "old" || ct.Partitions != 3 || ct.Limits != (ClusterLimits{}) {
		t.Fatalf("decoded %+v", ct)
	}
	h := newHarness(t)
	out := h.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: e.b}).(*Result)
	if out.Err() != nil {
		t.Fatal(out.Err())
	}
}

// MaxGroups (carried by CommitOffsets) refuses a new group past the total;
// existing groups keep committing, and a deleted group frees its place.
func TestApplyCommitOffsetsEnforcesMaxGroups(t *testing.T) {
	h := newHarness(t)
	id := h.mustOK(&CreateTopic{Name: "t", Partitions: 1}).TopicID
	commit := func(group string) *Result {
		return h.apply(&CommitOffsets{Group: group, MaxGroups: 2, Offsets: []OffsetCommit{{TopicID: id, Partition: 0, Offset: 0}}})
	}
	for _, g := range []string{"a", "b", "a", "b"} {
		if err := commit(g).Err(); err != nil {
			t.Fatalf("commit %s: %v", g, err)
		}
	}
	if r := commit("c"); !errors.Is(r.Err(), ErrLimitExceeded) {
		t.Fatalf("third group with MaxGroups 2: %v", r.Err())
	}
	if _, ok := h.f.GroupOffsets("c"); ok {
		t.Fatal("a refused group was created")
	}
	h.mustOK(&DeleteGroup{Group: "a"})
	if err := commit("c").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(Encode(&CommitOffsets{Group: "g", MaxGroups: 7, Offsets: []OffsetCommit{{TopicID: 1}}}))
	if err != nil || got.(*CommitOffsets).MaxGroups != 7 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}
