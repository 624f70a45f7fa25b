package pgsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhouse/streamhouse/fsm"
)

// querier is what LatestInfo needs: a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const guardSQL = `SELECT raft_index, raft_term, taken_at, written_by, cluster_id, topics, partitions, segments, segments_written
FROM streamhouse_checkpoint_guard`

func (db *DB) latestInfo(ctx context.Context, q querier) (Info, error) {
	var (
		index, term, segments, written int64
		takenAt                        *time.Time
		topics, partitions             int32
		info                           Info
	)
	if err := q.QueryRow(ctx, guardSQL).Scan(&index, &term, &takenAt, &info.NodeID, &info.ClusterID,
		&topics, &partitions, &segments, &written); err != nil {
		return Info{}, db.errorf("reading the checkpoint guard", err)
	}
	if index == 0 {
		return Info{}, fmt.Errorf("pgsync: %s: %w", db.target, ErrNoCheckpoint)
	}
	info.RaftIndex, info.RaftTerm = uint64(index), uint64(term)
	if takenAt != nil {
		info.TakenAt = takenAt.UTC()
	}
	info.Topics, info.Partitions, info.Segments, info.SegmentsWritten = int(topics), int(partitions), int(segments), int(written)
	return info, nil
}

// LatestInfo describes the latest checkpoint, or fails with ErrNoCheckpoint.
func (db *DB) LatestInfo(ctx context.Context) (Info, error) {
	return db.latestInfo(ctx, db.pool)
}

// LoadLatest reads the latest checkpoint as a complete image, from one
// consistent snapshot of the database: topics ordered by name, partitions
// by topic ID then index with their segments ascending by base offset,
// groups by name, topic ID and partition, producers by ID with their
// sequences in the order they were written, pending deletes sorted. Empty
// lists come back nil. It fails with ErrNoCheckpoint when there is none,
// and with an error when the tables disagree with the guard's counts.
func (db *DB) LoadLatest(ctx context.Context) (*fsm.Image, Info, error) {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, Info{}, db.errorf("starting the read transaction", err)
	}
	defer rollback(tx)
	info, err := db.latestInfo(ctx, tx)
	if err != nil {
		return nil, Info{}, err
	}
	img := &fsm.Image{LastApplied: info.RaftIndex, RaftTerm: info.RaftTerm}
	if err := db.loadTables(ctx, tx, img); err != nil {
		return nil, Info{}, err
	}
	segments := 0
	for i := range img.Partitions {
		segments += len(img.Partitions[i].Segments)
	}
	if len(img.Topics) != info.Topics || len(img.Partitions) != info.Partitions || segments != info.Segments {
		return nil, Info{}, fmt.Errorf("pgsync: checkpoint at Raft index %d in %s is inconsistent: the guard records %d topics, %d partitions, %d segments; the tables hold %d, %d, %d",
			info.RaftIndex, db.target, info.Topics, info.Partitions, info.Segments, len(img.Topics), len(img.Partitions), segments)
	}
	return img, info, nil
}

// loadTables reads every table of the checkpoint into img, one named step
// per table. Text keys sort with COLLATE "C" (bytewise), as Go sorts
// strings.
func (db *DB) loadTables(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	for _, load := range []func(context.Context, pgx.Tx, *fsm.Image) error{
		db.loadTopics, db.loadPartitions, db.loadSegments, db.loadGroups, db.loadProducers, db.loadSequences,
		db.loadPendingDeletes, db.loadLineage,
	} {
		if err := load(ctx, tx, img); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) loadTopics(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var t fsm.Topic
	return db.each(ctx, tx, "topics", `SELECT id, name, partitions, retention_ms, retention_bytes, compression, created_at_ms, max_message_bytes
		FROM streamhouse_topics ORDER BY name COLLATE "C"`,
		[]any{&t.ID, &t.Name, &t.Partitions, &t.Config.RetentionMs, &t.Config.RetentionBytes, &t.Config.Compression, &t.CreatedAt, &t.Config.MaxMessageBytes},
		func() error { img.Topics = append(img.Topics, t); return nil })
}

func (db *DB) loadPartitions(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var p fsm.Partition
	return db.each(ctx, tx, "partitions", `SELECT topic_id, partition, leader, leader_epoch, next_offset, flushed_offset, low_watermark
		FROM streamhouse_partitions ORDER BY topic_id, partition`,
		[]any{&p.TopicID, &p.Index, &p.Leader, &p.LeaderEpoch, &p.NextOffset, &p.FlushedOffset, &p.LowWatermark},
		func() error { img.Partitions = append(img.Partitions, p); return nil })
}

// loadSegments adds the segment index to the partitions loaded before.
func (db *DB) loadSegments(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	index := map[fsm.PartitionKey]int{}
	for i, p := range img.Partitions {
		index[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Index}] = i
	}
	var (
		topicID     uint64
		part        int32
		r           fsm.SegmentRef
		compression int16
		crc         int64
		cur         *fsm.Partition
	)
	return db.each(ctx, tx, "segments", `SELECT topic_id, partition, base_offset, last_offset, object_key, byte_offset, byte_length,
		record_count, min_timestamp, max_timestamp, compression, crc, uncompressed_size, committed_at_ms
		FROM streamhouse_segments ORDER BY topic_id, partition, base_offset`,
		[]any{&topicID, &part, &r.BaseOffset, &r.LastOffset, &r.ObjectKey, &r.ByteOffset, &r.ByteLength,
			&r.RecordCount, &r.MinTimestamp, &r.MaxTimestamp, &compression, &crc, &r.UncompressedSize, &r.CommittedAt},
		func() error {
			if cur == nil || cur.TopicID != topicID || cur.Index != part {
				i, ok := index[fsm.PartitionKey{TopicID: topicID, Partition: part}]
				if !ok {
					return fmt.Errorf("segment rows of partition %d/%d, which the checkpoint does not have", topicID, part)
				}
				cur = &img.Partitions[i]
			}
			r.Compression, r.CRC = uint8(compression), uint32(crc)
			cur.Segments = append(cur.Segments, r)
			return nil
		})
}

func (db *DB) loadGroups(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var (
		g        fsm.GroupOffsetEntry
		metadata []byte
	)
	return db.each(ctx, tx, "consumer group offsets", `SELECT group_name, topic_id, partition, committed_offset, metadata, committed_at_ms
		FROM streamhouse_consumer_group_offsets ORDER BY group_name COLLATE "C", topic_id, partition`,
		[]any{&g.Group, &g.TopicID, &g.Partition, &g.Offset, &metadata, &g.CommittedAt},
		func() error {
			g.Metadata = string(metadata)
			img.Groups = append(img.Groups, g)
			return nil
		})
}

func (db *DB) loadProducers(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var (
		pr    fsm.ProducerEntry
		epoch int64
	)
	return db.each(ctx, tx, "producers", `SELECT producer_id, epoch, last_seen_ms, owner FROM streamhouse_producers ORDER BY producer_id`,
		[]any{&pr.ID, &epoch, &pr.LastSeen, &pr.Owner},
		func() error {
			pr.Epoch = uint32(epoch)
			img.Producers = append(img.Producers, pr)
			return nil
		})
}

// loadSequences adds their recent batches to the producers loaded before.
func (db *DB) loadSequences(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	producers := map[uint64]int{}
	for i, pr := range img.Producers {
		producers[pr.ID] = i
	}
	var (
		producerID uint64
		q          fsm.ProducerSequence
	)
	return db.each(ctx, tx, "producer sequences", `SELECT producer_id, topic_id, partition, base_seq, count, base_offset
		FROM streamhouse_producer_sequences ORDER BY producer_id, position`,
		[]any{&producerID, &q.TopicID, &q.Partition, &q.BaseSeq, &q.Count, &q.BaseOffset},
		func() error {
			i, ok := producers[producerID]
			if !ok {
				return fmt.Errorf("sequences of producer %d, which the checkpoint does not have", producerID)
			}
			img.Producers[i].Sequences = append(img.Producers[i].Sequences, q)
			return nil
		})
}

func (db *DB) loadPendingDeletes(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var key string
	return db.each(ctx, tx, "pending deletes", `SELECT object_key FROM streamhouse_pending_deletes ORDER BY object_key COLLATE "C"`,
		[]any{&key}, func() error { img.PendingDeletes = append(img.PendingDeletes, key); return nil })
}

// loadLineage reads the DR-restore lineage (fsm/restore_state.go) and the
// cluster clock.
func (db *DB) loadLineage(ctx context.Context, tx pgx.Tx, img *fsm.Image) error {
	var gen, bound int64
	if err := tx.QueryRow(ctx, "SELECT producer_generation, max_unflushed_records, cluster_clock_ms FROM streamhouse_checkpoint_guard").
		Scan(&gen, &bound, &img.Clock); err != nil {
		return db.errorf("reading the restore lineage", err)
	}
	img.ProducerGeneration, img.MaxUnflushedRecords = uint64(gen), bound
	var u fsm.UnreadableObject
	return db.each(ctx, tx, "unreadable objects", `SELECT object_key, restored_from FROM streamhouse_unreadable_objects
		ORDER BY object_key COLLATE "C"`,
		[]any{&u.Key, &u.RestoredFrom}, func() error { img.Unreadable = append(img.Unreadable, u); return nil })
}

// AllocateGeneration takes the next producer-ID generation for a DR
// restore: one above both every generation a restore from this database
// took before and the checkpoint's own (atLeast). Every restore, finished
// or not, takes its own, so two clusters restored from this database
// never issue the same producer ID.
func (db *DB) AllocateGeneration(ctx context.Context, atLeast uint64) (uint64, error) {
	if atLeast >= fsm.MaxProducerGeneration {
		return 0, fmt.Errorf("pgsync: producer generation %d is the last one", atLeast)
	}
	var gen int64
	err := db.pool.QueryRow(ctx, `UPDATE streamhouse_checkpoint_guard
		SET generations_allocated = GREATEST(generations_allocated, $1) + 1 RETURNING generations_allocated`, int64(atLeast)).Scan(&gen)
	if err != nil {
		return 0, db.errorf("allocating a producer generation", err)
	}
	if uint64(gen) > fsm.MaxProducerGeneration {
		return 0, fmt.Errorf("pgsync: producer generations exhausted (%d)", gen)
	}
	return uint64(gen), nil
}

// each runs query and calls fn after scanning each row into dest.
func (db *DB) each(ctx context.Context, tx pgx.Tx, what, query string, dest []any, fn func() error) error {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return db.errorf("reading "+what, err)
	}
	if _, err := pgx.ForEachRow(rows, dest, fn); err != nil {
		return db.errorf("reading "+what, err)
	}
	return nil
}

// ClusterID returns the ID of the cluster that owns the database, or ""
// when no cluster has claimed it yet.
func (db *DB) ClusterID(ctx context.Context) (string, error) {
	var id string
	err := db.pool.QueryRow(ctx, "SELECT cluster_id FROM streamhouse_cluster").Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", db.errorf("reading the cluster row", err)
	}
	return id, nil
}

// AdoptCluster makes clusterID the owner of the database: DR restore calls
// it for the new cluster it builds from the latest checkpoint. The previous
// owner is recorded in streamhouse_cluster.previous_cluster_id. The
// checkpoint guard is kept: the restored cluster continues above the Raft
// index it restored from, so its checkpoints still never regress. Adopting
// the current owner changes nothing.
func (db *DB) AdoptCluster(ctx context.Context, clusterID string) error {
	if clusterID == "" || !validText(clusterID) {
		return errors.New("pgsync: AdoptCluster needs a cluster ID of valid UTF-8 text")
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return db.errorf("adopting the database", err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM streamhouse_checkpoint_guard FOR UPDATE"); err != nil {
		return db.errorf("locking the checkpoint guard", err)
	}
	var owner string
	err = tx.QueryRow(ctx, "SELECT cluster_id FROM streamhouse_cluster").Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = tx.Exec(ctx, "INSERT INTO streamhouse_cluster (cluster_id, adopted_at) VALUES ($1, now())", clusterID)
	case err != nil:
	case owner == clusterID:
		return nil
	default:
		_, err = tx.Exec(ctx, `UPDATE streamhouse_cluster SET previous_cluster_id = cluster_id, cluster_id = $1,
			adopted_at = now(), updated_at = now()`, clusterID)
	}
	if err != nil {
		return db.errorf("adopting the database", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return db.errorf("adopting the database", err)
	}
	db.log.Info("cluster adopted the checkpoint database", "cluster_id", clusterID, "previous_cluster_id", owner, "target", db.target)
	return nil
}
