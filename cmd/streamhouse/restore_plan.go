package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/s3seg"
)

// Disaster-recovery planning: from the latest Postgres checkpoint and the
// footers of the segment objects in the bucket, build the image a fresh
// cluster starts from. Pure: no I/O, so every rule is unit-tested.
//
// Rules (DESIGN.md, "Metadata checkpoints and disaster recovery"):
//   - The checkpoint's committed segments whose objects still exist are
//     kept. Missing objects become gaps; gaps at the front of a partition
//     move its low watermark (retention deleted them after the checkpoint).
//   - Objects not referenced by the checkpoint are candidates: a block
//     that starts exactly where the partition's flushed offset ends extends
//     it (the longest one when several do: every copy of an offset holds the
//     same record, because blocks are cut from the replicated log). Blocks
//     that overlap what is already registered are skipped.
//   - Objects the checkpoint queued for deletion (PendingDeletes) are not
//     read and stay queued. Topic IDs are Raft indexes of CreateTopic, so a
//     block whose topic ID is at or below the checkpoint's index (or, for an
//     object an earlier restore could not read, below that restore's
//     checkpoint) and that the checkpoint does not have belongs to a topic
//     deleted before the checkpoint: it is skipped, and an object holding
//     nothing else is queued for deletion. Deleted topics never come back.
//   - Blocks of topics created after the checkpoint recreate the topic
//     (name and ID from the footer, partition count from the highest
//     partition seen, default config).
//   - Objects that stayed unreadable (the caller refuses to plan with any
//     unless the operator allowed it) are recorded in the image's
//     Unreadable set, so nothing deletes them; offsets only they held
//     become gaps like any other missing range. Each may have held a
//     partition's last flushed block (at most the bound's worth of
//     offsets), so the offset gap grows by one bound per such object.
//   - Each partition resumes strictly after the highest offset evidenced
//     anywhere: the checkpoint's high watermark, the registered segments,
//     committed group offsets and producer batches. Offsets between the end
//     of the recovered data and that point were acknowledged but never
//     flushed; they are recorded as a gap, so they are never reused.
//   - Idempotent producers are fenced (next epoch, sequences cleared): their
//     checkpointed sequences may predate batches recovered from S3. The
//     image gets a new producer generation (allocated in Postgres by the
//     caller), so new producer IDs never equal one the old cluster issued.
//   - Records acknowledged but never flushed leave no evidence beyond the
//     highest flushed offset. The old cluster refused a batch that would
//     leave a partition with more than MAX_UNFLUSHED_RECORDS unflushed
//     records, and the checkpoint records the largest such bound
//     (MaxUnflushedRecords): that many more offsets per partition are
//     skipped, or RESTORE_OFFSET_GAP when larger (the only bound for a
//     checkpoint without one), so new records never take their offsets.

// objectFooter is one segment object's decoded footer.
type objectFooter = s3seg.ObjectFooter

// restoreInputs is what planRestore works from.
type restoreInputs struct {
	Image    *fsm.Image      // the checkpoint; empty when there is none
	Existing map[string]bool // every object in the bucket
	Footers  []objectFooter  // footers of the objects the checkpoint does not reference
	// Unreadable lists objects whose footers could not be read; the
	// caller plans with any only when the operator allowed it.
	Unreadable []string
	SeedNode   string // leads every partition at first (rebalancing spreads them later)
	OffsetGap  int64  // RESTORE_OFFSET_GAP
	Generation uint64 // the restored cluster's producer generation
}

// partitionReport is the restored range of one partition.
type partitionReport struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	LowWatermark  int64  `json:"low_watermark"`
	RecoveredTo   int64  `json:"recovered_to"`    // offsets [low, recovered_to) are readable
	ResumeAt      int64  `json:"resume_at"`       // the next produced record gets this offset
	LostOffsets   int64  `json:"lost_offsets"`    // evidenced but unrecoverable offsets
	SkippedOffset int64  `json:"skipped_offsets"` // the safety margin after the evidence
	FromPostgres  int    `json:"segments_from_postgres"`
	FromS3        int    `json:"segments_from_s3"`
	MissingOnS3   int    `json:"segments_missing_on_s3"`
	LastFlushedAt string `json:"last_flushed_at,omitempty"` // max timestamp of the last recovered record
}

// restoreReport summarises a restore.
type restoreReport struct {
	CheckpointIndex   uint64            `json:"checkpoint_raft_index"`
	CheckpointTakenAt string            `json:"checkpoint_taken_at,omitempty"`
	CheckpointAge     string            `json:"checkpoint_age,omitempty"`
	SeedIndex         uint64            `json:"seed_raft_index"`
	ClusterID         string            `json:"cluster_id,omitempty"`
	Topics            int               `json:"topics"`
	TopicsFromS3      []string          `json:"topics_recreated_from_s3"`
	Partitions        int               `json:"partitions"`
	SegmentsFromPG    int               `json:"segments_from_postgres"`
	SegmentsFromS3    int               `json:"segments_reconciled_from_s3"`
	SegmentsMissing   int               `json:"segments_missing_on_s3"`
	ObjectsScanned    int               `json:"objects_scanned"`
	BlocksSkipped     int               `json:"blocks_skipped_overlapping"`
	Unreadable        []string          `json:"objects_unreadable"`
	AllowUnreadable   bool              `json:"allow_unreadable"`
	DeletedTopicIDs   []uint64          `json:"deleted_topic_ids_skipped"`
	PendingDeletes    int               `json:"pending_deletes"`
	ProducerGen       uint64            `json:"producer_generation"`
	Groups            int               `json:"consumer_groups"`
	Producers         int               `json:"producers"`
	LostOffsets       int64             `json:"lost_offsets_total"`
	OffsetGap         int64             `json:"offset_gap"`
	OffsetGapSource   string            `json:"offset_gap_source"`
	PerPartition      []partitionReport `json:"partitions_restored"`
	Warnings          []string          `json:"warnings"`
	Duration          string            `json:"duration,omitempty"`
}

// restoreIndexGap separates the restored cluster's Raft indexes (topic IDs)
// from the old cluster's. It is not what keeps IDs apart: topic IDs the old
// cluster issued after its checkpoint are evidenced by the footers of their
// objects (a topic without objects has no data to confuse), and producer
// IDs carry the restore's generation.
const restoreIndexGap = 1 << 24

// planRestore builds the restored image. in.Image may be empty (no
// checkpoint: everything comes from S3).
func planRestore(in restoreInputs) (*fsm.Image, restoreReport) {
	img := in.Image
	gap, source := offsetGapFor(img, in.OffsetGap)
	if n := int64(len(in.Unreadable)); n > 0 {
		// An unreadable object may hold a partition's last flushed block,
		// which is no longer evidence; one block never holds more than the
		// bound (it was cut from at most that many unflushed records).
		gap *= 1 + n
		source += fmt.Sprintf(", times %d: each of the %d unreadable objects may hide up to that many offsets", 1+n, n)
	}
	rep := restoreReport{CheckpointIndex: img.LastApplied, OffsetGap: gap, OffsetGapSource: source, ProducerGen: in.Generation,
		TopicsFromS3: []string{}, Unreadable: append([]string{}, in.Unreadable...), DeletedTopicIDs: []uint64{}, Warnings: []string{}}
	out := &fsm.Image{LastApplied: img.LastApplied, Groups: img.Groups,
		ProducerGeneration: in.Generation, MaxUnflushedRecords: img.MaxUnflushedRecords, Clock: img.Clock}
	out.Producers = fencedProducers(img.Producers)
	pl := newPlanner(img, &rep)
	pl.checkpointSegments(in.Existing)
	blocks, deadObjects := pl.liveBlocks(in.Footers)
	pl.topicsFromS3(blocks)
	pl.extend(blocks)
	pl.resume(gap, in.SeedNode)
	pl.assemble(out)
	out.PendingDeletes = pendingDeletes(img, in.Existing, out, deadObjects)
	out.Unreadable = unreadableObjects(img, in.Unreadable)
	rep.PendingDeletes = len(out.PendingDeletes)
	rep.Topics, rep.Partitions = len(out.Topics), len(out.Partitions)
	rep.Groups = countGroups(out.Groups)
	rep.Producers = len(out.Producers)
	for _, p := range out.Partitions {
		rep.PerPartition = append(rep.PerPartition, *pl.reportFor(fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}))
	}
	sort.Strings(rep.TopicsFromS3)
	return out, rep
}

// offsetGapFor is how many offsets each partition skips after its
// evidence, and why.
func offsetGapFor(img *fsm.Image, configured int64) (int64, string) {
	bound := img.MaxUnflushedRecords
	switch {
	case bound == 0:
		return configured, "RESTORE_OFFSET_GAP (assumed: the checkpoint records no enforced MAX_UNFLUSHED_RECORDS bound)"
	case bound >= configured:
		return bound, fmt.Sprintf("MAX_UNFLUSHED_RECORDS=%d enforced by the old cluster", bound)
	}
	return configured, fmt.Sprintf("RESTORE_OFFSET_GAP (above the MAX_UNFLUSHED_RECORDS=%d the old cluster enforced)", bound)
}

// fencedProducers carries every idempotent producer at its next epoch,
// without sequences: the checkpoint's sequences can be older than batches
// recovered from S3, so a retry of such a batch would not be recognised
// and would be written twice. Its old session gets "fenced" and must
// re-initialise. The owner stays: only the key that created it may
// re-initialise it.
func fencedProducers(ps []fsm.ProducerEntry) []fsm.ProducerEntry {
	var out []fsm.ProducerEntry
	for _, p := range ps {
		out = append(out, fsm.ProducerEntry{ID: p.ID, Epoch: p.Epoch + 1, LastSeen: p.LastSeen, Owner: p.Owner})
	}
	return out
}

// planner holds the image being built.
type planner struct {
	img    *fsm.Image
	rep    *restoreReport
	topics map[uint64]*fsm.Topic
	names  map[string]uint64
	parts  map[fsm.PartitionKey]*fsm.Partition
	prep   map[fsm.PartitionKey]*partitionReport
	// deletedBelow: per previously unreadable object, the index below
	// which absent topic IDs are deleted ones (default: the checkpoint's).
	deletedBelow map[string]uint64
}

func newPlanner(img *fsm.Image, rep *restoreReport) *planner {
	pl := &planner{img: img, rep: rep, topics: map[uint64]*fsm.Topic{}, names: map[string]uint64{},
		parts: map[fsm.PartitionKey]*fsm.Partition{}, prep: map[fsm.PartitionKey]*partitionReport{}, deletedBelow: map[string]uint64{}}
	for _, t := range img.Topics {
		t := t
		pl.topics[t.ID] = &t
		pl.names[t.Name] = t.ID
	}
	for _, p := range img.Partitions {
		p := p
		p.Segments = append([]fsm.SegmentRef(nil), p.Segments...)
		pl.parts[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}] = &p
	}
	for _, u := range img.Unreadable {
		pl.deletedBelow[u.Key] = u.RestoredFrom
	}
	return pl
}

func (pl *planner) reportFor(k fsm.PartitionKey) *partitionReport {
	r := pl.prep[k]
	if r == nil {
		r = &partitionReport{Partition: k.Partition}
		pl.prep[k] = r
	}
	return r
}

// checkpointSegments keeps the checkpoint's segments; missing objects
// become gaps.
func (pl *planner) checkpointSegments(existing map[string]bool) {
	for k, p := range pl.parts {
		r := pl.reportFor(k)
		for i := range p.Segments {
			s := &p.Segments[i]
			if s.IsGap() {
				continue
			}
			if !existing[s.ObjectKey] {
				r.MissingOnS3++
				pl.rep.SegmentsMissing++
				s.ObjectKey = ""
				continue
			}
			r.FromPostgres++
			pl.rep.SegmentsFromPG++
		}
	}
}

// topicDeleted reports whether a block of object key belongs to a topic the
// checkpoint knows was deleted: its ID is a Raft index at or below the
// checkpoint's (below the earlier restore's, for an object that restore
// could not read), yet the checkpoint does not have it.
func (pl *planner) topicDeleted(key string, topicID uint64) bool {
	if _, ok := pl.topics[topicID]; ok {
		return false
	}
	below, ok := pl.deletedBelow[key]
	if !ok {
		below = pl.img.LastApplied
	}
	return topicID <= below
}

// liveBlocks returns the footers' blocks in canonical order, without those
// of objects queued for deletion and of deleted topics; deadObjects are the
// objects that held nothing else.
func (pl *planner) liveBlocks(footers []objectFooter) (blocks []candidate, deadObjects []string) {
	pending := map[string]bool{}
	for _, k := range pl.img.PendingDeletes {
		pending[k] = true
	}
	deleted := map[uint64]bool{}
	for _, f := range footers {
		if pending[f.Key] {
			continue
		}
		live := 0
		for _, e := range f.Entries {
			if pl.topicDeleted(f.Key, e.TopicID) {
				deleted[e.TopicID] = true
				continue
			}
			live++
			blocks = append(blocks, candidate{key: f.Key, mod: f.LastModified, e: e})
		}
		if live == 0 && len(f.Entries) > 0 {
			deadObjects = append(deadObjects, f.Key)
		}
	}
	for id := range deleted {
		pl.rep.DeletedTopicIDs = append(pl.rep.DeletedTopicIDs, id)
	}
	sort.Slice(pl.rep.DeletedTopicIDs, func(i, j int) bool { return pl.rep.DeletedTopicIDs[i] < pl.rep.DeletedTopicIDs[j] })
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].less(blocks[j]) })
	return blocks, deadObjects
}

// topicsFromS3 recreates the topics only S3 knows (created after the
// checkpoint), with the partitions their blocks show.
func (pl *planner) topicsFromS3(blocks []candidate) {
	for _, b := range blocks {
		if _, ok := pl.topics[b.e.TopicID]; ok {
			continue
		}
		if other, clash := pl.names[b.e.Topic]; clash && other != b.e.TopicID {
			continue // a deleted-and-recreated name: the checkpoint's topic wins
		}
		t := &fsm.Topic{ID: b.e.TopicID, Name: b.e.Topic, Config: fsm.TopicConfig{Compression: "zstd"}, CreatedAt: b.mod.UnixMilli()}
		pl.topics[t.ID] = t
		pl.names[t.Name] = t.ID
		pl.rep.TopicsFromS3 = append(pl.rep.TopicsFromS3, t.Name)
	}
	for _, b := range blocks {
		t, ok := pl.topics[b.e.TopicID]
		if ok && t.Name == b.e.Topic && b.e.Partition >= t.Partitions && pl.rep.isFromS3(t.Name) {
			t.Partitions = b.e.Partition + 1
		}
	}
	for _, t := range pl.topics {
		for i := int32(0); i < t.Partitions; i++ {
			k := fsm.PartitionKey{TopicID: t.ID, Partition: i}
			if pl.parts[k] == nil {
				pl.parts[k] = &fsm.Partition{TopicID: t.ID, Index: i}
			}
		}
	}
}

// extend appends to every partition the blocks that continue it.
func (pl *planner) extend(blocks []candidate) {
	byPart := map[fsm.PartitionKey][]candidate{}
	for _, b := range blocks {
		k := fsm.PartitionKey{TopicID: b.e.TopicID, Partition: b.e.Partition}
		if t, ok := pl.topics[k.TopicID]; !ok || t.Name != b.e.Topic || pl.parts[k] == nil {
			pl.rep.BlocksSkipped++
			continue
		}
		byPart[k] = append(byPart[k], b)
	}
	for k, cands := range byPart {
		pl.extendPartition(k, cands)
	}
}

func (pl *planner) extendPartition(k fsm.PartitionKey, cands []candidate) {
	p := pl.parts[k]
	r := pl.reportFor(k)
	used := make([]bool, len(cands))
	for {
		end := p.FlushedOffset
		best := -1
		for i, c := range cands {
			if used[i] || c.e.BaseOffset != end {
				continue
			}
			if best < 0 || c.e.LastOffset > cands[best].e.LastOffset {
				best = i
			}
		}
		if best < 0 {
			// Nothing continues the partition; a block further on means
			// a hole nobody can fill (record it and go on).
			next := -1
			for i, c := range cands {
				if !used[i] && c.e.BaseOffset > end && (next < 0 || c.e.BaseOffset < cands[next].e.BaseOffset) {
					next = i
				}
			}
			if next < 0 {
				break
			}
			gap := cands[next].e.BaseOffset
			pl.rep.Warnings = append(pl.rep.Warnings, fmt.Sprintf("%s/%d: no object holds offsets %d-%d; recorded as a gap",
				pl.topics[k.TopicID].Name, k.Partition, end, gap-1))
			p.Segments = append(p.Segments, gapRef(end, gap-1, p.Segments))
			p.FlushedOffset = gap
			continue
		}
		c := cands[best]
		used[best] = true
		p.Segments = append(p.Segments, refFromEntry(c))
		p.FlushedOffset = c.e.LastOffset + 1
		r.FromS3++
		pl.rep.SegmentsFromS3++
	}
	for i := range cands {
		if !used[i] {
			pl.rep.BlocksSkipped++
		}
	}
}

// evidence is, per partition, the highest offset the checkpoint's groups
// and producers show was assigned.
func evidence(img *fsm.Image) map[fsm.PartitionKey]int64 {
	ev := map[fsm.PartitionKey]int64{}
	for _, g := range img.Groups {
		k := fsm.PartitionKey{TopicID: g.TopicID, Partition: g.Partition}
		ev[k] = max(ev[k], g.Offset)
	}
	for _, pr := range img.Producers {
		for _, s := range pr.Sequences {
			k := fsm.PartitionKey{TopicID: s.TopicID, Partition: s.Partition}
			ev[k] = max(ev[k], s.BaseOffset+int64(s.Count))
		}
	}
	return ev
}

// resume makes every partition resume gap offsets after its highest
// evidenced one, and fixes its watermarks and leadership.
func (pl *planner) resume(gap int64, seedNode string) {
	ev := evidence(pl.img)
	for k, p := range pl.parts {
		r := pl.reportFor(k)
		recovered := p.FlushedOffset
		evidenced := max(p.NextOffset, p.FlushedOffset, ev[k])
		resume := evidenced + gap
		if resume > recovered {
			p.Segments = append(p.Segments, gapRef(recovered, resume-1, p.Segments))
			r.LostOffsets = evidenced - recovered
			r.SkippedOffset = gap
			pl.rep.LostOffsets += r.LostOffsets
		}
		p.NextOffset, p.FlushedOffset = resume, resume
		// Leading gaps (missing objects at the front) are not readable.
		for len(p.Segments) > 0 && p.Segments[0].IsGap() && p.Segments[0].LastOffset < recovered {
			p.LowWatermark = p.Segments[0].LastOffset + 1
			p.Segments = p.Segments[1:]
		}
		if len(p.Segments) == 0 {
			p.LowWatermark = p.FlushedOffset
		} else {
			p.LowWatermark = p.Segments[0].BaseOffset
		}
		if p.LowWatermark > recovered {
			recovered = p.LowWatermark
		}
		p.Leader = seedNode
		p.LeaderEpoch++
		r.Topic = pl.topics[k.TopicID].Name
		r.LowWatermark, r.RecoveredTo, r.ResumeAt = p.LowWatermark, recovered, resume
		for i := len(p.Segments) - 1; i >= 0; i-- {
			if !p.Segments[i].IsGap() {
				r.LastFlushedAt = time.UnixMilli(p.Segments[i].MaxTimestamp).UTC().Format(time.RFC3339Nano)
				break
			}
		}
	}
}

// assemble writes topics and partitions in the image's canonical order.
func (pl *planner) assemble(out *fsm.Image) {
	for _, t := range pl.topics {
		out.Topics = append(out.Topics, *t)
		out.LastApplied = max(out.LastApplied, t.ID)
	}
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Name < out.Topics[j].Name })
	for _, p := range pl.parts {
		out.Partitions = append(out.Partitions, *p)
	}
	sort.Slice(out.Partitions, func(i, j int) bool {
		a, b := out.Partitions[i], out.Partitions[j]
		if a.TopicID != b.TopicID {
			return a.TopicID < b.TopicID
		}
		return a.Index < b.Index
	})
}

// pendingDeletes keeps the checkpoint's queued deletions of objects that
// still exist and adds the objects that hold only deleted topics' blocks.
func pendingDeletes(img *fsm.Image, existing map[string]bool, out *fsm.Image, deadObjects []string) []string {
	referenced := map[string]bool{}
	for _, p := range out.Partitions {
		for _, s := range p.Segments {
			referenced[s.ObjectKey] = true
		}
	}
	set := map[string]bool{}
	for _, k := range append(append([]string(nil), img.PendingDeletes...), deadObjects...) {
		if existing[k] && !referenced[k] {
			set[k] = true
		}
	}
	var keys []string
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unreadableObjects records the objects this restore could not read; one an
// earlier restore could not read either keeps that restore's index.
func unreadableObjects(img *fsm.Image, keys []string) []fsm.UnreadableObject {
	before := map[string]uint64{}
	for _, u := range img.Unreadable {
		before[u.Key] = u.RestoredFrom
	}
	var out []fsm.UnreadableObject
	for _, k := range keys {
		from, ok := before[k]
		if !ok {
			from = img.LastApplied
		}
		out = append(out, fsm.UnreadableObject{Key: k, RestoredFrom: from})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

type candidate struct {
	key string
	mod time.Time
	e   s3seg.IndexEntry
}

// less orders blocks deterministically (by topic, partition, base offset,
// then key), so the plan does not depend on listing order.
func (a candidate) less(b candidate) bool {
	if a.e.TopicID != b.e.TopicID {
		return a.e.TopicID < b.e.TopicID
	}
	if a.e.Partition != b.e.Partition {
		return a.e.Partition < b.e.Partition
	}
	if a.e.BaseOffset != b.e.BaseOffset {
		return a.e.BaseOffset < b.e.BaseOffset
	}
	return a.key < b.key
}

func (r *restoreReport) isFromS3(topic string) bool {
	for _, t := range r.TopicsFromS3 {
		if t == topic {
			return true
		}
	}
	return false
}

func refFromEntry(c candidate) fsm.SegmentRef {
	return fsm.SegmentRef{
		ObjectKey: c.key, ByteOffset: c.e.Offset, ByteLength: c.e.Length,
		BaseOffset: c.e.BaseOffset, LastOffset: c.e.LastOffset, RecordCount: c.e.RecordCount,
		MinTimestamp: c.e.MinTimestamp, MaxTimestamp: c.e.MaxTimestamp, Compression: uint8(c.e.Compression),
		CRC: c.e.CRC, UncompressedSize: c.e.UncompressedSize, CommittedAt: c.mod.UnixMilli(),
	}
}

// gapRef records offsets [base, last] as lost. Its timestamps and commit
// time are the previous segment's, so time-based retention ages it out
// with its neighbours.
func gapRef(base, last int64, prev []fsm.SegmentRef) fsm.SegmentRef {
	var ts, at int64
	if n := len(prev); n > 0 {
		ts, at = prev[n-1].MaxTimestamp, prev[n-1].CommittedAt
	}
	return fsm.SegmentRef{BaseOffset: base, LastOffset: last, MinTimestamp: ts, MaxTimestamp: ts, CommittedAt: at}
}

func countGroups(gs []fsm.GroupOffsetEntry) int {
	seen := map[string]bool{}
	for _, g := range gs {
		seen[g.Group] = true
	}
	return len(seen)
}
