package partition

import (
	"errors"
	"fmt"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

// countingLog counts the bytes and calls of Read and ReadRange; flip, when
// set, flips a bit of what ReadRange returns (a corrupt disk).
type countingLog struct {
	Log
	reads, rangeReads, bytes int
	flip                     bool
}

func (c *countingLog) Read(index uint64) ([]byte, error) {
	b, err := c.Log.Read(index)
	c.reads++
	c.bytes += len(b)
	return b, err
}

func (c *countingLog) ReadRange(index uint64, off, n int) ([]byte, error) {
	b, err := c.Log.ReadRange(index, off, n)
	c.rangeReads++
	c.bytes += len(b)
	if c.flip && len(b) > 0 {
		b[len(b)-1] ^= 1
	}
	return b, err
}

// multiBatchEntries builds entries of perEntry batches over parts
// partitions of topic 1 (each partition has several batches in each
// entry), every batch of count records valued "partition-offset".
func multiBatchEntries(entries, perEntry, parts, count int, recSize int) [][]*fsm.AppendedBatch {
	next := make([]int64, parts)
	var out [][]*fsm.AppendedBatch
	for i := 0; i < entries; i++ {
		var bs []*fsm.AppendedBatch
		for j := 0; j < perEntry; j++ {
			p := int32(j % parts)
			recs := make([]fsm.Record, count)
			for r := range recs {
				v := fmt.Sprintf("%d-%d", p, next[p]+int64(r))
				recs[r] = fsm.Record{Value: append([]byte(v), make([]byte, recSize)...)}
			}
			bs = append(bs, &fsm.AppendedBatch{Index: uint64(i + 1), TopicID: 1, Partition: p, BaseOffset: next[p],
				Count: int32(count), Timestamp: 1, Records: fsm.AppendRecords(nil, recs)})
			next[p] += int64(count)
		}
		out = append(out, bs)
	}
	return out
}

func materializeAll(t testing.TB, s *Store, entries [][]*fsm.AppendedBatch) {
	t.Helper()
	for _, bs := range entries {
		if err := s.Materialize(bs); err != nil {
			t.Fatal(err)
		}
	}
}

// checkEveryBatch reads every batch of entries alone (and from its second
// record) and checks its records; a batch with a span costs one read of
// just that span.
func checkEveryBatch(t *testing.T, s *Store, c *countingLog, entries [][]*fsm.AppendedBatch, when string) {
	t.Helper()
	for _, bs := range entries {
		for _, b := range bs {
			k := fsm.PartitionKey{TopicID: 1, Partition: b.Partition}
			for _, from := range []int64{b.BaseOffset, b.BaseOffset + 1} {
				before := *c
				got, err := s.Read(k, from, int(b.BaseOffset+int64(b.Count)-from), 0)
				if err != nil {
					t.Fatalf("%s: read partition %d at %d: %v", when, b.Partition, from, err)
				}
				if len(got) != int(b.BaseOffset+int64(b.Count)-from) {
					t.Fatalf("%s: partition %d at %d: %d records", when, b.Partition, from, len(got))
				}
				for i, r := range got {
					want := fmt.Sprintf("%d-%d", b.Partition, from+int64(i))
					if r.Offset != from+int64(i) || string(r.Record.Value[:len(want)]) != want {
						t.Fatalf("%s: partition %d record %d: offset %d value %.10q", when, b.Partition, i, r.Offset, r.Record.Value)
					}
				}
				if c.reads != before.reads || c.rangeReads != before.rangeReads+1 || c.bytes-before.bytes >= 2*len(b.Records) {
					t.Fatalf("%s: one batch of %d record bytes cost %d entry reads, %d range reads, %d bytes",
						when, len(b.Records), c.reads-before.reads, c.rangeReads-before.rangeReads, c.bytes-before.bytes)
				}
			}
		}
	}
}

// Every batch of a multi-batch WAL entry reads back alone with its own
// records, reading only its span: as written, after the WAL is reopened,
// and in a store that installed the batches from a snapshot. Each reads
// every pinned entry once; a corrupt span is an fsm.ErrDecode.
func TestStoreReadsEachBatchOfAnEntryAlone(t *testing.T) {
	fs := wal.NewMemFS()
	open := func(fs *wal.MemFS) (*wal.WAL, *Store, *countingLog) {
		w, err := wal.Open(wal.Options{Dir: "/wal", FS: fs, SegmentMaxBytes: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		c := &countingLog{Log: w}
		s, err := OpenStore(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return w, s, c
	}
	entries := multiBatchEntries(6, 8, 3, 4, 50)
	w, s, c := open(fs)
	materializeAll(t, s, entries)
	checkEveryBatch(t, s, c, entries, "written")

	snap, err := s.SnapshotBatches(map[fsm.PartitionKey]int64{{TopicID: 1, Partition: 0}: 0, {TopicID: 1, Partition: 1}: 0, {TopicID: 1, Partition: 2}: 0})
	if err != nil {
		t.Fatal(err)
	}
	before := c.reads
	var installed [][]*fsm.AppendedBatch
	err = snap.Each(func(b *fsm.AppendedBatch) error {
		if n := len(installed); n == 0 || installed[n-1][0].Index != b.Index {
			installed = append(installed, nil)
		}
		installed[len(installed)-1] = append(installed[len(installed)-1], b)
		return nil
	})
	snap.Release()
	if err != nil || c.reads-before != len(entries) || len(installed) != len(entries) || len(installed[0]) != 8 {
		t.Fatalf("Each: %d entry reads, %d entries, %v; want one read per entry of 8 batches", c.reads-before, len(installed), err)
	}

	c.flip = true
	if _, err := s.Read(fsm.PartitionKey{TopicID: 1, Partition: 1}, 0, 1, 0); !errors.Is(err, fsm.ErrDecode) {
		t.Fatalf("read of a corrupt span: %v, want fsm.ErrDecode", err)
	}
	c.flip = false

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, s, c = open(fs)
	checkEveryBatch(t, s, c, entries, "reopened")
	_ = w.Close()

	w, fresh, fc := open(wal.NewMemFS())
	defer w.Close()
	materializeAll(t, fresh, installed)
	checkEveryBatch(t, fresh, fc, entries, "installed from a snapshot")
}

// BenchmarkReadMultiBatchEntry reads every batch of 4 MiB entries of 256
// batches one at a time, as a consumer or the flusher does.
func BenchmarkReadMultiBatchEntry(b *testing.B) {
	entries := multiBatchEntries(4, 256, 16, 16, 1000)
	w, err := wal.Open(wal.Options{Dir: "/wal", FS: wal.NewMemFS()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	s, err := OpenStore(w, nil)
	if err != nil {
		b.Fatal(err)
	}
	materializeAll(b, s, entries)
	b.ResetTimer()
	recs := 0
	for i := 0; i < b.N; i++ {
		for _, bs := range entries {
			for _, bt := range bs {
				got, err := s.Read(fsm.PartitionKey{TopicID: 1, Partition: bt.Partition}, bt.BaseOffset, int(bt.Count), 0)
				if err != nil || len(got) != int(bt.Count) {
					b.Fatal(len(got), err)
				}
				recs += len(got)
			}
		}
	}
	b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
}

// A multi-batch WAL entry written before batch spans (version 1) is still
// indexed on open and each of its batches reads back, from the whole entry.
func TestStoreReadsVersion1MultiBatchEntries(t *testing.T) {
	w, err := wal.Open(wal.Options{Dir: "/wal", FS: wal.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	entries := multiBatchEntries(2, 4, 2, 3, 10)
	for _, bs := range entries {
		v1 := []byte{0, 1, byte(len(bs))} // tag, version 1, count
		for _, b := range bs {
			v1 = fsm.EncodeBatch(v1, b)
		}
		if err := w.AppendAsync(wal.Entry{Index: bs[0].Index, Data: v1}); err != nil {
			t.Fatal(err)
		}
	}
	c := &countingLog{Log: w}
	s, err := OpenStore(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range entries {
		for _, b := range bs {
			got, err := s.Read(fsm.PartitionKey{TopicID: 1, Partition: b.Partition}, b.BaseOffset, int(b.Count), 0)
			want := fmt.Sprintf("%d-%d", b.Partition, b.BaseOffset)
			if err != nil || len(got) != int(b.Count) || string(got[0].Record.Value[:len(want)]) != want {
				t.Fatalf("partition %d at %d: %d records, %v", b.Partition, b.BaseOffset, len(got), err)
			}
		}
	}
	if c.rangeReads != 0 || c.reads != 8 {
		t.Fatalf("%d whole-entry reads and %d range reads, want 8 and 0", c.reads, c.rangeReads)
	}
}
