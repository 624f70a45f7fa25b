package fsm

import (
	"fmt"
	"sort"
	"time"
)

// Disaster-recovery planning: from the latest Postgres checkpoint and the
// blocks listed in the footers of the segment objects in the bucket, build
// the image a fresh cluster starts from. Pure: no I/O, no clock, so every
// rule is unit-tested (restoreplan_test.go).
//
// Rules (top-level design, "Metadata checkpoints and disaster recovery"):
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
//   - A block of a checkpointed topic (same ID and name) at a partition
//     index past the checkpoint's count belongs to a partition added
//     after the checkpoint (CreatePartitions never lowers a count): the
//     topic grows to the highest partition seen, the new partitions start
//     empty and are extended like any other. Configuration changed after
//     the checkpoint is not in the bucket: the checkpoint's stays.
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
//   - Idempotent producers are fenced (the epoch after their largest, partition
//     epochs and sequences cleared): their
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

// RestoreInput is what PlanRestore works from.
type RestoreInput struct {
	Image    *Image          // the checkpoint; empty when there is none
	Existing map[string]bool // every object in the bucket
	// Blocks are the blocks in the footers of the objects the checkpoint
	// does not reference, in any order.
	Blocks []RestoreBlock
	// Unreadable lists objects whose footers could not be read; the
	// caller plans with any only when the operator allowed it.
	Unreadable []string
	SeedNode   string // leads every partition at first (rebalancing spreads them later)
	OffsetGap  int64  // RESTORE_OFFSET_GAP
	Generation uint64 // the restored cluster's producer generation
}

// RestoreBlock is one partition block listed in a segment object's footer.
// Ref.ObjectKey names the object and Ref.CommittedAt is its last-modified
// time (unix ms).
type RestoreBlock struct {
	Topic     string
	TopicID   uint64
	Partition int32
	Ref       SegmentRef
}

// RestoredPartition is the restored range of one partition.
type RestoredPartition struct {
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

// RestoreReport summarises a restore; the CLI prints it (its JSON form is
// the `restore -o json` output). PlanRestore fills what the plan decides;
// the fields marked "caller" are filled by whoever runs the restore.
type RestoreReport struct {
	CheckpointIndex   uint64              `json:"checkpoint_raft_index"`
	CheckpointTakenAt string              `json:"checkpoint_taken_at,omitempty"` // caller
	CheckpointAge     string              `json:"checkpoint_age,omitempty"`      // caller
	SeedIndex         uint64              `json:"seed_raft_index"`               // caller
	ClusterID         string              `json:"cluster_id,omitempty"`          // caller
	Topics            int                 `json:"topics"`
	TopicsFromS3      []string            `json:"topics_recreated_from_s3"`
	TopicsGrown       []string            `json:"topics_with_partitions_from_s3"` // partitions added after the checkpoint
	Partitions        int                 `json:"partitions"`
	SegmentsFromPG    int                 `json:"segments_from_postgres"`
	SegmentsFromS3    int                 `json:"segments_reconciled_from_s3"`
	SegmentsMissing   int                 `json:"segments_missing_on_s3"`
	ObjectsScanned    int                 `json:"objects_scanned"` // caller
	BlocksSkipped     int                 `json:"blocks_skipped_overlapping"`
	Unreadable        []string            `json:"objects_unreadable"`
	AllowUnreadable   bool                `json:"allow_unreadable"` // caller
	DeletedTopicIDs   []uint64            `json:"deleted_topic_ids_skipped"`
	PendingDeletes    int                 `json:"pending_deletes"`
	ProducerGen       uint64              `json:"producer_generation"`
	Groups            int                 `json:"consumer_groups"`
	Producers         int                 `json:"producers"`
	ProducersDropped  int                 `json:"producers_dropped"`
	LostOffsets       int64               `json:"lost_offsets_total"`
	OffsetGap         int64               `json:"offset_gap"`
	OffsetGapSource   string              `json:"offset_gap_source"`
	PerPartition      []RestoredPartition `json:"partitions_restored"`
	Warnings          []string            `json:"warnings"`
	Duration          string              `json:"duration,omitempty"` // caller
}

// RestoreIndexGap separates the restored cluster's Raft indexes (topic IDs)
// from the old cluster's: the caller seeds the planned image at
// LastApplied + RestoreIndexGap. It is not what keeps IDs apart: topic IDs
// the old cluster issued after its checkpoint are evidenced by the footers
// of their objects (a topic without objects has no data to confuse), and
// producer IDs carry the restore's generation.
const RestoreIndexGap = 1 << 24

// PlanRestore builds the restored image. in.Image may be empty (no
// checkpoint: everything comes from the bucket). The steps follow the
// rules above, in order.
func PlanRestore(in RestoreInput) (*Image, RestoreReport) {
	gap, source := restoreOffsetGap(in.Image, in.OffsetGap, len(in.Unreadable))
	rep := RestoreReport{CheckpointIndex: in.Image.LastApplied, OffsetGap: gap, OffsetGapSource: source, ProducerGen: in.Generation,
		TopicsFromS3: []string{}, TopicsGrown: []string{}, Unreadable: append([]string{}, in.Unreadable...), DeletedTopicIDs: []uint64{}, Warnings: []string{}}
	pl := newPlanner(in.Image, &rep)
	pl.checkpointSegments(in.Existing)
	blocks, deadObjects := pl.liveBlocks(in.Blocks)
	pl.topicsFromS3(blocks)
	pl.extend(blocks)
	pl.resume(gap, in.SeedNode)
	out := pl.assemble(in.Generation)
	out.PendingDeletes = pendingDeletes(in.Image, in.Existing, out, deadObjects)
	out.Unreadable = unreadableObjects(in.Image, in.Unreadable)
	pl.summarise(out)
	return out, rep
}

// KnownObjects are the objects a restore from img does not read: those it
// references (their blocks are known) and those it queued for deletion
// (deleted by the old cluster: not read, they stay queued).
func (img *Image) KnownObjects() map[string]bool {
	known := referencedObjects(img)
	for _, k := range img.PendingDeletes {
		known[k] = true
	}
	return known
}

// referencedObjects are the objects img's segments point into.
func referencedObjects(img *Image) map[string]bool {
	refs := map[string]bool{}
	for _, p := range img.Partitions {
		for _, s := range p.Segments {
			refs[s.ObjectKey] = true
		}
	}
	return refs
}

// restoreOffsetGap is how many offsets each partition skips after its
// evidence, and why.
func restoreOffsetGap(img *Image, configured int64, unreadable int) (int64, string) {
	gap, source := offsetGapFor(img, configured)
	if n := int64(unreadable); n > 0 {
		// An unreadable object may hold a partition's last flushed block,
		// which is no longer evidence; one block never holds more than the
		// bound (it was cut from at most that many unflushed records).
		gap *= 1 + n
		source += fmt.Sprintf(", times %d: each of the %d unreadable objects may hide up to that many offsets", 1+n, n)
	}
	return gap, source
}

// offsetGapFor is the bound one partition may have held unflushed, and why.
func offsetGapFor(img *Image, configured int64) (int64, string) {
	bound := img.MaxUnflushedRecords
	switch {
	case bound == 0:
		return configured, "RESTORE_OFFSET_GAP (assumed: the checkpoint records no enforced MAX_UNFLUSHED_RECORDS bound)"
	case bound >= configured:
		return bound, fmt.Sprintf("MAX_UNFLUSHED_RECORDS=%d enforced by the old cluster", bound)
	}
	return configured, fmt.Sprintf("RESTORE_OFFSET_GAP (above the MAX_UNFLUSHED_RECORDS=%d the old cluster enforced)", bound)
}

// planner holds the image being built.
type planner struct {
	img    *Image
	rep    *RestoreReport
	topics map[uint64]*Topic
	names  map[string]uint64
	parts  map[PartitionKey]*Partition
	prep   map[PartitionKey]*RestoredPartition
	// deletedBelow: per previously unreadable object, the index below
	// which absent topic IDs are deleted ones (default: the checkpoint's).
	deletedBelow map[string]uint64
}

func newPlanner(img *Image, rep *RestoreReport) *planner {
	pl := &planner{img: img, rep: rep, topics: map[uint64]*Topic{}, names: map[string]uint64{},
		parts: map[PartitionKey]*Partition{}, prep: map[PartitionKey]*RestoredPartition{}, deletedBelow: map[string]uint64{}}
	for _, t := range img.Topics {
		t := t
		pl.topics[t.ID] = &t
		pl.names[t.Name] = t.ID
	}
	for _, p := range img.Partitions {
		p := p
		p.Segments = append([]SegmentRef(nil), p.Segments...)
		pl.parts[PartitionKey{TopicID: p.TopicID, Partition: p.Index}] = &p
	}
	for _, u := range img.Unreadable {
		pl.deletedBelow[u.Key] = u.RestoredFrom
	}
	return pl
}

func (pl *planner) reportFor(k PartitionKey) *RestoredPartition {
	r := pl.prep[k]
	if r == nil {
		r = &RestoredPartition{Partition: k.Partition}
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

// liveBlocks returns the blocks in canonical order, without those of
// objects queued for deletion and of deleted topics; deadObjects are the
// objects that held nothing else.
func (pl *planner) liveBlocks(all []RestoreBlock) (blocks []RestoreBlock, deadObjects []string) {
	pending := map[string]bool{}
	for _, k := range pl.img.PendingDeletes {
		pending[k] = true
	}
	deleted := map[uint64]bool{}
	live := map[string]int{} // per object read: its live blocks
	for _, b := range all {
		key := b.Ref.ObjectKey
		if pending[key] {
			continue
		}
		live[key] += 0
		if pl.topicDeleted(key, b.TopicID) {
			deleted[b.TopicID] = true
			continue
		}
		live[key]++
		blocks = append(blocks, b)
	}
	for key, n := range live {
		if n == 0 {
			deadObjects = append(deadObjects, key) // order does not matter: pendingDeletes sorts
		}
	}
	for id := range deleted {
		pl.rep.DeletedTopicIDs = append(pl.rep.DeletedTopicIDs, id)
	}
	sort.Slice(pl.rep.DeletedTopicIDs, func(i, j int) bool { return pl.rep.DeletedTopicIDs[i] < pl.rep.DeletedTopicIDs[j] })
	sort.Slice(blocks, func(i, j int) bool { return blockLess(blocks[i], blocks[j]) })
	return blocks, deadObjects
}

// topicsFromS3 recreates the topics only S3 knows (created after the
// checkpoint), and grows every topic to the partitions its blocks show
// (partitions added after the checkpoint).
func (pl *planner) topicsFromS3(blocks []RestoreBlock) {
	for _, b := range blocks {
		pl.recreateTopic(b)
	}
	grown := map[string]bool{}
	for _, b := range blocks {
		t, ok := pl.topics[b.TopicID]
		if ok && t.Name == b.Topic && b.Partition >= t.Partitions {
			if !pl.rep.isFromS3(t.Name) {
				grown[t.Name] = true
			}
			t.Partitions = b.Partition + 1
		}
	}
	for name := range grown {
		pl.rep.TopicsGrown = append(pl.rep.TopicsGrown, name)
	}
	for _, t := range pl.topics {
		for i := int32(0); i < t.Partitions; i++ {
			k := PartitionKey{TopicID: t.ID, Partition: i}
			if pl.parts[k] == nil {
				pl.parts[k] = &Partition{TopicID: t.ID, Index: i}
			}
		}
	}
}

// recreateTopic adds the topic of block b unless it is known, or its name
// belongs to another topic (a deleted-and-recreated name: the checkpoint's
// topic wins).
func (pl *planner) recreateTopic(b RestoreBlock) {
	if _, ok := pl.topics[b.TopicID]; ok {
		return
	}
	if other, clash := pl.names[b.Topic]; clash && other != b.TopicID {
		return
	}
	t := &Topic{ID: b.TopicID, Name: b.Topic, Config: TopicConfig{Compression: "zstd"}, CreatedAt: b.Ref.CommittedAt}
	pl.topics[t.ID] = t
	pl.names[t.Name] = t.ID
	pl.rep.TopicsFromS3 = append(pl.rep.TopicsFromS3, t.Name)
}

// extend appends to every partition the blocks that continue it.
func (pl *planner) extend(blocks []RestoreBlock) {
	byPart := map[PartitionKey][]RestoreBlock{}
	for _, b := range blocks {
		k := PartitionKey{TopicID: b.TopicID, Partition: b.Partition}
		if t, ok := pl.topics[k.TopicID]; !ok || t.Name != b.Topic || pl.parts[k] == nil {
			pl.rep.BlocksSkipped++
			continue
		}
		byPart[k] = append(byPart[k], b)
	}
	for k, cands := range byPart {
		pl.extendPartition(k, cands)
	}
}

// extendPartition registers, from the flushed offset on, the longest block
// that continues partition k, again and again; where none does but one
// starts further on, the offsets in between become a gap.
func (pl *planner) extendPartition(k PartitionKey, cands []RestoreBlock) {
	p := pl.parts[k]
	r := pl.reportFor(k)
	used := make([]bool, len(cands))
	for {
		end := p.FlushedOffset
		if best := continuing(cands, used, end); best >= 0 {
			used[best] = true
			p.Segments = append(p.Segments, cands[best].Ref)
			p.FlushedOffset = cands[best].Ref.LastOffset + 1
			r.FromS3++
			pl.rep.SegmentsFromS3++
			continue
		}
		// Nothing continues the partition; a block further on means a
		// hole nobody can fill (record it and go on).
		next := firstAfter(cands, used, end)
		if next < 0 {
			break
		}
		hole := cands[next].Ref.BaseOffset
		pl.rep.Warnings = append(pl.rep.Warnings, fmt.Sprintf("%s/%d: no object holds offsets %d-%d; recorded as a gap",
			pl.topics[k.TopicID].Name, k.Partition, end, hole-1))
		p.Segments = append(p.Segments, gapRef(end, hole-1, p.Segments))
		p.FlushedOffset = hole
	}
	for i := range cands {
		if !used[i] {
			pl.rep.BlocksSkipped++
		}
	}
}

// continuing is the unused candidate starting at end that reaches furthest
// (-1: none).
func continuing(cands []RestoreBlock, used []bool, end int64) int {
	best := -1
	for i, c := range cands {
		if used[i] || c.Ref.BaseOffset != end {
			continue
		}
		if best < 0 || c.Ref.LastOffset > cands[best].Ref.LastOffset {
			best = i
		}
	}
	return best
}

// firstAfter is the unused candidate with the lowest base offset above end
// (-1: none).
func firstAfter(cands []RestoreBlock, used []bool, end int64) int {
	next := -1
	for i, c := range cands {
		if !used[i] && c.Ref.BaseOffset > end && (next < 0 || c.Ref.BaseOffset < cands[next].Ref.BaseOffset) {
			next = i
		}
	}
	return next
}

// evidence is, per partition, the highest offset the checkpoint's groups
// and producers show was assigned.
func evidence(img *Image) map[PartitionKey]int64 {
	ev := map[PartitionKey]int64{}
	for _, g := range img.Groups {
		k := PartitionKey{TopicID: g.TopicID, Partition: g.Partition}
		ev[k] = max(ev[k], g.Offset)
	}
	for _, pr := range img.Producers {
		for _, s := range pr.Sequences {
			k := PartitionKey{TopicID: s.TopicID, Partition: s.Partition}
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
		dropLeadingGaps(p, recovered)
		p.Leader = seedNode
		p.LeaderEpoch++
		r.Topic = pl.topics[k.TopicID].Name
		r.LowWatermark, r.RecoveredTo, r.ResumeAt = p.LowWatermark, max(recovered, p.LowWatermark), resume
		r.LastFlushedAt = lastFlushedAt(p.Segments)
	}
}

// dropLeadingGaps removes the gaps at the front of p below recovered
// (missing objects are not readable) and sets the low watermark.
func dropLeadingGaps(p *Partition, recovered int64) {
	for len(p.Segments) > 0 && p.Segments[0].IsGap() && p.Segments[0].LastOffset < recovered {
		p.Segments = p.Segments[1:]
	}
	if len(p.Segments) == 0 {
		p.LowWatermark = p.FlushedOffset
	} else {
		p.LowWatermark = p.Segments[0].BaseOffset
	}
}

// lastFlushedAt is the max timestamp of the last recovered segment ("" when
// none).
func lastFlushedAt(segs []SegmentRef) string {
	for i := len(segs) - 1; i >= 0; i-- {
		if !segs[i].IsGap() {
			return time.UnixMilli(segs[i].MaxTimestamp).UTC().Format(time.RFC3339Nano)
		}
	}
	return ""
}

// assemble builds the image: the checkpoint's groups, clock and bound,
// fenced producers, the new generation, and topics and partitions in the
// image's canonical order.
func (pl *planner) assemble(generation uint64) *Image {
	img := pl.img
	out := &Image{LastApplied: img.LastApplied, Groups: img.Groups, // Producers: none, dropped (summarise)
		ProducerGeneration: generation, MaxUnflushedRecords: img.MaxUnflushedRecords, Clock: img.Clock}
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
	return out
}

// summarise fills the report's totals and per-partition list from the
// planned image.
func (pl *planner) summarise(out *Image) {
	rep := pl.rep
	rep.PendingDeletes = len(out.PendingDeletes)
	rep.Topics, rep.Partitions = len(out.Topics), len(out.Partitions)
	rep.Groups = countGroups(out.Groups)
	// Idempotent producers are not carried: the checkpoint knows their
	// epochs and sequences only up to its own index, while a client may
	// have bumped its epoch locally since and retry a batch recovered from
	// S3 at an epoch no fence is provably above; without sequences that
	// retry would be appended again. A dropped producer's retry is refused
	// (unknown producer, nothing written) and its client starts a new id.
	rep.Producers, rep.ProducersDropped = len(out.Producers), len(pl.img.Producers)
	for _, p := range out.Partitions {
		rep.PerPartition = append(rep.PerPartition, *pl.reportFor(PartitionKey{TopicID: p.TopicID, Partition: p.Index}))
	}
	sort.Strings(rep.TopicsFromS3)
	sort.Strings(rep.TopicsGrown)
}

// pendingDeletes keeps the checkpoint's queued deletions of objects that
// still exist and adds the objects that hold only deleted topics' blocks.
func pendingDeletes(img *Image, existing map[string]bool, out *Image, deadObjects []string) []string {
	referenced := referencedObjects(out)
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
func unreadableObjects(img *Image, keys []string) []UnreadableObject {
	before := map[string]uint64{}
	for _, u := range img.Unreadable {
		before[u.Key] = u.RestoredFrom
	}
	var out []UnreadableObject
	for _, k := range keys {
		from, ok := before[k]
		if !ok {
			from = img.LastApplied
		}
		out = append(out, UnreadableObject{Key: k, RestoredFrom: from})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// blockLess orders blocks deterministically (by topic, partition, base
// offset, then object key), so the plan does not depend on listing order.
func blockLess(a, b RestoreBlock) bool {
	if a.TopicID != b.TopicID {
		return a.TopicID < b.TopicID
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	if a.Ref.BaseOffset != b.Ref.BaseOffset {
		return a.Ref.BaseOffset < b.Ref.BaseOffset
	}
	return a.Ref.ObjectKey < b.Ref.ObjectKey
}

func (r *RestoreReport) isFromS3(topic string) bool {
	for _, t := range r.TopicsFromS3 {
		if t == topic {
			return true
		}
	}
	return false
}

// gapRef records offsets [base, last] as lost. Its timestamps and commit
// time are the previous segment's, so time-based retention ages it out
// with its neighbours.
func gapRef(base, last int64, prev []SegmentRef) SegmentRef {
	var ts, at int64
	if n := len(prev); n > 0 {
		ts, at = prev[n-1].MaxTimestamp, prev[n-1].CommittedAt
	}
	return SegmentRef{BaseOffset: base, LastOffset: last, MinTimestamp: ts, MaxTimestamp: ts, CommittedAt: at}
}

func countGroups(gs []GroupOffsetEntry) int {
	seen := map[string]bool{}
	for _, g := range gs {
		seen[g.Group] = true
	}
	return len(seen)
}
