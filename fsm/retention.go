package fsm

import "strconv"

// Retention: the rule that picks a partition's trim point, and the fence
// that makes a TrimPartition apply only what the topic's config at apply
// time expires (DESIGN.md, "Retention fence").

// RetentionPoint returns the new low watermark for a partition's committed
// segments under cfg, or -1 when nothing expires. Only whole, flushed
// segments expire: by age and by size (Kafka's rule: drop the oldest while
// the rest still holds at least RetentionBytes).
//
// By age, a segment expires when both its max record timestamp and its
// commit time are older than RetentionMs (nowMs is the cluster clock).
// Record timestamps default to the receiving agent's wall clock, so one
// agent whose clock is behind would otherwise make fresh records look old;
// the commit time is cluster time (State.commitTime), so a segment always
// lives RetentionMs after its commit. Refs committed by earlier versions
// carry the uploader's time as their commit time; a commit time of 0 (a
// gap ref built without one) leaves the record timestamps to decide, as
// before: no ref expires earlier than it did before.
//
// It is pure and deterministic: the janitor proposes its result and Apply
// re-checks a TrimPartition with it (trimFence).
func RetentionPoint(segs []SegmentRef, flushed int64, cfg TopicConfig, nowMs int64) int64 {
	drop := 0
	if cfg.RetentionMs > 0 {
		limit := nowMs - cfg.RetentionMs
		for drop < len(segs) && segs[drop].MaxTimestamp < limit && segs[drop].CommittedAt < limit {
			drop++
		}
	}
	if cfg.RetentionBytes > 0 {
		var total int64
		for _, s := range segs {
			total += s.ByteLength
		}
		bySize := 0
		for bySize < len(segs) && total-segs[bySize].ByteLength >= cfg.RetentionBytes {
			total -= segs[bySize].ByteLength
			bySize++
		}
		drop = max(drop, bySize)
	}
	if drop == 0 {
		return -1
	}
	if drop == len(segs) {
		return flushed
	}
	return segs[drop].BaseOffset
}

// trimFence refuses a (payload version 2) TrimPartition whose trim point
// the topic's config at apply time does not expire: an AlterTopicConfig
// that raised or removed retention.ms / retention.bytes was applied after
// the proposer computed the point. The time is the command's Timestamp
// (the cluster clock the proposer read), never above the applied cluster
// clock, so nothing expires at a time the log has not reached. Between the
// proposer's read and the apply, segments are only appended or trimmed
// from the front, which never lowers RetentionPoint under an unchanged
// config: only a config change can make the fence refuse.
func (s *State) trimFence(c *TrimPartition, p *Partition) *Result {
	t := s.TopicsByID[c.TopicID]
	at := min(c.Timestamp, s.Clock)
	allowed := RetentionPoint(p.Segments, p.FlushedOffset, t.Config, at)
	if c.Before <= allowed {
		return nil
	}
	keeps := "every segment"
	if allowed > p.LowWatermark {
		keeps = "offsets from " + strconv.FormatInt(allowed, 10)
	}
	return fail(CodeRetentionChanged, "%s/%d to %d: under retention.ms=%d retention.bytes=%d at cluster time %d the topic keeps %s",
		t.Name, c.Partition, c.Before, t.Config.RetentionMs, t.Config.RetentionBytes, at, keeps)
}
