-- The API key name that created each idempotent producer: only that key may
-- bump the producer's epoch. '' = none (created without API keys, or by a
-- checkpoint written before this column existed).
ALTER TABLE streamhouse_producers ADD COLUMN owner text NOT NULL DEFAULT '';
