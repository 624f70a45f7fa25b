package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
)

type discardSink struct{}

func (discardSink) Materialize([]*AppendedBatch) error { return nil }
func (discardSink) SnapshotBatches(map[PartitionKey]int64) (BatchSnapshot, error) {
	return nil, nil
}

// BenchmarkApplyAppendBatch measures Apply of a 1000-record batch (decode +
// offset assignment); records are opaque to Apply, so the cost does not
// grow with the records' contents.
func BenchmarkApplyAppendBatch(b *testing.B) {
	f := New(discardSink{})
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: Encode(&CreateTopic{Name: "t", Partitions: 1, Leaders: []string{"n"}})})
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Timestamp: int64(i), Value: make([]byte, 100)}
	}
	cmd := Encode(&AppendBatch{TopicID: 1, Partition: 0, LeaderEpoch: 1, Count: 1000, Records: AppendRecords(nil, recs)})
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Apply(&raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: cmd})
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendRecords(b *testing.B) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Timestamp: int64(i), Key: []byte("key"), Value: make([]byte, 100)}
	}
	buf := make([]byte, 0, 128<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRecords(buf[:0], recs)
	}
	b.SetBytes(int64(len(buf)))
}
