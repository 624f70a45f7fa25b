package wal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// countingFS counts File.Sync calls of the wrapped FS.
type countingFS struct {
	FS
	syncs atomic.Int64
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{File: f, n: &c.syncs}, nil
}

type countingFile struct {
	File
	n *atomic.Int64
}

func (f countingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

const benchEntrySize = 256

// BenchmarkAppendSync measures durable appends (Append) of one 256-byte
// entry per call on real files, with concurrent callers sharing fsyncs, with
// and without a group-commit window.
func BenchmarkAppendSync(b *testing.B) {
	cases := []struct {
		callers  int
		interval time.Duration
	}{{1, 0}, {16, 0}, {128, 0}, {16, time.Millisecond}, {128, time.Millisecond}}
	for _, bc := range cases {
		callers := bc.callers
		b.Run(fmt.Sprintf("callers=%d/window=%v", callers, bc.interval), func(b *testing.B) {
			cfs := &countingFS{FS: OSFS{}}
			w, err := Open(Options{Dir: filepath.Join(b.TempDir(), "wal"), FS: cfs, SyncInterval: bc.interval})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			var next atomic.Uint64
			ctx := context.Background()
			data := payload(1, benchEntrySize)
			appendOne := func() {
				for {
					err := w.Append(ctx, Entry{Index: next.Add(1), Data: data})
					if err == nil {
						return
					}
					if !isOutOfOrder(err) {
						b.Error(err)
						return
					}
				}
			}
			b.SetBytes(benchEntrySize)
			start := cfs.syncs.Load()
			b.ResetTimer()
			if callers == 1 {
				for range b.N {
					appendOne()
				}
			} else {
				// RunParallel starts parallelism*GOMAXPROCS goroutines.
				b.SetParallelism(max(1, callers/max(1, runtimeProcs())))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						appendOne()
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(cfs.syncs.Load()-start)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkAppendAsync measures appends that do not wait for an fsync.
func BenchmarkAppendAsync(b *testing.B) {
	cfs := &countingFS{FS: OSFS{}}
	w, err := Open(Options{Dir: filepath.Join(b.TempDir(), "wal"), FS: cfs})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	data := payload(1, benchEntrySize)
	b.SetBytes(benchEntrySize)
	b.ResetTimer()
	for i := range b.N {
		if err := w.AppendAsync(Entry{Index: uint64(i + 1), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cfs.syncs.Load())/float64(b.N), "fsyncs/op")
}

// BenchmarkRead measures random verified reads by concurrent readers.
func BenchmarkRead(b *testing.B) {
	const n = 50_000
	w, err := Open(Options{Dir: filepath.Join(b.TempDir(), "wal"), SegmentMaxBytes: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	batch := make([]Entry, 0, 1000)
	for i := uint64(1); i <= n; i++ {
		batch = append(batch, entry(i, benchEntrySize))
		if len(batch) == cap(batch) {
			if err := w.AppendAsync(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	var seed atomic.Uint64
	b.SetBytes(benchEntrySize)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 1))
		for pb.Next() {
			if _, err := w.Read(1 + rng.Uint64N(n)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func isOutOfOrder(err error) bool { return errors.Is(err, ErrOutOfOrder) }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
