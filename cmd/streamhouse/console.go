package main

import (
	"net/http"

	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/console"
)

// consoleHandler is the web console at /ui/ (nil with CONSOLE_ENABLED=false).
func (a *agent) consoleHandler() http.Handler {
	if !a.cfg.ConsoleEnabled {
		return nil
	}
	return console.Handler()
}

// consoleDurability gives the REST API the partition service's flush
// backlog and storage detail (transport.Durability).
type consoleDurability struct{ part *partition.Service }

func (d consoleDurability) Durability() transport.DurabilityStatus {
	s := d.part.Durability()
	return transport.DurabilityStatus{
		NodeID: s.NodeID, LedPartitions: s.LedPartitions, UnflushedRecords: s.UnflushedRecords,
		UnflushedPartitions: s.UnflushedPartitions, LedUnflushedBytes: s.LedUnflushedBytes,
		UnflushedBytes: s.UnflushedBytes, ClusterUnflushedRecords: s.ClusterUnflushedRecords,
		OldestUnflushedMs: s.OldestUnflushedMs, LastSegmentCommitMs: s.LastSegmentCommitMs, NowMs: s.NowMs,
	}
}

func (d consoleDurability) PartitionStorage(topic string, from, count int32) ([]transport.PartitionStorage, error) {
	ps, err := d.part.PartitionStorage(topic, from, count)
	if err != nil {
		return nil, err
	}
	out := make([]transport.PartitionStorage, len(ps))
	for i, p := range ps {
		out[i] = transport.PartitionStorage{
			Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, LowWatermark: p.LowWatermark,
			HighWatermark: p.NextOffset, FlushedOffset: p.FlushedOffset, UnflushedRecords: p.NextOffset - p.FlushedOffset,
			UnflushedBytes: p.UnflushedBytes, OldestUnflushedMs: p.OldestUnflushedMs, Segments: p.Segments,
			Objects: p.Objects, SegmentBytes: p.SegmentBytes, LastSegmentCommitMs: p.LastSegmentCommitMs,
		}
	}
	return out, nil
}
