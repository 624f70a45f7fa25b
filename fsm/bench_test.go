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

// BenchmarkWritePathEncodings is what the write path encodes per Raft
// entry of 16 batches of 1,000 100-byte records: each batch's records
// (AppendRecords into a fresh blob, as the batcher seals), the
// AppendBatches command (Encode, proposed to Raft) and the WAL entry
// (EncodeBatchSpans into a fresh buffer, as Materialize writes it).
func BenchmarkWritePathEncodings(b *testing.B) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Timestamp: 1_700_000_000_000 + int64(i), Key: []byte("key"), Value: make([]byte, 100)}
	}
	b.ReportAllocs()
	for b.Loop() {
		cmd := &AppendBatches{Batches: make([]*AppendBatch, 16)}
		stored := make([]*AppendedBatch, 16)
		for i := range cmd.Batches {
			blob := AppendRecords(nil, recs)
			cmd.Batches[i] = &AppendBatch{TopicID: 1, Partition: int32(i), LeaderEpoch: 1, Count: 1000, Records: blob, MaxUnflushed: 1 << 20}
			stored[i] = &AppendedBatch{Index: 9, TopicID: 1, Partition: int32(i), Count: 1000, Records: blob}
		}
		_ = Encode(cmd)
		_, _ = EncodeBatchSpans(nil, stored, nil)
	}
	b.ReportMetric(float64(b.N*16000)/b.Elapsed().Seconds(), "records/s")
}
