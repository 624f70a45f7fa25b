package fsm

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func seg(key string, base, last int64) SegmentRef {
	return SegmentRef{ObjectKey: key, BaseOffset: base, LastOffset: last, RecordCount: int32(last - base + 1), MaxTimestamp: 1000 + last}
}

func block(topic string, id uint64, part int32, base, last int64) RestoreBlock {
	return RestoreBlock{Topic: topic, TopicID: id, Partition: part, Ref: SegmentRef{BaseOffset: base, LastOffset: last,
		RecordCount: int32(last - base + 1), MaxTimestamp: 1000 + last, ByteLength: 10}}
}

// footer is the blocks one object's footer lists, as the restore's caller
// hands them over: the object's key and last-modified time in every Ref.
type footer struct {
	Key          string
	LastModified time.Time
	Entries      []RestoreBlock
}

// blocksOf flattens footers into PlanRestore's input.
func blocksOf(fs []footer) []RestoreBlock {
	var out []RestoreBlock
	for _, f := range fs {
		for _, b := range f.Entries {
			b.Ref.ObjectKey, b.Ref.CommittedAt = f.Key, f.LastModified.UnixMilli()
			out = append(out, b)
		}
	}
	return out
}

// checkpointImage: topic "orders" (id 10, 2 partitions). Partition 0 has
// [0,99] flushed in a.seg and b.seg and a high watermark of 130 (30
// unflushed at checkpoint time). Partition 1 is empty.
func checkpointImage() *Image {
	return &Image{
		LastApplied: 500,
		Topics:      []Topic{{ID: 10, Name: "orders", Partitions: 2, Config: TopicConfig{Compression: "zstd"}}},
		Partitions: []Partition{
			{TopicID: 10, Index: 0, Leader: "old-1", LeaderEpoch: 3, NextOffset: 130, FlushedOffset: 100,
				Segments: []SegmentRef{seg("segments/a.seg", 0, 49), seg("segments/b.seg", 50, 99)}},
			{TopicID: 10, Index: 1, Leader: "old-2", LeaderEpoch: 1},
		},
		Groups: []GroupOffsetEntry{{Group: "g", TopicID: 10, Partition: 0, Offset: 90}},
	}
}

// assertSeedable checks that plan, seeded above the old cluster's indexes
// as the restore does, is a valid image.
func assertSeedable(t *testing.T, plan *Image) {
	t.Helper()
	plan.LastApplied += RestoreIndexGap
	if err := ValidateImage(plan); err != nil {
		t.Fatalf("plan is not a valid image: %v", err)
	}
}

// seeded is an FSM restored from plan, as a seeded agent starts.
func seeded(t *testing.T, plan *Image) *FSM {
	t.Helper()
	var snap bytes.Buffer
	if err := WriteImageSnapshot(&snap, plan); err != nil {
		t.Fatal(err)
	}
	f := New(nil)
	if err := f.Restore(io.NopCloser(&snap)); err != nil {
		t.Fatal(err)
	}
	return f
}

func byPartition(rep RestoreReport) map[string]RestoredPartition {
	out := map[string]RestoredPartition{}
	for _, p := range rep.PerPartition {
		out[p.Topic+"/"+string(rune('0'+p.Partition))] = p
	}
	return out
}

func TestPlanRestoreCheckpointOnlyNeverReusesOffsets(t *testing.T) {
	img := checkpointImage()
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: nil, SeedNode: "new-1", OffsetGap: 0})
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
	assertSeedable(t, plan)
}

func TestPlanRestoreReconcilesObjectsNewerThanTheCheckpoint(t *testing.T) {
	img := checkpointImage()
	now := time.Unix(1_800_000_000, 0)
	footers := []footer{
		// c.seg continues partition 0 at 100; d.seg (a leftover of a failed
		// commit) also starts at 100 but is shorter; e.seg continues at 140.
		{Key: "segments/c.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 10, 0, 100, 139), block("orders", 10, 1, 0, 9)}},
		{Key: "segments/d.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 10, 0, 100, 119)}},
		{Key: "segments/e.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 10, 0, 140, 149)}},
		// overlapping an already committed range
		{Key: "segments/old.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 10, 0, 40, 60)}},
		// a topic created after the checkpoint
		{Key: "segments/f.seg", LastModified: now, Entries: []RestoreBlock{block("late", 700, 2, 0, 4)}},
	}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	for _, f := range footers {
		existing[f.Key] = true
	}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: blocksOf(footers), SeedNode: "new-1", OffsetGap: 0})
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
	var late *Topic
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
	assertSeedable(t, plan)

	// The plan does not depend on the listing order.
	rev := append([]footer(nil), footers...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	plan2, _ := PlanRestore(RestoreInput{Image: checkpointImage(), Existing: existing, Blocks: blocksOf(rev), SeedNode: "new-1", OffsetGap: 0})
	plan2.LastApplied += RestoreIndexGap
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
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: nil, SeedNode: "n", OffsetGap: 0})
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
	assertSeedable(t, plan)
}

func TestPlanRestoreResumesAfterGroupAndProducerEvidence(t *testing.T) {
	img := checkpointImage()
	img.Partitions[0].NextOffset = 100 // nothing unflushed at checkpoint time
	img.Groups = []GroupOffsetEntry{{Group: "g", TopicID: 10, Partition: 1, Offset: 0}}
	img.Producers = []ProducerEntry{{ID: 400, Owner: "tenant-a", Sequences: []ProducerSequence{{TopicID: 10, Partition: 0, BaseSeq: 0, Count: 5, BaseOffset: 100}}}}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: nil, SeedNode: "n", OffsetGap: 0})
	if got := plan.Partitions[0].NextOffset; got != 105 {
		t.Fatalf("partition 0 resumes at %d; the producer's batch evidences offsets up to 104", got)
	}
	// The producer is dropped: a retry of a batch whose sequence (or
	// epoch) the checkpoint predates must not be written a second time,
	// and no epoch can be proven above every one the old cluster used.
	if len(plan.Producers) != 0 || rep.ProducersDropped != 1 {
		t.Fatalf("restored producers = %+v (%d dropped), want none carried and 1 dropped", plan.Producers, rep.ProducersDropped)
	}
}

func TestPlanRestoreFromBucketAlone(t *testing.T) {
	footers := []footer{
		{Key: "segments/1.seg", Entries: []RestoreBlock{block("t", 5, 0, 0, 9), block("t", 5, 1, 0, 3)}},
		{Key: "segments/2.seg", Entries: []RestoreBlock{block("t", 5, 0, 10, 19)}},
	}
	existing := map[string]bool{"segments/1.seg": true, "segments/2.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: &Image{}, Existing: existing, Blocks: blocksOf(footers), SeedNode: "n", OffsetGap: 0})
	if len(plan.Topics) != 1 || plan.Topics[0].Partitions != 2 || plan.Partitions[0].NextOffset != 20 || plan.Partitions[1].NextOffset != 4 {
		t.Fatalf("plan = %+v", plan)
	}
	if rep.SegmentsFromS3 != 3 {
		t.Fatalf("report = %+v", rep)
	}
	assertSeedable(t, plan)
}

func TestPlanRestoreSkipsTheOffsetGap(t *testing.T) {
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: checkpointImage(), Existing: existing, Blocks: nil, SeedNode: "n", OffsetGap: 1000})
	p0, p1 := plan.Partitions[0], plan.Partitions[1]
	if p0.NextOffset != 1130 || p1.NextOffset != 1000 {
		t.Fatalf("resume points %d and %d, want 1130 and 1000", p0.NextOffset, p1.NextOffset)
	}
	r := byPartition(rep)["orders/0"]
	if r.LostOffsets != 30 || r.SkippedOffset != 1000 || r.RecoveredTo != 100 {
		t.Fatalf("report %+v", r)
	}
	assertSeedable(t, plan)
}

// Regression (issue: DR restore resurrects deleted topics): topic 300 was
// deleted before the checkpoint at index 500. One of its objects is still
// queued for deletion, another one's delete never happened. Neither may
// bring the topic back, and both must stay (or become) queued.
func TestPlanRestoreNeverResurrectsDeletedTopics(t *testing.T) {
	img := checkpointImage() // LastApplied 500
	img.PendingDeletes = []string{"segments/gone-a.seg"}
	footers := []footer{
		{Key: "segments/gone-a.seg", Entries: []RestoreBlock{block("gone", 300, 0, 0, 9)}},
		{Key: "segments/gone-b.seg", Entries: []RestoreBlock{block("gone", 300, 0, 10, 19)}},
		// mixed: a deleted topic's block next to one continuing orders/1
		{Key: "segments/mixed.seg", Entries: []RestoreBlock{block("gone", 300, 1, 0, 4), block("orders", 10, 1, 0, 4)}},
		// created after the checkpoint: recreated
		{Key: "segments/late.seg", Entries: []RestoreBlock{block("late", 700, 0, 0, 4)}},
	}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	for _, f := range footers {
		existing[f.Key] = true
	}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: blocksOf(footers), SeedNode: "n"})
	names := []string{}
	for _, tp := range plan.Topics {
		names = append(names, tp.Name)
	}
	if !reflect.DeepEqual(names, []string{"late", "orders"}) {
		t.Fatalf("restored topics %v; topic \"gone\" (id 300, deleted before the checkpoint at index 500) must not come back", names)
	}
	if !reflect.DeepEqual(plan.PendingDeletes, []string{"segments/gone-a.seg", "segments/gone-b.seg"}) {
		t.Fatalf("pending deletes = %v, want both objects of the deleted topic", plan.PendingDeletes)
	}
	if !reflect.DeepEqual(rep.DeletedTopicIDs, []uint64{300}) || rep.PendingDeletes != 2 {
		t.Fatalf("report: deleted topic ids %v, pending deletes %d", rep.DeletedTopicIDs, rep.PendingDeletes)
	}
	if p1 := plan.Partitions[1]; len(p1.Segments) == 0 || p1.Segments[0].ObjectKey != "segments/mixed.seg" {
		t.Fatalf("orders/1 did not keep the live block of the mixed object: %+v", p1.Segments)
	}
	assertSeedable(t, plan)
}

// An object an earlier restore could not read is judged by that restore's
// checkpoint: its topic (created after that checkpoint) is not a deleted
// one, even though its ID is below the current checkpoint's index.
func TestPlanRestoreJudgesPreviouslyUnreadableObjectsByTheirRestore(t *testing.T) {
	img := checkpointImage() // LastApplied 500
	img.Unreadable = []UnreadableObject{{Key: "segments/old.seg", RestoredFrom: 200}}
	footers := []footer{{Key: "segments/old.seg", Entries: []RestoreBlock{block("was-unread", 250, 0, 0, 9)}}}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true, "segments/old.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: blocksOf(footers), SeedNode: "n"})
	if !reflect.DeepEqual(rep.TopicsFromS3, []string{"was-unread"}) || len(plan.Unreadable) != 0 {
		t.Fatalf("topics from S3 %v, unreadable %v", rep.TopicsFromS3, plan.Unreadable)
	}
}

// Objects that stayed unreadable (allowed by the operator) are recorded in
// the image, so GC keeps them and a later restore retries them.
func TestPlanRestoreRecordsUnreadableObjects(t *testing.T) {
	img := checkpointImage()
	img.Unreadable = []UnreadableObject{{Key: "segments/x.seg", RestoredFrom: 77}}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true, "segments/x.seg": true, "segments/y.seg": true}
	want := []UnreadableObject{{Key: "segments/x.seg", RestoredFrom: 77}, {Key: "segments/y.seg", RestoredFrom: 500}}
	// Each unreadable object may hide a partition's last block (up to the
	// bound): the gap grows by one bound per object.
	img.MaxUnflushedRecords = 1000
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, SeedNode: "n", OffsetGap: 10,
		Unreadable: []string{"segments/y.seg", "segments/x.seg"}})
	if rep.OffsetGap != 3000 || plan.Partitions[0].NextOffset != 130+3000 || !strings.Contains(rep.OffsetGapSource, "unreadable") {
		t.Fatalf("gap %d (%s), resume at %d", rep.OffsetGap, rep.OffsetGapSource, plan.Partitions[0].NextOffset)
	}
	if !reflect.DeepEqual(plan.Unreadable, want) {
		t.Fatalf("unreadable = %+v, want %+v", plan.Unreadable, want)
	}
	assertSeedable(t, plan)
}

// The offset gap is the bound the old cluster enforced when it is larger
// than RESTORE_OFFSET_GAP, and the report says which bound it used.
func TestPlanRestoreOffsetGapFromTheEnforcedBound(t *testing.T) {
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	img := checkpointImage()
	img.MaxUnflushedRecords = 5000
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, SeedNode: "n", OffsetGap: 1000})
	if p0 := plan.Partitions[0]; p0.NextOffset != 130+5000 || rep.OffsetGap != 5000 ||
		!strings.Contains(rep.OffsetGapSource, "MAX_UNFLUSHED_RECORDS=5000") || plan.MaxUnflushedRecords != 5000 {
		t.Fatalf("resume at %d, gap %d (%s)", p0.NextOffset, rep.OffsetGap, rep.OffsetGapSource)
	}
	img.MaxUnflushedRecords = 0
	_, rep = PlanRestore(RestoreInput{Image: img, Existing: existing, SeedNode: "n", OffsetGap: 1000})
	if rep.OffsetGap != 1000 || !strings.Contains(rep.OffsetGapSource, "assumed") {
		t.Fatalf("gap %d (%s)", rep.OffsetGap, rep.OffsetGapSource)
	}
}

// Regression (issue: the 2^24 Raft-index skip for producer IDs): the old
// cluster ran 2^24 entries past its checkpoint and issued a producer at
// index checkpoint+2^24+1. The restored cluster's first producer must not
// get that ID.
func TestPlanRestoreProducerIDsNeverCollide(t *testing.T) {
	img := checkpointImage()
	img.Producers = []ProducerEntry{{ID: 400}}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, _ := PlanRestore(RestoreInput{Image: img, Existing: existing, SeedNode: "n", Generation: 1})
	plan.LastApplied += RestoreIndexGap
	f := seeded(t, plan)
	oldID := img.LastApplied + RestoreIndexGap + 1
	for i := uint64(1); i <= 3; i++ {
		res := f.Apply(&raft.Log{Index: plan.LastApplied + i, Type: raft.LogCommand, Data: Encode(&InitProducer{Timestamp: 1})}).(*Result)
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		if res.ProducerID == oldID || res.ProducerID == 400 || res.ProducerID>>ProducerIndexBits != 1 {
			t.Fatalf("the restored cluster issued producer id %d (old cluster: 400 and %d)", res.ProducerID, oldID)
		}
	}
}

// TestPlanRestoreCarriesTheClusterClock: the restored state starts at the
// checkpoint's cluster clock, not at 0.
func TestPlanRestoreCarriesTheClusterClock(t *testing.T) {
	img := checkpointImage()
	img.Clock = 1_700_000_000_000
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true}
	plan, _ := PlanRestore(RestoreInput{Image: img, Existing: existing, SeedNode: "n", Generation: 1})
	if plan.Clock != img.Clock {
		t.Fatalf("planned clock %d, checkpoint %d", plan.Clock, img.Clock)
	}
	f := seeded(t, plan)
	if f.Clock() != img.Clock {
		t.Fatalf("restored clock %d", f.Clock())
	}
}

// TestPlanRestoreGrowsTopicsWithPartitionsAddedAfterTheCheckpoint: the
// checkpoint knows "orders" with 2 partitions; partitions 2 and 3 were
// added later and partition 3 flushed a block. The restored topic has 4
// partitions: partition 3 holds the block, partition 2 resumes empty (past
// the offset gap), and the checkpoint's config stays.
func TestPlanRestoreGrowsTopicsWithPartitionsAddedAfterTheCheckpoint(t *testing.T) {
	img := checkpointImage()
	img.Topics[0].Config = TopicConfig{Compression: "lz4", RetentionMs: 60000, MaxMessageBytes: 4096}
	now := time.Unix(1_800_000_000, 0)
	footers := []footer{
		{Key: "segments/g.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 10, 3, 0, 19), block("orders", 10, 0, 100, 109)}},
		// A namesake with another ID (deleted before the checkpoint) does not grow it.
		{Key: "segments/h.seg", LastModified: now, Entries: []RestoreBlock{block("orders", 3, 7, 0, 4)}},
	}
	existing := map[string]bool{"segments/a.seg": true, "segments/b.seg": true, "segments/g.seg": true, "segments/h.seg": true}
	plan, rep := PlanRestore(RestoreInput{Image: img, Existing: existing, Blocks: blocksOf(footers), SeedNode: "new-1", OffsetGap: 5})
	if len(plan.Topics) != 1 || plan.Topics[0].Partitions != 4 || plan.Topics[0].Config != img.Topics[0].Config {
		t.Fatalf("topics = %+v", plan.Topics)
	}
	if len(plan.Partitions) != 4 {
		t.Fatalf("%d partitions, want 4", len(plan.Partitions))
	}
	p2, p3 := plan.Partitions[2], plan.Partitions[3]
	if p2.Index != 2 || p2.NextOffset != 5 || p2.Leader != "new-1" {
		t.Fatalf("empty added partition = %+v", p2)
	}
	if p3.Index != 3 || len(p3.Segments) != 2 || p3.Segments[0].ObjectKey != "segments/g.seg" || p3.NextOffset != 25 {
		t.Fatalf("added partition with data = %+v", p3)
	}
	if !reflect.DeepEqual(rep.TopicsGrown, []string{"orders"}) || len(rep.TopicsFromS3) != 0 || rep.SegmentsFromS3 != 2 {
		t.Fatalf("report: grown %v, from S3 %v, segments %d", rep.TopicsGrown, rep.TopicsFromS3, rep.SegmentsFromS3)
	}
	if !reflect.DeepEqual(rep.DeletedTopicIDs, []uint64{3}) {
		t.Fatalf("deleted topic ids = %v", rep.DeletedTopicIDs)
	}
	assertSeedable(t, plan)
	if f := seeded(t, plan); len(f.Partitions(10)) != 4 {
		t.Fatalf("seeded FSM has %d partitions", len(f.Partitions(10)))
	}
}
