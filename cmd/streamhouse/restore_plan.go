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
//   - Blocks of topics created after the checkpoint recreate the topic
//     (name and ID from the footer, partition count from the highest
//     partition seen, default config).
//   - Each partition resumes strictly after the highest offset evidenced
//     anywhere: the checkpoint's high watermark, the registered segments,
//     committed group offsets and producer batches. Offsets between the end
//     of the recovered data and that point were acknowledged but never
//     flushed; they are recorded as a gap, so they are never reused.
//   - Idempotent producers are fenced (next epoch, sequences cleared): their
//     checkpointed sequences may predate batches recovered from S3.
//   - Records acknowledged after the last checkpoint and lost with every
//     disk leave no evidence at all. offsetGap more offsets per partition
//     are skipped so that new records cannot take their offsets either, as
//     long as fewer than offsetGap records per partition were acknowledged
//     after the last checkpoint (CHECKPOINT_INTERVAL_MS bounds that window
//     while Postgres is healthy).

// objectFooter is one segment object's decoded footer.
type objectFooter struct {
	Key          string
	LastModified time.Time
	Entries      []s3seg.IndexEntry
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
	Groups            int               `json:"consumer_groups"`
	Producers         int               `json:"producers"`
	LostOffsets       int64             `json:"lost_offsets_total"`
	OffsetGap         int64             `json:"offset_gap"`
	PerPartition      []partitionReport `json:"partitions_restored"`
	Warnings          []string          `json:"warnings"`
	Duration          string            `json:"duration,omitempty"`
}

// restoreIndexGap separates the restored cluster's Raft indexes (which are
// topic and producer IDs) from anything the old cluster may have issued
// after its last checkpoint.
const restoreIndexGap = 1 << 24

// planRestore builds the restored image. img may be empty (no checkpoint:
// everything comes from S3). existing lists the bucket's objects; footers
// holds the decoded footers of the objects the image does not reference.
// seedNode leads every partition at first (rebalancing spreads them later).
func planRestore(img *fsm.Image, existing map[string]bool, footers []objectFooter, seedNode string, offsetGap int64) (*fsm.Image, restoreReport) {
	rep := restoreReport{CheckpointIndex: img.LastApplied, OffsetGap: offsetGap, TopicsFromS3: []string{}, Unreadable: []string{}, Warnings: []string{}}
	out := &fsm.Image{LastApplied: img.LastApplied, Groups: img.Groups}
	// Every idempotent producer is fenced (epoch + 1, no sequences): the
	// checkpoint's sequences can be older than batches recovered from S3, so
	// a retry of such a batch would not be recognised and would be written
	// twice. Its old session now gets "fenced" and must re-initialise. The
	// owner stays: only the key that created it may re-initialise it.
	for _, p := range img.Producers {
		out.Producers = append(out.Producers, fsm.ProducerEntry{ID: p.ID, Epoch: p.Epoch + 1, LastSeen: p.LastSeen, Owner: p.Owner})
	}
	topics := map[uint64]*fsm.Topic{}
	names := map[string]uint64{}
	for _, t := range img.Topics {
		t := t
		topics[t.ID] = &t
		names[t.Name] = t.ID
	}
	parts := map[fsm.PartitionKey]*fsm.Partition{}
	for _, p := range img.Partitions {
		p := p
		p.Segments = append([]fsm.SegmentRef(nil), p.Segments...)
		parts[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}] = &p
	}
	prep := map[fsm.PartitionKey]*partitionReport{}
	reportFor := func(k fsm.PartitionKey) *partitionReport {
		r := prep[k]
		if r == nil {
			r = &partitionReport{Partition: k.Partition}
			prep[k] = r
		}
		return r
	}

	// 1. The checkpoint's segments: missing objects become gaps.
	for k, p := range parts {
		r := reportFor(k)
		for i := range p.Segments {
			s := &p.Segments[i]
			if s.IsGap() {
				continue
			}
			if !existing[s.ObjectKey] {
				r.MissingOnS3++
				rep.SegmentsMissing++
				s.ObjectKey = ""
				continue
			}
			r.FromPostgres++
			rep.SegmentsFromPG++
		}
	}

	// 2. Topics that only S3 knows.
	var blocks []candidate
	for _, f := range footers {
		for _, e := range f.Entries {
			blocks = append(blocks, candidate{key: f.Key, mod: f.LastModified, e: e})
		}
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].less(blocks[j]) })
	for _, b := range blocks {
		if _, ok := topics[b.e.TopicID]; ok {
			continue
		}
		if other, clash := names[b.e.Topic]; clash && other != b.e.TopicID {
			continue // a deleted-and-recreated name: the checkpoint's topic wins
		}
		t := &fsm.Topic{ID: b.e.TopicID, Name: b.e.Topic, Config: fsm.TopicConfig{Compression: "zstd"}, CreatedAt: b.mod.UnixMilli()}
		topics[t.ID] = t
		names[t.Name] = t.ID
		rep.TopicsFromS3 = append(rep.TopicsFromS3, t.Name)
	}
	for _, b := range blocks {
		t, ok := topics[b.e.TopicID]
		if ok && t.Name == b.e.Topic && b.e.Partition >= t.Partitions && rep.isFromS3(t.Name) {
			t.Partitions = b.e.Partition + 1
		}
	}
	for _, t := range topics {
		for i := int32(0); i < t.Partitions; i++ {
			k := fsm.PartitionKey{TopicID: t.ID, Partition: i}
			if parts[k] == nil {
				parts[k] = &fsm.Partition{TopicID: t.ID, Index: i}
			}
		}
	}

	// 3. Extend every partition with the blocks that continue it.
	byPart := map[fsm.PartitionKey][]candidate{}
	for _, b := range blocks {
		k := fsm.PartitionKey{TopicID: b.e.TopicID, Partition: b.e.Partition}
		if t, ok := topics[k.TopicID]; !ok || t.Name != b.e.Topic || parts[k] == nil {
			rep.BlocksSkipped++
			continue
		}
		byPart[k] = append(byPart[k], b)
	}
	for k, cands := range byPart {
		p := parts[k]
		r := reportFor(k)
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
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s/%d: no object holds offsets %d-%d; recorded as a gap",
					topics[k.TopicID].Name, k.Partition, end, gap-1))
				p.Segments = append(p.Segments, gapRef(end, gap-1, p.Segments))
				p.FlushedOffset = gap
				continue
			}
			c := cands[best]
			used[best] = true
			p.Segments = append(p.Segments, refFromEntry(c))
			p.FlushedOffset = c.e.LastOffset + 1
			r.FromS3++
			rep.SegmentsFromS3++
		}
		for i := range cands {
			if !used[i] {
				rep.BlocksSkipped++
			}
		}
	}

	// 4. Resume after the highest evidenced offset; fix watermarks.
	evidence := map[fsm.PartitionKey]int64{}
	for _, g := range img.Groups {
		k := fsm.PartitionKey{TopicID: g.TopicID, Partition: g.Partition}
		evidence[k] = max(evidence[k], g.Offset)
	}
	for _, pr := range img.Producers {
		for _, s := range pr.Sequences {
			k := fsm.PartitionKey{TopicID: s.TopicID, Partition: s.Partition}
			evidence[k] = max(evidence[k], s.BaseOffset+int64(s.Count))
		}
	}
	for k, p := range parts {
		r := reportFor(k)
		recovered := p.FlushedOffset
		evidenced := max(p.NextOffset, p.FlushedOffset, evidence[k])
		resume := evidenced + offsetGap
		if resume > recovered {
			p.Segments = append(p.Segments, gapRef(recovered, resume-1, p.Segments))
			r.LostOffsets = evidenced - recovered
			r.SkippedOffset = offsetGap
			rep.LostOffsets += r.LostOffsets
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
		r.Topic = topics[k.TopicID].Name
		r.LowWatermark, r.RecoveredTo, r.ResumeAt = p.LowWatermark, recovered, resume
		for i := len(p.Segments) - 1; i >= 0; i-- {
			if !p.Segments[i].IsGap() {
				r.LastFlushedAt = time.UnixMilli(p.Segments[i].MaxTimestamp).UTC().Format(time.RFC3339Nano)
				break
			}
		}
	}

	// 5. Assemble in the image's canonical order.
	for _, t := range topics {
		out.Topics = append(out.Topics, *t)
		out.LastApplied = max(out.LastApplied, t.ID)
	}
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Name < out.Topics[j].Name })
	for _, p := range parts {
		out.Partitions = append(out.Partitions, *p)
	}
	sort.Slice(out.Partitions, func(i, j int) bool {
		a, b := out.Partitions[i], out.Partitions[j]
		if a.TopicID != b.TopicID {
			return a.TopicID < b.TopicID
		}
		return a.Index < b.Index
	})
	for _, pr := range out.Producers {
		out.LastApplied = max(out.LastApplied, pr.ID)
	}
	referenced := map[string]bool{}
	for _, p := range out.Partitions {
		for _, s := range p.Segments {
			referenced[s.ObjectKey] = true
		}
	}
	for _, k := range img.PendingDeletes {
		if existing[k] && !referenced[k] {
			out.PendingDeletes = append(out.PendingDeletes, k)
		}
	}
	rep.Topics, rep.Partitions = len(out.Topics), len(out.Partitions)
	rep.Groups = countGroups(out.Groups)
	rep.Producers = len(out.Producers)
	for _, p := range out.Partitions {
		r := prep[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}]
		rep.PerPartition = append(rep.PerPartition, *r)
	}
	sort.Strings(rep.TopicsFromS3)
	return out, rep
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

// gapRef records offsets [base, last] as lost. Its timestamps are the
// previous segment's, so time-based retention ages it out with its
// neighbours.
func gapRef(base, last int64, prev []fsm.SegmentRef) fsm.SegmentRef {
	var ts int64
	if n := len(prev); n > 0 {
		ts = prev[n-1].MaxTimestamp
	}
	return fsm.SegmentRef{BaseOffset: base, LastOffset: last, MinTimestamp: ts, MaxTimestamp: ts}
}

func countGroups(gs []fsm.GroupOffsetEntry) int {
	seen := map[string]bool{}
	for _, g := range gs {
		seen[g.Group] = true
	}
	return len(seen)
}
