package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/wal"
)

// BenchmarkLogStore measures the Raft log store on the ack path: StoreLogs
// of AppendBatch entries (50 or 1,000 records of 100 bytes) in groups of 1,
// 8 or 64 entries per call (hashicorp/raft hands the leader loop's whole
// pending batch to one StoreLogs), with the compaction snapshots cause:
// every 4,096 entries (SnapshotThreshold) the prefix up to 1,024 entries
// behind the last one (TrailingLogs) is deleted, timed with the appends.
//
// Metrics: wbytes/op = bytes this process wrote (write syscalls, from
// /proc/self/io) per StoreLogs; disk-MiB = blocks the store's files occupy
// at the end; rssfile-MiB = file-backed resident memory at the end (Bolt's
// mmap); max-store-ms = the slowest StoreLogs; deleterange-ms = the mean
// DeleteRange (it holds the store's write lock). Count fsyncs with strace -f -c -e trace=fsync,fdatasync on the test
// binary (DESIGN.md, "Log store" lists the command and the numbers).
//
//	go test -run '^$' -bench BenchmarkLogStore -benchtime 2000x ./cluster
func BenchmarkLogStore(b *testing.B) {
	for _, kind := range []string{"bolt", "raftwal", "wal"} {
		for _, records := range []int{50, 1000} {
			for _, batch := range []int{1, 8, 64} {
				if records == 1000 && batch == 64 {
					continue // 6.5 MB per call: not what the leader loop sees at these rates
				}
				b.Run(fmt.Sprintf("store=%s/records=%d/batch=%d", kind, records, batch), func(b *testing.B) {
					benchStoreLogs(b, kind, records, batch)
				})
			}
		}
	}
}

func benchStoreLogs(b *testing.B, kind string, records, batch int) {
	dir := b.TempDir()
	store, closeStore := openBenchStore(b, kind, dir)
	data := appendBatchEntry(records)
	logs := make([]*raft.Log, batch)
	for i := range logs {
		logs[i] = &raft.Log{Type: raft.LogCommand, Term: 1, Data: data}
	}
	const snapshotEvery, trailing = 4096, 1024
	next, first, sinceSnap := uint64(1), uint64(1), 0
	var slowest, deleting time.Duration
	deletes := 0
	w0 := procIOWchar(b)
	b.SetBytes(int64(len(data) * batch))
	b.ResetTimer()
	for b.Loop() {
		for _, l := range logs {
			l.Index = next
			next++
		}
		t0 := time.Now()
		if err := store.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
		if sinceSnap += batch; sinceSnap >= snapshotEvery {
			sinceSnap = 0
			if last := next - 1; last > trailing {
				t0 = time.Now()
				if err := store.DeleteRange(first, last-trailing); err != nil {
					b.Fatal(err)
				}
				deleting += time.Since(t0)
				deletes++
				first = last - trailing + 1
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(procIOWchar(b)-w0)/float64(b.N), "wbytes/op")
	b.ReportMetric(float64(slowest.Microseconds())/1000, "max-store-ms")
	if deletes > 0 {
		b.ReportMetric(float64(deleting.Microseconds())/1000/float64(deletes), "deleterange-ms")
	}
	b.ReportMetric(float64(dirBlocks(b, dir))/(1<<20), "disk-MiB")
	b.ReportMetric(float64(rssFileKiB(b))/1024, "rssfile-MiB")
	b.ReportMetric(float64(b.N*batch*records)/b.Elapsed().Seconds(), "records/s")
	closeStore()
}

// appendBatchEntry is the command a partition leader proposes for records
// 100-byte records.
func appendBatchEntry(records int) []byte {
	recs := make([]fsm.Record, records)
	for i := range recs {
		v := make([]byte, 100)
		for j := range v {
			v[j] = byte(rand.IntN(256))
		}
		recs[i] = fsm.Record{Timestamp: int64(1_700_000_000_000 + i), Value: v}
	}
	return fsm.Encode(&fsm.AppendBatch{TopicID: 1, Partition: 3, LeaderEpoch: 2, Timestamp: 1_700_000_000_000,
		Count: int32(records), Records: fsm.AppendRecords(nil, recs)})
}

type benchLogStore interface {
	StoreLogs([]*raft.Log) error
	DeleteRange(lo, hi uint64) error
}

func openBenchStore(b *testing.B, kind, dir string) (benchLogStore, func()) {
	switch kind {
	case "bolt":
		s, err := openBoltStore(filepath.Join(dir, "raft.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s, func() { _ = s.Close() }
	case "raftwal": // as the agent configures it (walLog)
		s, err := openWALLog(dir, newHCLogger("wal", discardLogger()), nil)
		if err != nil {
			b.Fatal(err)
		}
		return s, func() { _ = s.Close() }
	default:
		w, err := wal.Open(wal.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		return &walLogStore{w: w}, func() { _ = w.Close() }
	}
}

// walLogStore is design shape (b) as far as the append path goes: each
// raft.Log framed as term, type and data in one wal entry. The wal has no
// suffix truncation, which a real raft.LogStore needs; the benchmark
// never truncates the tail.
type walLogStore struct {
	w   *wal.WAL
	buf []wal.Entry
}

func (s *walLogStore) StoreLogs(logs []*raft.Log) error {
	s.buf = s.buf[:0]
	for _, l := range logs {
		d := make([]byte, 9+len(l.Data))
		binary.LittleEndian.PutUint64(d, l.Term)
		d[8] = byte(l.Type)
		copy(d[9:], l.Data)
		s.buf = append(s.buf, wal.Entry{Index: l.Index, Data: d})
	}
	return s.w.Append(context.Background(), s.buf...)
}

func (s *walLogStore) DeleteRange(_, hi uint64) error { return s.w.TruncateFront(hi + 1) }

func procIOWchar(b *testing.B) int64 {
	return procField(b, "/proc/self/io", "wchar:")
}

func rssFileKiB(b *testing.B) int64 {
	return procField(b, "/proc/self/status", "RssFile:")
}

func procField(b *testing.B, path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			v, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("%s: no %s", path, key)
	return 0
}

// dirBlocks is the disk space the files under dir occupy (allocated
// blocks, so preallocated segment files count in full).
func dirBlocks(tb testing.TB, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return total
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
