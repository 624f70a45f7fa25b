package pgsync

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/streamhouse/streamhouse/fsm"
)

// historyRows is how many checkpoint history rows are kept.
const historyRows = 100

// Info describes one checkpoint.
type Info struct {
	RaftIndex uint64    // the image's LastApplied
	RaftTerm  uint64    // the image's RaftTerm
	TakenAt   time.Time // when the writer started writing it (UTC, microseconds)
	// Counts of the image.
	Topics, Partitions, Segments int
	// SegmentsWritten is how many segment rows this checkpoint inserted
	// (the rest were already in the database).
	SegmentsWritten int
	ClusterID       string // cluster of the writer
	NodeID          string // agent that wrote it
}

// WriteCheckpoint stores img as the latest checkpoint, in one transaction:
//
//   - it locks the guard row, so writers are serialised;
//   - the first writer claims the database for clusterID; a database
//     claimed by another cluster fails with ErrClusterMismatch;
//   - an image whose LastApplied is not above the stored Raft index fails
//     with ErrStaleCheckpoint (an equal index included: that state is
//     already stored), so checkpoints never regress;
//   - segment rows are written incrementally: per partition only segments
//     above the stored ones are inserted, rows below the image's first
//     segment (retention) and rows of partitions no longer in the image are
//     deleted; the other tables are replaced;
//   - the guard row and the history (newest 100 kept) record the
//     checkpoint.
//
// An image that cannot be stored fails with ErrInvalidImage. On any error
// the database is unchanged. img is only read.
func (db *DB) WriteCheckpoint(ctx context.Context, img *fsm.Image, clusterID, nodeID string) (Info, error) {
	start := time.Now()
	if clusterID == "" || nodeID == "" {
		return Info{}, errors.New("pgsync: WriteCheckpoint needs a cluster ID and a node ID")
	}
	if !validText(clusterID) || !validText(nodeID) {
		return Info{}, errors.New("pgsync: cluster and node IDs must be valid UTF-8 without NUL")
	}
	if err := checkImage(img); err != nil {
		return Info{}, fmt.Errorf("pgsync: %w: %w", ErrInvalidImage, err)
	}
	info := Info{
		RaftIndex:  img.LastApplied,
		RaftTerm:   img.RaftTerm,
		TakenAt:    start.UTC().Truncate(time.Microsecond),
		Topics:     len(img.Topics),
		Partitions: len(img.Partitions),
		ClusterID:  clusterID,
		NodeID:     nodeID,
	}
	for i := range img.Partitions {
		info.Segments += len(img.Partitions[i].Segments)
	}

	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return Info{}, db.errorf("starting the checkpoint transaction", err)
	}
	defer rollback(tx)

	// Lock order: the guard row, then everything else. Every writer
	// (WriteCheckpoint, AdoptCluster) takes the guard first.
	var stored int64
	if err := tx.QueryRow(ctx, "SELECT raft_index FROM streamhouse_checkpoint_guard FOR UPDATE").Scan(&stored); err != nil {
		return Info{}, db.errorf("locking the checkpoint guard", err)
	}
	if err := db.claimCluster(ctx, tx, clusterID); err != nil {
		return Info{}, err
	}
	if img.LastApplied <= uint64(stored) {
		return Info{}, fmt.Errorf("pgsync: checkpoint at Raft index %d is not newer than the stored checkpoint at Raft index %d: %w",
			img.LastApplied, stored, ErrStaleCheckpoint)
	}

	written, err := db.writeSegments(ctx, tx, img)
	if err != nil {
		return Info{}, err
	}
	info.SegmentsWritten = written
	if err := db.replaceSmallTables(ctx, tx, img); err != nil {
		return Info{}, err
	}
	if err := db.recordCheckpoint(ctx, tx, img, info, start); err != nil {
		return Info{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Info{}, db.errorf("committing the checkpoint", err)
	}
	return info, nil
}

// errorf wraps a database error with what was being done and where.
func (db *DB) errorf(doing string, err error) error {
	return fmt.Errorf("pgsync: %s at %s: %w", doing, db.target, err)
}

// claimCluster makes clusterID the database's owner if it has none, and
// fails with ErrClusterMismatch if another cluster owns it. The caller
// holds the guard lock.
func (db *DB) claimCluster(ctx context.Context, tx pgx.Tx, clusterID string) error {
	var owner string
	err := tx.QueryRow(ctx, "SELECT cluster_id FROM streamhouse_cluster").Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, "INSERT INTO streamhouse_cluster (cluster_id) VALUES ($1)", clusterID); err != nil {
			return db.errorf("claiming the database for the cluster", err)
		}
		db.log.Info("claimed the checkpoint database for this cluster", "cluster_id", clusterID, "target", db.target)
		return nil
	case err != nil:
		return db.errorf("reading the cluster row", err)
	case owner != clusterID:
		return fmt.Errorf("pgsync: the database at %s holds checkpoints of cluster %q, this agent belongs to cluster %q "+
			"(point DATABASE_URL at this cluster's database, or restore from it, which adopts it): %w",
			db.target, owner, clusterID, ErrClusterMismatch)
	}
	return nil
}

// segmentEnds returns, for every partition of the image (by its index in
// img.Partitions), the lowest stored base offset and the highest stored
// segment row. Each probe is an index lookup, so the cost grows with the
// number of partitions, not with the number of segments.
const segmentEndsSQL = `
SELECT k.i, h.base_offset,
       t.base_offset, t.last_offset, t.object_key, t.byte_offset, t.byte_length, t.record_count,
       t.min_timestamp, t.max_timestamp, t.compression, t.crc, t.uncompressed_size, t.committed_at_ms
FROM unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS k(topic_id, partition, i)
LEFT JOIN LATERAL (
    SELECT s.base_offset FROM streamhouse_segments s
    WHERE s.topic_id = k.topic_id AND s.partition = k.partition
    ORDER BY s.base_offset LIMIT 1) h ON true
LEFT JOIN LATERAL (
    SELECT * FROM streamhouse_segments s
    WHERE s.topic_id = k.topic_id AND s.partition = k.partition
    ORDER BY s.base_offset DESC LIMIT 1) t ON true`

// storedPartitionsSQL lists the distinct partitions that have segment rows
// with a loose index scan (one index probe per partition).
const storedPartitionsSQL = `
WITH RECURSIVE k AS (
    (SELECT topic_id, partition FROM streamhouse_segments ORDER BY topic_id, partition LIMIT 1)
    UNION ALL
    SELECT n.topic_id, n.partition FROM k, LATERAL (
        SELECT s.topic_id, s.partition FROM streamhouse_segments s
        WHERE (s.topic_id, s.partition) > (k.topic_id, k.partition)
        ORDER BY s.topic_id, s.partition LIMIT 1) n
)
SELECT topic_id, partition FROM k`

var segmentColumns = []string{"topic_id", "partition", "base_offset", "last_offset", "object_key",
	"byte_offset", "byte_length", "record_count", "min_timestamp", "max_timestamp", "compression",
	"crc", "uncompressed_size", "committed_at_ms"}

// writeSegments brings streamhouse_segments to the image's segment index
// and returns how many rows it inserted.
//
// Per partition: with T the highest stored row and F the image's first
// segment, if T is also in the image (same base offset, every column
// equal), only the image's segments above T are inserted and stored rows
// below F are deleted (retention); if nothing is stored, or everything
// stored lies below F, all rows of the partition are replaced by the
// image's; if T differs from the image's segment at its base offset (the
// segment list was rewritten), the partition is rewritten in full.
// Partitions with rows but absent from the image are deleted.
func (db *DB) writeSegments(ctx context.Context, tx pgx.Tx, img *fsm.Image) (int, error) {
	plan := segmentPlan{img: img, insertFrom: make([]int, len(img.Partitions))}
	if err := db.planTails(ctx, tx, &plan); err != nil {
		return 0, err
	}
	if plan.rewritten > 0 {
		db.log.Warn("stored segment index differs from the state; rewriting those partitions in full", "partitions", plan.rewritten)
	}
	if err := db.planAbsentPartitions(ctx, tx, &plan); err != nil {
		return 0, err
	}
	if plan.deletes.Len() > 0 {
		if err := tx.SendBatch(ctx, &plan.deletes).Close(); err != nil {
			return 0, db.errorf("deleting trimmed segment rows", err)
		}
	}
	// Insert the new segments in one COPY.
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"streamhouse_segments"}, segmentColumns,
		&segmentSource{parts: img.Partitions, from: plan.insertFrom, pi: -1})
	if err != nil {
		return 0, db.errorf("inserting segment rows", err)
	}
	return int(n), nil
}

// segmentPlan is what writeSegments does to the stored segment index.
type segmentPlan struct {
	img        *fsm.Image
	insertFrom []int     // per image partition: index into Segments of the first segment to insert
	deletes    pgx.Batch // row deletions
	rewritten  int       // partitions rewritten in full
}

// planTails compares, per image partition, the stored head and tail rows
// with the image's segments (segmentEndsSQL) and plans the inserts and
// deletes.
func (db *DB) planTails(ctx context.Context, tx pgx.Tx, plan *segmentPlan) error {
	topicIDs := make([]int64, len(plan.img.Partitions))
	parts := make([]int32, len(plan.img.Partitions))
	for i, p := range plan.img.Partitions {
		topicIDs[i], parts[i] = int64(p.TopicID), p.Index
	}
	rows, err := tx.Query(ctx, segmentEndsSQL, topicIDs, parts)
	if err != nil {
		return db.errorf("reading the stored segment ends", err)
	}
	var (
		i    int64
		head *int64
		t    segmentRow
	)
	_, err = pgx.ForEachRow(rows, []any{&i, &head, &t.BaseOffset, &t.LastOffset, &t.ObjectKey, &t.ByteOffset, &t.ByteLength,
		&t.RecordCount, &t.MinTimestamp, &t.MaxTimestamp, &t.Compression, &t.CRC, &t.UncompressedSize, &t.CommittedAt},
		func() error { plan.partition(int(i-1), head, &t); return nil })
	if err != nil {
		return db.errorf("reading the stored segment ends", err)
	}
	return nil
}

// partition plans image partition i, whose stored rows start at head and
// end with tail (nil columns: nothing stored).
func (plan *segmentPlan) partition(i int, head *int64, tail *segmentRow) {
	if tail.BaseOffset == nil {
		return // nothing stored: insert everything
	}
	p := &plan.img.Partitions[i]
	topicID, part := int64(p.TopicID), p.Index
	segs := p.Segments
	first := int64(math.MaxInt64)
	if len(segs) > 0 {
		first = segs[0].BaseOffset
	}
	tailBase := *tail.BaseOffset
	if tailBase < first {
		// Everything stored is below the image (retention passed it all,
		// or the partition has no segments now).
		plan.deletes.Queue("DELETE FROM streamhouse_segments WHERE topic_id = $1 AND partition = $2", topicID, part)
		return
	}
	j := sort.Search(len(segs), func(j int) bool { return segs[j].BaseOffset >= tailBase })
	if j < len(segs) && tail.equal(&segs[j]) {
		plan.insertFrom[i] = j + 1
		if *head < first {
			plan.deletes.Queue("DELETE FROM streamhouse_segments WHERE topic_id = $1 AND partition = $2 AND base_offset < $3",
				topicID, part, first)
		}
		return
	}
	plan.rewritten++
	plan.deletes.Queue("DELETE FROM streamhouse_segments WHERE topic_id = $1 AND partition = $2", topicID, part)
}

// planAbsentPartitions deletes the rows of stored partitions the image does
// not have (deleted topics).
func (db *DB) planAbsentPartitions(ctx context.Context, tx pgx.Tx, plan *segmentPlan) error {
	inImage := make(map[fsm.PartitionKey]bool, len(plan.img.Partitions))
	for _, p := range plan.img.Partitions {
		inImage[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}] = true
	}
	rows, err := tx.Query(ctx, storedPartitionsSQL)
	if err != nil {
		return db.errorf("listing the stored partitions", err)
	}
	var topicID int64
	var part int32
	_, err = pgx.ForEachRow(rows, []any{&topicID, &part}, func() error {
		if !inImage[fsm.PartitionKey{TopicID: uint64(topicID), Partition: part}] {
			plan.deletes.Queue("DELETE FROM streamhouse_segments WHERE topic_id = $1 AND partition = $2", topicID, part)
		}
		return nil
	})
	if err != nil {
		return db.errorf("listing the stored partitions", err)
	}
	return nil
}

// segmentRow is a stored segment row as scanned (nullable: LEFT JOIN).
type segmentRow struct {
	BaseOffset, LastOffset, ByteOffset, ByteLength *int64
	MinTimestamp, MaxTimestamp, CRC                *int64
	UncompressedSize, CommittedAt                  *int64
	RecordCount                                    *int32
	Compression                                    *int16
	ObjectKey                                      *string
}

// equal reports whether the stored row is exactly r.
func (t *segmentRow) equal(r *fsm.SegmentRef) bool {
	return *t.BaseOffset == r.BaseOffset && *t.LastOffset == r.LastOffset && *t.ObjectKey == r.ObjectKey &&
		*t.ByteOffset == r.ByteOffset && *t.ByteLength == r.ByteLength && *t.RecordCount == r.RecordCount &&
		*t.MinTimestamp == r.MinTimestamp && *t.MaxTimestamp == r.MaxTimestamp && *t.Compression == int16(r.Compression) &&
		*t.CRC == int64(r.CRC) && *t.UncompressedSize == r.UncompressedSize && *t.CommittedAt == r.CommittedAt
}

// segmentSource streams the segments to insert: of every partition pi,
// Segments[from[pi]:].
type segmentSource struct {
	parts  []fsm.Partition
	from   []int
	pi, si int // current row; pi = -1 before the first Next
}

func (s *segmentSource) Next() bool {
	if s.pi < 0 {
		if len(s.parts) == 0 {
			return false
		}
		s.pi, s.si = 0, s.from[0]
	} else {
		s.si++
	}
	for s.pi < len(s.parts) {
		if s.si < len(s.parts[s.pi].Segments) {
			return true
		}
		s.pi++
		if s.pi < len(s.parts) {
			s.si = s.from[s.pi]
		}
	}
	return false
}

func (s *segmentSource) Values() ([]any, error) {
	p := &s.parts[s.pi]
	r := &p.Segments[s.si]
	return []any{int64(p.TopicID), p.Index, r.BaseOffset, r.LastOffset, r.ObjectKey, r.ByteOffset, r.ByteLength,
		r.RecordCount, r.MinTimestamp, r.MaxTimestamp, int16(r.Compression), int64(r.CRC), r.UncompressedSize, r.CommittedAt}, nil
}

func (s *segmentSource) Err() error { return nil }

// replaceSmallTables replaces the topics, partitions, consumer-group
// offsets, producers, producer sequences and pending deletes with the
// image's.
func (db *DB) replaceSmallTables(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var seqs [][]any
	for _, p := range img.Producers {
		for pos, q := range p.Sequences {
			seqs = append(seqs, []any{int64(p.ID), int32(pos), int64(q.TopicID), q.Partition, q.BaseSeq, q.Count, q.BaseOffset})
		}
	}
	tables := []struct {
		name string
		cols []string
		n    int
		row  func(i int) []any
	}{
		{"streamhouse_topics", []string{"id", "name", "partitions", "retention_ms", "retention_bytes", "compression", "created_at_ms", "max_message_bytes"},
			len(img.Topics), func(i int) []any {
				t := &img.Topics[i]
				return []any{int64(t.ID), t.Name, t.Partitions, t.Config.RetentionMs, t.Config.RetentionBytes, t.Config.Compression, t.CreatedAt, t.Config.MaxMessageBytes}
			}},
		{"streamhouse_partitions", []string{"topic_id", "partition", "leader", "leader_epoch", "next_offset", "flushed_offset", "low_watermark"},
			len(img.Partitions), func(i int) []any {
				p := &img.Partitions[i]
				return []any{int64(p.TopicID), p.Index, p.Leader, int64(p.LeaderEpoch), p.NextOffset, p.FlushedOffset, p.LowWatermark}
			}},
		{"streamhouse_consumer_group_offsets", []string{"group_name", "topic_id", "partition", "committed_offset", "metadata", "committed_at_ms"},
			len(img.Groups), func(i int) []any {
				g := &img.Groups[i]
				return []any{g.Group, int64(g.TopicID), g.Partition, g.Offset, []byte(g.Metadata), g.CommittedAt}
			}},
		{"streamhouse_producers", []string{"producer_id", "epoch", "last_seen_ms", "owner"},
			len(img.Producers), func(i int) []any {
				p := &img.Producers[i]
				// The largest epoch, partition epochs included: a restore
				// fences above it (fsm fencedProducers), so the
				// per-partition epochs need no table.
				return []any{int64(p.ID), int64(p.MaxEpoch()), p.LastSeen, p.Owner}
			}},
		{"streamhouse_producer_sequences", []string{"producer_id", "position", "topic_id", "partition", "base_seq", "count", "base_offset"},
			len(seqs), func(i int) []any { return seqs[i] }},
		{"streamhouse_pending_deletes", []string{"object_key"},
			len(img.PendingDeletes), func(i int) []any { return []any{img.PendingDeletes[i]} }},
		{"streamhouse_unreadable_objects", []string{"object_key", "restored_from"},
			len(img.Unreadable), func(i int) []any { return []any{img.Unreadable[i].Key, int64(img.Unreadable[i].RestoredFrom)} }},
	}
	for _, t := range tables {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t.name); err != nil {
			return db.errorf("clearing "+t.name, err)
		}
		if t.n == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.cols, pgx.CopyFromSlice(t.n, func(i int) ([]any, error) {
			return t.row(i), nil
		})); err != nil {
			return db.errorf("writing "+t.name, err)
		}
	}
	return nil
}

// recordCheckpoint updates the guard row and appends to the history,
// keeping the newest historyRows rows.
func (db *DB) recordCheckpoint(ctx context.Context, tx pgx.Tx, img *fsm.Image, info Info, start time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE streamhouse_checkpoint_guard SET raft_index = $1, raft_term = $2, taken_at = $3,
	written_by = $4, cluster_id = $5, topics = $6, partitions = $7, segments = $8, segments_written = $9,
	producer_generation = $10, max_unflushed_records = $11, cluster_clock_ms = $12`,
		int64(info.RaftIndex), int64(info.RaftTerm), info.TakenAt, info.NodeID, info.ClusterID,
		info.Topics, info.Partitions, info.Segments, info.SegmentsWritten,
		int64(img.ProducerGeneration), img.MaxUnflushedRecords, img.Clock); err != nil {
		return db.errorf("updating the checkpoint guard", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO streamhouse_checkpoints (raft_index, raft_term, taken_at, written_by, cluster_id,
	topics, partitions, segments, segments_written, groups, producers, pending_deletes, duration_ms)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		int64(info.RaftIndex), int64(info.RaftTerm), info.TakenAt, info.NodeID, info.ClusterID,
		info.Topics, info.Partitions, info.Segments, info.SegmentsWritten,
		len(img.Groups), len(img.Producers), len(img.PendingDeletes),
		float64(time.Since(start).Microseconds())/1000); err != nil {
		return db.errorf("recording the checkpoint history", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM streamhouse_checkpoints WHERE id <
	(SELECT id FROM streamhouse_checkpoints ORDER BY id DESC OFFSET $1 LIMIT 1)`, historyRows-1); err != nil {
		return db.errorf("pruning the checkpoint history", err)
	}
	return nil
}

// validText reports whether PostgreSQL's text type can hold s.
func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// checkImage checks what the schema needs: unique keys, segments strictly
// ascending per partition, uint64 values below 2^63, text without NUL and
// in UTF-8. The semantic coherence of the state (contiguity, offsets) is
// the FSM's business (fsm.ValidateImage at restore).
func checkImage(img *fsm.Image) error {
	if img == nil {
		return errors.New("nil image")
	}
	for _, check := range []func(*fsm.Image) error{
		checkLineage, checkTopics, checkPartitions, checkGroups, checkProducers, checkPendingDeletes,
	} {
		if err := check(img); err != nil {
			return err
		}
	}
	return nil
}

const maxInt = math.MaxInt64

// checkLineage checks the image's index, term, clock and DR lineage.
func checkLineage(img *fsm.Image) error {
	if img.LastApplied > maxInt || img.RaftTerm > maxInt {
		return fmt.Errorf("the Raft index %d or term %d is out of range", img.LastApplied, img.RaftTerm)
	}
	if img.ProducerGeneration > fsm.MaxProducerGeneration || img.MaxUnflushedRecords < 0 {
		return fmt.Errorf("producer generation %d or unflushed bound %d out of range", img.ProducerGeneration, img.MaxUnflushedRecords)
	}
	if img.Clock < 0 {
		return fmt.Errorf("negative cluster clock %d", img.Clock)
	}
	for _, u := range img.Unreadable {
		if u.RestoredFrom > maxInt || !validText(u.Key) {
			return fmt.Errorf("unreadable object %q: key not valid UTF-8 text or index %d out of range", u.Key, u.RestoredFrom)
		}
	}
	return nil
}

func checkTopics(img *fsm.Image) error {
	names := make(map[string]bool, len(img.Topics))
	ids := make(map[uint64]bool, len(img.Topics))
	for _, t := range img.Topics {
		switch {
		case t.ID > maxInt:
			return fmt.Errorf("topic %q: id %d out of range", t.Name, t.ID)
		case names[t.Name]:
			return fmt.Errorf("topic %q twice", t.Name)
		case ids[t.ID]:
			return fmt.Errorf("topic id %d twice", t.ID)
		case !validText(t.Name) || !validText(t.Config.Compression):
			return fmt.Errorf("topic %q: name or compression is not valid UTF-8 text", t.Name)
		}
		names[t.Name], ids[t.ID] = true, true
	}
	return nil
}

func checkPartitions(img *fsm.Image) error {
	parts := make(map[fsm.PartitionKey]bool, len(img.Partitions))
	for i := range img.Partitions {
		p := &img.Partitions[i]
		k := fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}
		switch {
		case p.TopicID > maxInt || p.LeaderEpoch > maxInt:
			return fmt.Errorf("partition %d/%d: topic id or leader epoch %d out of range", p.TopicID, p.Index, p.LeaderEpoch)
		case parts[k]:
			return fmt.Errorf("partition %d/%d twice", p.TopicID, p.Index)
		case !validText(p.Leader):
			return fmt.Errorf("partition %d/%d: leader %q is not valid UTF-8 text", p.TopicID, p.Index, p.Leader)
		}
		parts[k] = true
		if err := checkSegments(p); err != nil {
			return err
		}
	}
	return nil
}

func checkSegments(p *fsm.Partition) error {
	for j := range p.Segments {
		r := &p.Segments[j]
		if j > 0 && r.BaseOffset <= p.Segments[j-1].BaseOffset {
			return fmt.Errorf("partition %d/%d: segment base offsets not ascending (%d after %d)",
				p.TopicID, p.Index, r.BaseOffset, p.Segments[j-1].BaseOffset)
		}
		if !validText(r.ObjectKey) {
			return fmt.Errorf("partition %d/%d: segment %d: object key %q is not valid UTF-8 text", p.TopicID, p.Index, r.BaseOffset, r.ObjectKey)
		}
	}
	return nil
}

func checkGroups(img *fsm.Image) error {
	type groupKey struct {
		group string
		k     fsm.PartitionKey
	}
	groups := make(map[groupKey]bool, len(img.Groups))
	for _, g := range img.Groups {
		k := groupKey{g.Group, fsm.PartitionKey{TopicID: g.TopicID, Partition: g.Partition}}
		switch {
		case g.TopicID > maxInt:
			return fmt.Errorf("group %q: topic id %d out of range", g.Group, g.TopicID)
		case groups[k]:
			return fmt.Errorf("group %q: partition %d/%d twice", g.Group, g.TopicID, g.Partition)
		case !validText(g.Group):
			return fmt.Errorf("group name %q is not valid UTF-8 text", g.Group)
		}
		groups[k] = true
	}
	return nil
}

func checkProducers(img *fsm.Image) error {
	producers := make(map[uint64]bool, len(img.Producers))
	for _, p := range img.Producers {
		if p.ID > maxInt || producers[p.ID] {
			return fmt.Errorf("producer id %d out of range or twice", p.ID)
		}
		producers[p.ID] = true
		if len(p.Sequences) > math.MaxInt32 {
			return fmt.Errorf("producer %d: too many sequences", p.ID)
		}
		for _, q := range p.Sequences {
			if q.TopicID > maxInt {
				return fmt.Errorf("producer %d: topic id %d out of range", p.ID, q.TopicID)
			}
		}
	}
	return nil
}

func checkPendingDeletes(img *fsm.Image) error {
	deletes := make(map[string]bool, len(img.PendingDeletes))
	for _, k := range img.PendingDeletes {
		if deletes[k] || !validText(k) {
			return fmt.Errorf("pending delete %q twice or not valid UTF-8 text", k)
		}
		deletes[k] = true
	}
	return nil
}
