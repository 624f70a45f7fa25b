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

// PruneOnce truncates the store to the current flushed offsets.
func PruneOnce(meta Metadata, store *Store) error {
	applied := meta.LastApplied()
	parts := meta.AllPartitions()
	flushed := make(map[fsm.PartitionKey]int64, len(parts))
	for _, p := range parts {
		flushed[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}] = p.FlushedOffset
	}
	return store.Prune(flushed, applied)
}
