-- 0005: a topic's max.message.bytes (fsm/topicconfig.go, pgsync/DESIGN.md).

ALTER TABLE streamhouse_topics
    -- the largest record the topic accepts (0 = the agent's
    -- MAX_RECORD_BYTES, and what checkpoints written before this column
    -- existed mean)
    ADD COLUMN max_message_bytes bigint NOT NULL DEFAULT 0;
