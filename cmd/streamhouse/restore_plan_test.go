package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
)

func seg(key string, base, last int64) fsm.SegmentRef {
	return fsm.SegmentRef{ObjectKey: key, BaseOffset: base, LastOffset: last, RecordCount: int32(last - base + 1), MaxTimestamp: 1000 + last}
}

func block(topic string, id uint64, part int32, base, last int64) s3seg.IndexEntry {
	return s3seg.IndexEntry{Topic: topic, TopicID: id, Partition: part, BaseOffset: base, LastOffset: last,
		RecordCount: int32(last - base + 1), MaxTimestamp: 1000 + last, Length: 10}
}

// checkpointImage: topic "orders" (id 10, 2 partitions). Partition 0 has
// [0,99] flushed in a.seg and b.seg and a high watermark of 130 (30
// unflushed at checkpoint time). Partition 1 is empty.
func checkpointImage() *fsm.Image {
	return &fsm.Image{
		LastApplied: 500,
		Topics:      []fsm.Topic{{ID: 10, Name: "orders", Partitions: 2, Config: fsm.TopicConfig{Compression: "zstd"}}},
		Partitions: []fsm.Partition{
			{TopicID: 10, Index: 0, Leader: "old-1", LeaderEpoch: 3, NextOffset: 130, FlushedOffset: 100,
				Segments: []fsm.SegmentRef{seg("segments/a.seg", 0, 49), seg("segments/b.seg", 50, 99)}},
			{TopicID: 10, Index: 1, Leader: "old-2", LeaderEpoch: 1},
		},
		Groups: []fsm.GroupOffsetEntry{{Group: "g", TopicID: 10, Partition: 0, Offset: 90}},
	}
}

func byPartition(rep restoreReport) map[string]partitionReport {
	out := map[string]partitionReport{}
	for _, p := range rep.PerPartition {
		out[p.Topic+"/"+string(rune('0'+p.Partition))] = p
	}
	return out
}

func TestPlanRestoreCheckpointOnlyNeverReusesOffsets(t *testing.T) {
	img := checkpointImage()
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, rep := planRestore(img, existing, nil, "new-1", 0)
	p0 := plan.Partitions[0]
	// Readable [0,99]; offsets 100..129 were acknowledged but not flushed:
	// a gap, and new records start at 130.
	if p0.NextOffset != 130 || p0.FlushedOffset != 130 || p0.LowWatermark != 0 || len(p0.Segments) != 3 || !p0.Segments[2].IsGap() ||
		p0.Segments[2].BaseOffset != 100 || p0.Segments[2].LastOffset != 129 {
		t.Fatalf("partition 0 = %+v", p0)
	}
	if p0.Leader != "new-1" || p0.LeaderEpoch != 4 {
		t.Fatalf("leadership = %s@%d", p0.Leader, p0.LeaderEpoch)
	}
	r := byPartition(rep)["orders/0"]
	if r.RecoveredTo != 100 || r.ResumeAt != 130 || r.LostOffsets != 30 || r.FromPostgres != 2 || rep.LostOffsets != 30 {
		t.Fatalf("report = %+v", r)
	}
	if rep.Groups != 1 || len(plan.Groups) != 1 {
		t.Fatalf("groups not carried: %+v", plan.Groups)
	}
	plan.LastApplied += restoreIndexGap
	if err := fsm.ValidateImage(plan); err != nil {
		t.Fatalf("plan is not a valid image: %v", err)
	}
}

func TestPlanRestoreReconcilesObjectsNewerThanTheCheckpoint(t *testing.T) {
	img := checkpointImage()
	now := time.Unix(1_800_000_000, 0)
	footers := []objectFooter{
		// c.seg continues partition 0 at 100; d.seg (a leftover of a failed
		// commit) also starts at 100 but is shorter; e.seg continues at 140.
		{Key: "segments/c.seg", LastModified: now, Entries: []s3seg.IndexEntry{block("orders", 10, 0, 100, 139), block("orders", 10, 1, 0, 9)}},
		{Key: "segments/d.seg", LastModified: now, Entries: []s3seg.IndexEntry{block("orders", 10, 0, 100, 119)}},
		{Key: "segments/e.seg", LastModified: now, Entries: []s3seg.IndexEntry{block("orders", 10, 0, 140, 149)}},
		// overlapping an already committed range
		{Key: "segments/old.seg", LastModified: now, Entries: []s3seg.IndexEntry{block("orders", 10, 0, 40, 60)}},
		// a topic created after the checkpoint
		{Key: "segments/f.seg", LastModified: now, Entries: []s3seg.IndexEntry{block("late", 700, 2, 0, 4)}},
	}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	for _, f := range footers {
		existing[f.Key] = true
	}
	plan, rep := planRestore(img, existing, footers, "new-1", 0)
	p0 := plan.Partitions[0]
	keys := []string{}
	for _, s := range p0.Segments {
		keys = append(keys, s.ObjectKey)
	}
	if !reflect.DeepEqual(keys, []string{"segments/a.seg", "segments/b.seg", "segments/c.seg", "segments/e.seg"}) {
		t.Fatalf("partition 0 segments = %v", keys)
	}
	if p0.NextOffset != 150 || p0.FlushedOffset != 150 {
		t.Fatalf("partition 0 resumes at %d", p0.NextOffset)
	}
	if p1 := plan.Partitions[1]; p1.NextOffset != 10 || len(p1.Segments) != 1 {
		t.Fatalf("partition 1 = %+v", p1)
	}
	if rep.SegmentsFromS3 != 4 || rep.BlocksSkipped != 2 || rep.LostOffsets != 0 { // c (two blocks), e, f
		t.Fatalf("report = %+v", rep)
	}
	// The late topic: ID from the footer, 3 partitions (highest seen is 2).
	var late *fsm.Topic
	for i := range plan.Topics {
		if plan.Topics[i].Name == "late" {
			late = &plan.Topics[i]
		}
	}
	if late == nil || late.ID != 700 || late.Partitions != 3 || !reflect.DeepEqual(rep.TopicsFromS3, []string{"late"}) {
		t.Fatalf("late topic = %+v, report %v", late, rep.TopicsFromS3)
	}
	if plan.LastApplied < 700 {
		t.Fatalf("last applied %d is below a restored topic id", plan.LastApplied)
	}
	plan.LastApplied += restoreIndexGap
	if err := fsm.ValidateImage(plan); err != nil {
		t.Fatalf("plan is not a valid image: %v", err)
	}

	// The plan does not depend on the listing order.
	rev := append([]objectFooter(nil), footers...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	plan2, _ := planRestore(checkpointImage(), existing, rev, "new-1", 0)
	plan2.LastApplied += restoreIndexGap
	if !reflect.DeepEqual(plan, plan2) {
		t.Fatal("plan depends on footer order")
	}
}

func TestPlanRestoreMissingObjects(t *testing.T) {
	img := checkpointImage()
	img.Partitions[0].Segments = append(img.Partitions[0].Segments, seg("segments/x.seg", 100, 119))
	img.Partitions[0].FlushedOffset = 120
	// a.seg was deleted by retention after the checkpoint; x.seg is gone too.
	existing := map[string]bool{"segments/b.seg": true}
	plan, rep := planRestore(img, existing, nil, "n", 0)
	p0 := plan.Partitions[0]
	if p0.LowWatermark != 50 || p0.Segments[0].ObjectKey != "segments/b.seg" {
		t.Fatalf("low watermark %d, first segment %+v", p0.LowWatermark, p0.Segments[0])
	}
	// [100,119] missing and [120,129] unflushed: one resume point, no reuse.
	if p0.NextOffset != 130 || !p0.Segments[len(p0.Segments)-1].IsGap() {
		t.Fatalf("partition 0 = %+v", p0)
	}
	if rep.SegmentsMissing != 2 {
		t.Fatalf("missing = %d", rep.SegmentsMissing)
	}
	plan.LastApplied += restoreIndexGap
	if err := fsm.ValidateImage(plan); err != nil {
		t.Fatalf("plan is not a valid image: %v", err)
	}
}

func TestPlanRestoreResumesAfterGroupAndProducerEvidence(t *testing.T) {
	img := checkpointImage()
	img.Partitions[0].NextOffset = 100 // nothing unflushed at checkpoint time
	img.Groups = []fsm.GroupOffsetEntry{{Group: "g", TopicID: 10, Partition: 1, Offset: 0}}
	img.Producers = []fsm.ProducerEntry{{ID: 400, Owner: "tenant-a", Sequences: []fsm.ProducerSequence{{TopicID: 10, Partition: 0, BaseSeq: 0, Count: 5, BaseOffset: 100}}}}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, _ := planRestore(img, existing, nil, "n", 0)
	if got := plan.Partitions[0].NextOffset; got != 105 {
		t.Fatalf("partition 0 resumes at %d; the producer's batch evidences offsets up to 104", got)
	}
	if plan.LastApplied < 400 {
		t.Fatal("seed index must exceed producer ids")
	}
	// The producer is fenced: a retry of a batch whose sequence the
	// checkpoint predates must not be written a second time.
	if len(plan.Producers) != 1 || plan.Producers[0].Epoch != 1 || len(plan.Producers[0].Sequences) != 0 || plan.Producers[0].Owner != "tenant-a" {
		t.Fatalf("restored producer = %+v, want epoch 1, no sequences and its owner", plan.Producers)
	}
}

func TestPlanRestoreFromBucketAlone(t *testing.T) {
	footers := []objectFooter{
		{Key: "segments/1.seg", Entries: []s3seg.IndexEntry{block("t", 5, 0, 0, 9), block("t", 5, 1, 0, 3)}},
		{Key: "segments/2.seg", Entries: []s3seg.IndexEntry{block("t", 5, 0, 10, 19)}},
	}
	existing := map[string]bool{"segments/1.seg": true, "segments/2.seg": true}
	plan, rep := planRestore(&fsm.Image{}, existing, footers, "n", 0)
	if len(plan.Topics) != 1 || plan.Topics[0].Partitions != 2 || plan.Partitions[0].NextOffset != 20 || plan.Partitions[1].NextOffset != 4 {
		t.Fatalf("plan = %+v", plan)
	}
	if rep.SegmentsFromS3 != 3 {
		t.Fatalf("report = %+v", rep)
	}
	plan.LastApplied += restoreIndexGap
	if err := fsm.ValidateImage(plan); err != nil {
		t.Fatal(err)
	}
}

func TestPlanRestoreSkipsTheOffsetGap(t *testing.T) {
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, rep := planRestore(checkpointImage(), existing, nil, "n", 1000)
	p0, p1 := plan.Partitions[0], plan.Partitions[1]
	if p0.NextOffset != 1130 || p1.NextOffset != 1000 {
		t.Fatalf("resume points %d and %d, want 1130 and 1000", p0.NextOffset, p1.NextOffset)
	}
	r := byPartition(rep)["orders/0"]
	if r.LostOffsets != 30 || r.SkippedOffset != 1000 || r.RecoveredTo != 100 {
		t.Fatalf("report %+v", r)
	}
	plan.LastApplied += restoreIndexGap
	if err := fsm.ValidateImage(plan); err != nil {
		t.Fatal(err)
	}
}
