package partition

import (
	"context"
	"log/slog"

	"github.com/streamhouse/streamhouse/fsm"
)

// runPruner truncates the WAL below committed segments whenever the
// metadata changes (segment commits, topic deletion), until ctx is done.
func runPruner(ctx context.Context, meta Metadata, store *Store, logger *slog.Logger) {
	for {
		ch := meta.Changed()
		if err := PruneOnce(meta, store); err != nil && logger != nil {
			logger.Warn("wal truncation failed; will retry on the next change", "component", "store", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// PruneOnce truncates the store to the current flushed offsets. It reads
// LastApplied before the partitions and topics: a topic it then finds
// missing, with an ID at or below that index, was deleted before the read
// (IDs are never reused), whatever was applied in between.
func PruneOnce(meta Metadata, store *Store) error {
	st := PruneState{LastApplied: meta.LastApplied()}
	parts := meta.AllPartitions()
	st.Flushed = make(map[fsm.PartitionKey]int64, len(parts))
	for _, p := range parts {
		st.Flushed[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}] = p.FlushedOffset
	}
	topics := meta.Topics()
	st.Topics = make(map[uint64]bool, len(topics))
	for _, t := range topics {
		st.Topics[t.ID] = true
	}
	return store.Prune(st)
}
