package fsm

import "testing"

// A snapshot shares each partition's segment list with the live state
// (State.clone). Apply appending a segment must not change what the
// snapshot holds, and nothing appended to the snapshot's list may land in
// the live one.
func TestSnapshotCloneKeepsItsSegmentsWhileApplyAppends(t *testing.T) {
	st := newState()
	k := PartitionKey{TopicID: 1}
	p := &Partition{TopicID: 1, Segments: make([]SegmentRef, 2, 8)}
	p.Segments[0].ObjectKey, p.Segments[1].ObjectKey = "a", "b"
	st.Partitions[k] = p

	c := st.clone()
	p.Segments = append(p.Segments, SegmentRef{ObjectKey: "c"}) // CommitSegment
	p.LowWatermark = 7

	cs := c.Partitions[k].Segments
	if len(cs) != 2 || cs[0].ObjectKey != "a" || cs[1].ObjectKey != "b" || c.Partitions[k].LowWatermark != 0 {
		t.Fatalf("snapshot changed with the live state: %+v", c.Partitions[k])
	}
	_ = append(cs, SegmentRef{ObjectKey: "x"})
	if p.Segments[2].ObjectKey != "c" {
		t.Fatalf("an append to the snapshot's list overwrote the live state's: %q", p.Segments[2].ObjectKey)
	}
}
