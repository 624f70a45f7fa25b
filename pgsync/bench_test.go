package pgsync

import (
	"context"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// bigImage has partitions × segments segment refs.
func bigImage(partitions, segments int) *fsm.Image {
	img := &fsm.Image{LastApplied: 1_000_000, RaftTerm: 1}
	img.Topics = []fsm.Topic{{ID: 1, Name: "big", Partitions: int32(partitions), Config: fsm.TopicConfig{Compression: "zstd"}}}
	for i := range partitions {
		p := fsm.Partition{TopicID: 1, Index: int32(i), Leader: "node-1"}
		appendSegments(&p, segments, fmt.Sprintf("seg/%d", i))
		img.Partitions = append(img.Partitions, p)
	}
	return img
}

// BenchmarkIncrementalCheckpoint measures a checkpoint of a 200k-segment
// index where 10 partitions gained one segment each: the cost should follow
// the partitions and the new segments, not the index size.
func BenchmarkIncrementalCheckpoint(b *testing.B) {
	db := openDB(b)
	ctx := context.Background()
	img := bigImage(200, 1000)
	info, err := db.WriteCheckpoint(ctx, img, cluster, node)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info.Segments), "segments")
	for i := 0; b.Loop(); i++ {
		img.LastApplied++
		for j := range 10 {
			appendSegments(&img.Partitions[(i*10+j)%len(img.Partitions)], 1, "seg/new")
		}
		info, err := db.WriteCheckpoint(ctx, img, cluster, node)
		if err != nil {
			b.Fatal(err)
		}
		if info.SegmentsWritten != 10 {
			b.Fatalf("wrote %d segments, want 10", info.SegmentsWritten)
		}
	}
}

// BenchmarkLoadLatest reads a 200k-segment checkpoint back.
func BenchmarkLoadLatest(b *testing.B) {
	db := openDB(b)
	ctx := context.Background()
	if _, err := db.WriteCheckpoint(ctx, bigImage(200, 1000), cluster, node); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := db.LoadLatest(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
