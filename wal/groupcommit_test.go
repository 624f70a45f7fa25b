package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appendNext appends one entry with the next free index, retrying with a
// fresh index when a concurrent caller got ahead (gaps are allowed).
func appendNext(ctx context.Context, w *WAL, next *atomic.Uint64, size int) (Entry, error) {
	for {
		e := entry(next.Add(1), size)
		err := w.Append(ctx, e)
		if errors.Is(err, ErrOutOfOrder) {
			continue
		}
		return e, err
	}
}

// durableEntry reports whether entry e would survive a crash now.
func durableEntry(fsys *MemFS, seg string, e Entry) error {
	img, err := fsys.CrashClone().ReadFile(seg)
	if err != nil {
		return err
	}
	sc, err := scanSegment(seg, img, true)
	if err != nil {
		return err
	}
	for _, p := range sc.entries {
		if p.index == e.Index {
			if !bytes.Equal(img[p.off+frameHeaderSize:p.off+frameSize(int(p.n))], e.Data) {
				return fmt.Errorf("entry %d: durable bytes differ", e.Index)
			}
			return nil
		}
	}
	return fmt.Errorf("entry %d is not durable", e.Index)
}

func TestGroupCommit(t *testing.T) {
	const callers = 64
	fsys := NewStrictMemFS()
	w := openWAL(t, Options{FS: fsys})
	mustAppend(t, w, entry(1, 8)) // creates the segment; its syncs are not counted
	seg := filepath.Join(testDir, segmentName(1))
	syncsBefore := fsys.Syncs()

	// Hold every segment fsync until all callers have written, so that the
	// test does not depend on timing: a WAL that acknowledged before its
	// fsync, or fsynced per call, fails below.
	var writes atomic.Int64
	gate := make(chan struct{})
	fsys.SetHook(func(op Op, path string) error {
		if !strings.HasSuffix(path, segmentSuffix) {
			return nil
		}
		switch op {
		case OpWrite:
			if writes.Add(1) == callers {
				close(gate)
			}
		case OpSync:
			<-gate
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var next atomic.Uint64
	next.Store(1)
	var wg sync.WaitGroup
	errc := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := appendNext(ctx, w, &next, 32)
			if err != nil {
				errc <- err
				return
			}
			// Append returned: the entry must already be on "disk".
			if err := durableEntry(fsys, seg, e); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	fsys.SetHook(nil)
	syncs := fsys.Syncs() - syncsBefore
	t.Logf("%d Append calls, %d fsyncs", callers, syncs)
	// The first fsync may start before the writes have all arrived, the
	// second covers everything written meanwhile.
	if syncs < 1 || syncs > 2 {
		t.Fatalf("%d fsyncs for %d concurrent Append calls, want 1 or 2", syncs, callers)
	}
	if st := w.Stats(); st.Entries != callers+1 || st.LastSynced != st.LastIndex {
		t.Fatalf("Stats %+v", st)
	}
}

func TestGroupCommitSyncCallersAndInterval(t *testing.T) {
	// AppendAsync writers plus Sync waiters, with a sync window: every Sync
	// that returns covers what was written before it started.
	fsys := NewStrictMemFS()
	w := openWAL(t, Options{FS: fsys, SyncInterval: 2 * time.Millisecond, SegmentMaxBytes: 4096})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex // orders index assignment with the write
	next := uint64(0)
	var wg sync.WaitGroup
	errc := make(chan error, 32)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				mu.Lock()
				next++
				e := entry(next, 16+g)
				err := w.AppendAsync(e)
				mu.Unlock()
				if err != nil {
					errc <- err
					return
				}
				if err := w.Sync(ctx); err != nil {
					errc <- err
					return
				}
				if got := w.Stats().LastSynced; got < e.Index {
					errc <- fmt.Errorf("Sync returned with LastSynced %d < %d", got, e.Index)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	c := openWAL(t, Options{FS: fsys.CrashClone(), SegmentMaxBytes: 4096})
	if got := c.Stats().Entries; got != 160 {
		t.Fatalf("%d durable entries, want 160", got)
	}
}
