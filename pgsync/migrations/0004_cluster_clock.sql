-- 0004: the cluster clock (fsm/clock.go, pgsync/DESIGN.md).

ALTER TABLE streamhouse_checkpoint_guard
    -- the image's cluster clock (unix ms; 0 = not started, or a checkpoint
    -- written before this column existed). A DR restore starts its clock
    -- here instead of at the new leader's wall clock.
    ADD COLUMN cluster_clock_ms bigint NOT NULL DEFAULT 0;
