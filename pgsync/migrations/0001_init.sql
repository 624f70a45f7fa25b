-- 0001: the checkpoint schema. See pgsync/DESIGN.md for every column.
-- Applied by pgsync.Open inside one transaction holding the migration
-- advisory lock; recorded in streamhouse_schema_migrations.
--
-- Conventions: all tables are prefixed streamhouse_ and live in the
-- connection's current schema (search_path). uint64 values of the Raft
-- state (indexes, topic and producer IDs, epochs) are stored as bigint and
-- are always < 2^63. *_ms columns are unix milliseconds taken from Raft
-- commands; timestamptz columns are wall-clock times of the writer.
-- There are no foreign keys: every table is rewritten from one fsm.Image in
-- one transaction, so they are consistent by construction.

-- The cluster that owns this database (one row). The first checkpoint
-- claims it; a DR restore takes it over (AdoptCluster).
CREATE TABLE streamhouse_cluster (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id          text NOT NULL,
    previous_cluster_id text,        -- the cluster this one took over from (AdoptCluster), if any
    adopted_at          timestamptz, -- when it took over
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The checkpoint guard (one row, always present): the latest checkpoint.
-- Writers lock it FOR UPDATE first, so checkpoints are serialised and never
-- regress. raft_index = 0 means no checkpoint yet.
CREATE TABLE streamhouse_checkpoint_guard (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    raft_index       bigint NOT NULL,
    raft_term        bigint NOT NULL,
    taken_at         timestamptz,
    written_by       text NOT NULL,
    cluster_id       text NOT NULL,
    topics           integer NOT NULL,
    partitions       integer NOT NULL,
    segments         bigint NOT NULL,
    segments_written bigint NOT NULL
);
INSERT INTO streamhouse_checkpoint_guard
    (raft_index, raft_term, taken_at, written_by, cluster_id, topics, partitions, segments, segments_written)
VALUES (0, 0, NULL, '', '', 0, 0, 0, 0);

-- Checkpoint history: one row per checkpoint written, newest ~100 kept.
-- id order is commit order; raft_index strictly increases with it.
CREATE TABLE streamhouse_checkpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raft_index       bigint NOT NULL UNIQUE,
    raft_term        bigint NOT NULL,
    taken_at         timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    written_by       text NOT NULL,
    cluster_id       text NOT NULL,
    topics           integer NOT NULL,
    partitions       integer NOT NULL,
    segments         bigint NOT NULL,
    segments_written bigint NOT NULL,
    groups           integer NOT NULL, -- consumer-group offset rows
    producers        integer NOT NULL,
    pending_deletes  integer NOT NULL,
    duration_ms      double precision NOT NULL -- time inside the writing transaction before commit
);

CREATE TABLE streamhouse_topics (
    id              bigint PRIMARY KEY, -- fsm Topic.ID: Raft index of CreateTopic, never reused
    name            text NOT NULL UNIQUE,
    partitions      integer NOT NULL,
    retention_ms    bigint NOT NULL,  -- 0 = keep forever
    retention_bytes bigint NOT NULL,  -- 0 = unlimited
    compression     text NOT NULL,    -- "zstd", "lz4", "none" ("" = default)
    created_at_ms   bigint NOT NULL
);

CREATE TABLE streamhouse_partitions (
    topic_id       bigint NOT NULL,
    partition      integer NOT NULL,
    leader         text NOT NULL,     -- node ID of the partition leader
    leader_epoch   bigint NOT NULL,
    next_offset    bigint NOT NULL,   -- high watermark: the next record's offset
    flushed_offset bigint NOT NULL,   -- every offset below it is in a segment
    low_watermark  bigint NOT NULL,   -- first readable offset (retention)
    PRIMARY KEY (topic_id, partition)
);

-- The segment index: one row per partition block in a segment object.
-- Written incrementally (see DESIGN.md). object_key = '' is a recorded gap.
CREATE TABLE streamhouse_segments (
    topic_id          bigint NOT NULL,
    partition         integer NOT NULL,
    base_offset       bigint NOT NULL,
    last_offset       bigint NOT NULL,
    object_key        text NOT NULL,
    byte_offset       bigint NOT NULL,
    byte_length       bigint NOT NULL,
    record_count      integer NOT NULL,
    min_timestamp     bigint NOT NULL,
    max_timestamp     bigint NOT NULL,
    compression       smallint NOT NULL,
    crc               bigint NOT NULL,  -- CRC32C, 0..2^32-1
    uncompressed_size bigint NOT NULL,
    committed_at_ms   bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);

CREATE TABLE streamhouse_consumer_group_offsets (
    group_name       text NOT NULL,
    topic_id         bigint NOT NULL,
    partition        integer NOT NULL,
    committed_offset bigint NOT NULL, -- next offset the group will consume
    metadata         bytea NOT NULL,  -- client-supplied, opaque
    committed_at_ms  bigint NOT NULL,
    PRIMARY KEY (group_name, topic_id, partition)
);

CREATE TABLE streamhouse_producers (
    producer_id  bigint PRIMARY KEY, -- Raft index of its InitProducer
    epoch        bigint NOT NULL,
    last_seen_ms bigint NOT NULL
);

CREATE TABLE streamhouse_producer_sequences (
    producer_id bigint NOT NULL,
    position    integer NOT NULL, -- order within the producer's list (fsm order)
    topic_id    bigint NOT NULL,
    partition   integer NOT NULL,
    base_seq    bigint NOT NULL,
    count       integer NOT NULL,
    base_offset bigint NOT NULL,
    PRIMARY KEY (producer_id, position)
);

CREATE TABLE streamhouse_pending_deletes (
    object_key text PRIMARY KEY
);
