-- 0002: the DR-restore lineage (fsm/restore_state.go, pgsync/DESIGN.md).

-- Objects a DR restore could not read and was told to restore without
-- (--allow-unreadable). The cluster never deletes them.
CREATE TABLE streamhouse_unreadable_objects (
    object_key    text PRIMARY KEY,
    restored_from bigint NOT NULL -- Raft index of the checkpoint that restore started from
);

ALTER TABLE streamhouse_checkpoint_guard
    -- the image's producer-ID generation (IDs are generation<<44 | Raft index)
    ADD COLUMN producer_generation   bigint NOT NULL DEFAULT 0,
    -- the largest unflushed-record bound an applied batch carried (0 = none)
    ADD COLUMN max_unflushed_records bigint NOT NULL DEFAULT 0,
    -- how many producer generations restores from this database took; never
    -- decreases (AllocateGeneration)
    ADD COLUMN generations_allocated bigint NOT NULL DEFAULT 0;
