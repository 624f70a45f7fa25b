package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkSnapshot measures FSM.Snapshot, which runs on Raft's FSM
// goroutine: no Apply runs while it does, so its duration is added to the
// latency of every produce waiting for apply when a snapshot starts (every
// 4,096 entries, checked every 5–10 s). The state is 64 partitions with
// segs committed segments each, in segs multi-partition objects; the sink's pinning of unflushed batches is
// not included (partition.Store.SnapshotBatches walks its index under its
// lock).
func BenchmarkSnapshot(b *testing.B) {
	for _, segs := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("partitions=64/segments=%d", segs), func(b *testing.B) {
			f := New(discardSink{})
			leaders := make([]string, 64)
			for i := range leaders {
				leaders[i] = "n"
			}
			f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: Encode(&CreateTopic{Name: "t", Partitions: 64, Leaders: leaders})})
			f.mu.Lock()
			if len(f.state.Partitions) != 64 {
				b.Fatalf("%d partitions", len(f.state.Partitions))
			}
			for i := range segs {
				f.state.ObjectRefs[fmt.Sprintf("seg/%020d-%08x", i, i)] = 64 // one object holds every partition
			}
			for _, p := range f.state.Partitions {
				for i := range segs {
					p.Segments = append(p.Segments, SegmentRef{ObjectKey: fmt.Sprintf("seg/%020d-%08x", i, i), BaseOffset: int64(i) * 1000,
						LastOffset: int64(i)*1000 + 999, RecordCount: 1000, ByteLength: 110_000})
				}
				p.NextOffset = int64(segs)*1000 + 500
				p.FlushedOffset = int64(segs) * 1000
			}
			f.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
	}
}
