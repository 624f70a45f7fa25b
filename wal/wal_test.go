package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

func TestAppendReadIterate(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]Entry
	}{
		{"single", [][]Entry{{entry(1, 10)}}},
		{"dense batch", [][]Entry{{entry(1, 1), entry(2, 2), entry(3, 3)}}},
		{"gaps", [][]Entry{{entry(3, 5)}, {entry(7, 0), entry(8, 100)}, {entry(1000, 1)}}},
		{"empty data", [][]Entry{{{Index: 5}}, {{Index: 6, Data: []byte{}}}}},
		{"large entry", [][]Entry{{entry(1, 300_000)}, {entry(2, 1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t, Options{FS: NewMemFS()})
			var want []Entry
			for _, b := range tc.batches {
				mustAppend(t, w, b...)
				want = append(want, b...)
			}
			for _, e := range want {
				got, err := w.Read(e.Index)
				if err != nil || !bytes.Equal(got, e.Data) {
					t.Fatalf("Read(%d) = %d bytes, %v; want %d bytes", e.Index, len(got), err, len(e.Data))
				}
			}
			if got := all(t, w); !equalEntries(got, want) {
				t.Fatalf("Iterate = %s, want %s", describe(got), describe(want))
			}
			if got, wantFirst := w.FirstIndex(), want[0].Index; got != wantFirst {
				t.Errorf("FirstIndex = %d, want %d", got, wantFirst)
			}
			if got, wantLast := w.LastIndex(), want[len(want)-1].Index; got != wantLast {
				t.Errorf("LastIndex = %d, want %d", got, wantLast)
			}
			st := w.Stats()
			if st.Entries != int64(len(want)) || st.LastSynced != w.LastIndex() || st.Segments != 1 {
				t.Errorf("Stats = %+v", st)
			}
			// Iterate from every possible start, including gaps.
			for from := uint64(0); from <= want[len(want)-1].Index+1; from++ {
				var exp []Entry
				for _, e := range want {
					if e.Index >= from {
						exp = append(exp, e)
					}
				}
				var got []Entry
				if err := w.Iterate(from, func(i uint64, d []byte) error {
					got = append(got, Entry{i, d})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !equalEntries(got, exp) {
					t.Fatalf("Iterate(%d) = %s, want %s", from, describe(got), describe(exp))
				}
				if from > 20 && from < want[len(want)-1].Index-1 {
					from = want[len(want)-1].Index - 1 // skip the long empty stretch
				}
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS()})
	if _, err := w.Read(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read on empty WAL: %v", err)
	}
	if w.FirstIndex() != 0 || w.LastIndex() != 0 {
		t.Fatalf("empty WAL: first %d last %d", w.FirstIndex(), w.LastIndex())
	}
	mustAppend(t, w, entry(10, 4), entry(12, 4))
	for _, i := range []uint64{0, 1, 9, 11, 13, 1 << 40} {
		if _, err := w.Read(i); !errors.Is(err, ErrNotFound) {
			t.Errorf("Read(%d): %v, want ErrNotFound", i, err)
		}
	}
}

func TestReadReturnsCopy(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS()})
	in := []byte("hello")
	mustAppend(t, w, Entry{1, in})
	in[0] = 'X' // the caller may reuse its buffer after Append
	got, err := w.Read(1)
	if err != nil || string(got) != "hello" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	got[0] = 'Y'
	again, _ := w.Read(1)
	if string(again) != "hello" {
		t.Fatalf("Read after modifying a previous result = %q", again)
	}
}

// AppendAsync keeps no reference to the entry's data: the store reuses one
// encoding buffer for every entry it materialises.
func TestAppendAsyncKeepsNoReference(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS()})
	buf := []byte("first")
	if err := w.AppendAsync(Entry{1, buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX")
	if err := w.AppendAsync(Entry{2, buf}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"first", "XXXXX"} {
		if got, err := w.Read(uint64(i + 1)); err != nil || string(got) != want {
			t.Fatalf("Read(%d) = %q, %v; want %q", i+1, got, err, want)
		}
	}
}

// ReadRange reads any byte range inside an entry, in every segment, and
// refuses ranges outside it and missing entries.
func TestReadRange(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS(), SegmentMaxBytes: 64})
	mustAppend(t, w, Entry{1, []byte("0123456789")}, Entry{2, []byte("abcdefghij")}, Entry{3, []byte("klmnopqrst")})
	for i, data := range []string{"0123456789", "abcdefghij", "klmnopqrst"} {
		for off := 0; off <= len(data); off++ {
			for n := 0; off+n <= len(data); n++ {
				got, err := w.ReadRange(uint64(i+1), off, n)
				if err != nil || string(got) != data[off:off+n] {
					t.Fatalf("ReadRange(%d, %d, %d) = %q, %v; want %q", i+1, off, n, got, err, data[off:off+n])
				}
			}
		}
	}
	for _, r := range [][2]int{{-1, 2}, {0, 11}, {9, 2}, {11, 0}, {0, -1}} {
		if got, err := w.ReadRange(2, r[0], r[1]); err == nil {
			t.Errorf("ReadRange(2, %d, %d) = %q, want an error", r[0], r[1], got)
		}
	}
	if _, err := w.ReadRange(4, 0, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadRange of a missing entry: %v", err)
	}
}

func TestOutOfOrder(t *testing.T) {
	tests := []struct {
		name  string
		batch []Entry
	}{
		{"zero index", []Entry{{Index: 0}}},
		{"equal to last", []Entry{entry(5, 1)}},
		{"below last", []Entry{entry(3, 1)}},
		{"not increasing inside batch", []Entry{entry(6, 1), entry(8, 1), entry(8, 1)}},
		{"decreasing inside batch", []Entry{entry(9, 1), entry(7, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t, Options{FS: NewMemFS()})
			mustAppend(t, w, entry(4, 1), entry(5, 1))
			before := w.Stats()
			wantErrIs(t, w.Append(context.Background(), tc.batch...), ErrOutOfOrder)
			wantErrIs(t, w.AppendAsync(tc.batch...), ErrOutOfOrder)
			if after := w.Stats(); after != before {
				t.Fatalf("rejected batch changed the log: %+v -> %+v", before, after)
			}
			for _, e := range tc.batch {
				if e.Index > 5 {
					if _, err := w.Read(e.Index); !errors.Is(err, ErrNotFound) {
						t.Fatalf("entry %d of a rejected batch is readable: %v", e.Index, err)
					}
				}
			}
			mustAppend(t, w, entry(6, 1)) // still usable
		})
	}
}

func TestSegmentRoll(t *testing.T) {
	fsys := NewMemFS()
	const max = 400
	w := openWAL(t, Options{FS: fsys, SegmentMaxBytes: max})
	var want []Entry
	idx := uint64(1)
	// Single appends, one multi-entry batch that must be split, one entry
	// bigger than a segment, and gaps.
	for range 20 {
		e := entry(idx, 50)
		mustAppend(t, w, e)
		want = append(want, e)
		idx += 2
	}
	var batch []Entry
	for range 15 {
		batch = append(batch, entry(idx, 60))
		idx++
	}
	mustAppend(t, w, batch...)
	want = append(want, batch...)
	big := entry(idx, 1000)
	mustAppend(t, w, big)
	want = append(want, big)
	idx++
	tail := entry(idx, 10)
	mustAppend(t, w, tail)
	want = append(want, tail)

	if got := all(t, w); !equalEntries(got, want) {
		t.Fatalf("Iterate = %s, want %s", describe(got), describe(want))
	}
	files := segmentFiles(t, fsys, testDir)
	if len(files) < 5 || w.Stats().Segments != len(files) {
		t.Fatalf("%d segment files, Stats.Segments %d", len(files), w.Stats().Segments)
	}
	// Each file is named by its first entry, stays within the limit unless it
	// holds a single oversized entry, and the files partition the log.
	var seen []Entry
	for _, name := range files {
		img := readFile(t, fsys, filepath.Join(testDir, name))
		sc, err := scanSegment(name, img, false)
		if err != nil {
			t.Fatal(err)
		}
		base, _ := parseSegmentName(name)
		if sc.entries[0].index != base {
			t.Errorf("%s starts with index %d", name, sc.entries[0].index)
		}
		if len(img) > max && len(sc.entries) != 1 {
			t.Errorf("%s is %d bytes with %d entries", name, len(img), len(sc.entries))
		}
		for _, p := range sc.entries {
			seen = append(seen, Entry{p.index, img[p.off+frameHeaderSize : p.off+frameSize(int(p.n))]})
		}
	}
	if !equalEntries(seen, want) {
		t.Fatalf("segment files hold %s, want %s", describe(seen), describe(want))
	}
	var total int64
	for _, name := range files {
		total += int64(len(readFile(t, fsys, filepath.Join(testDir, name))))
	}
	if st := w.Stats(); st.Bytes != total || st.Entries != int64(len(want)) {
		t.Fatalf("Stats %+v, files hold %d bytes", st, total)
	}
}

func TestReopenRestoresEverything(t *testing.T) {
	for _, osfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("osfs=%v", osfs), func(t *testing.T) {
			var fsys FS = NewMemFS()
			dir := testDir
			if osfs {
				fsys, dir = OSFS{}, filepath.Join(t.TempDir(), "wal")
			}
			opts := Options{FS: fsys, Dir: dir, SegmentMaxBytes: 512}
			w := openWAL(t, opts)
			var want []Entry
			rng := rand.New(rand.NewPCG(1, 2))
			idx := uint64(0)
			for range 60 {
				idx += 1 + uint64(rng.IntN(3))
				e := entry(idx, rng.IntN(120))
				want = append(want, e)
				if rng.IntN(2) == 0 {
					mustAppend(t, w, e)
				} else if err := w.AppendAsync(e); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			stats := w.Stats()
			if stats.LastSynced != idx {
				t.Fatalf("LastSynced %d after Sync, want %d", stats.LastSynced, idx)
			}
			mustClose(t, w)

			w = openWAL(t, opts)
			if got := all(t, w); !equalEntries(got, want) {
				t.Fatalf("after reopen: %s, want %s", describe(got), describe(want))
			}
			if got := w.Stats(); got != stats {
				t.Fatalf("Stats after reopen %+v, before %+v", got, stats)
			}
			wantErrIs(t, w.AppendAsync(Entry{Index: idx}), ErrOutOfOrder)
			e := entry(idx+1, 7)
			mustAppend(t, w, e)
			want = append(want, e)
			mustClose(t, w)
			w = openWAL(t, opts)
			if got := all(t, w); !equalEntries(got, want) {
				t.Fatalf("after second reopen: %s, want %s", describe(got), describe(want))
			}
		})
	}
}

func TestTruncateFront(t *testing.T) {
	// Segments (max 100 bytes, frames of 16+30 bytes) hold two entries each:
	// [1,2] [3,4] [5,6] [7,8] [9,10] [11].
	build := func(t *testing.T) (*MemFS, *WAL, []Entry) {
		fsys := NewMemFS()
		w := openWAL(t, Options{FS: fsys, SegmentMaxBytes: 20 + 2*46})
		var es []Entry
		for i := uint64(1); i <= 11; i++ {
			es = append(es, entry(i, 30))
		}
		mustAppend(t, w, es...)
		if n := w.Stats().Segments; n != 6 {
			t.Fatalf("%d segments, want 6", n)
		}
		return fsys, w, es
	}
	tests := []struct {
		index     uint64
		wantFirst uint64
		wantSegs  int
	}{
		{0, 1, 6},
		{1, 1, 6},
		{2, 1, 6},
		{3, 3, 5},
		{4, 3, 5},
		{7, 7, 3},
		{10, 9, 2},
		{11, 11, 1},
		{12, 11, 1}, // the active segment is never deleted
		{1 << 60, 11, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.index), func(t *testing.T) {
			fsys, w, es := build(t)
			if err := w.TruncateFront(tc.index); err != nil {
				t.Fatal(err)
			}
			check := func(w *WAL) {
				t.Helper()
				if got := w.FirstIndex(); got != tc.wantFirst {
					t.Fatalf("FirstIndex = %d, want %d", got, tc.wantFirst)
				}
				if got := len(segmentFiles(t, fsys, testDir)); got != tc.wantSegs {
					t.Fatalf("%d segment files, want %d", got, tc.wantSegs)
				}
				want := es[tc.wantFirst-1:]
				if got := all(t, w); !equalEntries(got, want) {
					t.Fatalf("entries %s, want %s", describe(got), describe(want))
				}
				for _, e := range es[:tc.wantFirst-1] {
					if _, err := w.Read(e.Index); !errors.Is(err, ErrNotFound) {
						t.Fatalf("Read(%d) after truncation: %v", e.Index, err)
					}
				}
				st := w.Stats()
				if st.Entries != int64(len(want)) || st.Segments != tc.wantSegs || st.LastIndex != 11 {
					t.Fatalf("Stats %+v", st)
				}
			}
			check(w)
			mustClose(t, w)
			w2 := openWAL(t, Options{FS: fsys, SegmentMaxBytes: 20 + 2*46})
			check(w2)
			mustAppend(t, w2, entry(12, 30))
		})
	}
}

func TestTruncateFrontEverythingThenAppend(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{FS: fsys, SegmentMaxBytes: 64}
	w := openWAL(t, opts)
	for i := uint64(1); i <= 5; i++ {
		mustAppend(t, w, entry(i, 40))
	}
	if err := w.TruncateFront(100); err != nil {
		t.Fatal(err)
	}
	if got := all(t, w); !equalEntries(got, []Entry{entry(5, 40)}) {
		t.Fatalf("entries %s", describe(got))
	}
	mustAppend(t, w, entry(6, 40))
	mustClose(t, w)
	w = openWAL(t, opts)
	if got := all(t, w); !equalEntries(got, []Entry{entry(5, 40), entry(6, 40)}) {
		t.Fatalf("after reopen: %s", describe(got))
	}
}

func TestCloseIdempotentAndClosedErrors(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS()})
	mustAppend(t, w, entry(1, 1))
	if err := w.AppendAsync(entry(2, 1)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := w.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	ctx := context.Background()
	wantErrIs(t, w.Append(ctx, entry(3, 1)), ErrClosed)
	wantErrIs(t, w.AppendAsync(entry(3, 1)), ErrClosed)
	wantErrIs(t, w.Sync(ctx), ErrClosed)
	wantErrIs(t, w.TruncateFront(2), ErrClosed)
	_, err := w.Read(1)
	wantErrIs(t, err, ErrClosed)
	wantErrIs(t, w.Iterate(0, func(uint64, []byte) error { return nil }), ErrClosed)
}

func TestCloseSyncsAsyncWrites(t *testing.T) {
	fsys := NewStrictMemFS()
	// A long window so the syncer does not get there first.
	w := openWAL(t, Options{FS: fsys, SyncInterval: time.Hour})
	if err := w.AppendAsync(entry(1, 10), entry(2, 10)); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w2 := openWAL(t, Options{FS: fsys.CrashClone()})
	if got := all(t, w2); !equalEntries(got, []Entry{entry(1, 10), entry(2, 10)}) {
		t.Fatalf("after Close and crash: %s", describe(got))
	}
}

func TestSyncWaitsForAsyncWrites(t *testing.T) {
	fsys := NewStrictMemFS()
	w := openWAL(t, Options{FS: fsys, SyncInterval: time.Millisecond})
	var want []Entry
	for i := uint64(1); i <= 20; i++ {
		e := entry(i, 20)
		want = append(want, e)
		if err := w.AppendAsync(e); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := w.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := w.Stats().LastSynced; got < i {
				t.Fatalf("LastSynced %d after Sync, want >= %d", got, i)
			}
			c := openWAL(t, Options{FS: fsys.CrashClone()})
			if got := all(t, c); !equalEntries(got, want) {
				t.Fatalf("durable after Sync: %s, want %s", describe(got), describe(want))
			}
			mustClose(t, c)
		}
	}
}

func TestAppendContextCancelled(t *testing.T) {
	fsys := NewMemFS()
	w := openWAL(t, Options{FS: fsys, SyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantErrIs(t, w.Append(ctx, entry(1, 1)), context.Canceled)
	if w.LastIndex() != 0 {
		t.Fatal("Append with a cancelled context wrote")
	}
	// Written, then the wait is abandoned: the error says so, the entry stays.
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	wantErrIs(t, w.Append(ctx, entry(1, 1)), context.DeadlineExceeded)
	if w.LastIndex() != 1 || w.Stats().LastSynced != 0 {
		t.Fatalf("Stats %+v", w.Stats())
	}
}

func TestIterateErrorsAndReentrancy(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS(), SegmentMaxBytes: 100})
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, w, entry(i, 30))
	}
	stop := errors.New("stop")
	var n int
	err := w.Iterate(0, func(i uint64, _ []byte) error {
		n++
		if i == 4 {
			return stop
		}
		return nil
	})
	if err != stop || n != 4 {
		t.Fatalf("Iterate = %v after %d calls", err, n)
	}
	// The callback may append and truncate; iteration covers the snapshot
	// taken at the start and data stays valid.
	var got []Entry
	err = w.Iterate(0, func(i uint64, d []byte) error {
		got = append(got, Entry{i, d})
		if i == 2 {
			if err := w.TruncateFront(8); err != nil {
				return err
			}
			return w.Append(context.Background(), entry(11, 30))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []Entry
	for i := uint64(1); i <= 10; i++ {
		want = append(want, entry(i, 30))
	}
	if !equalEntries(got, want) {
		t.Fatalf("Iterate = %s", describe(got))
	}
	if w.FirstIndex() < 7 || w.LastIndex() != 11 {
		t.Fatalf("first %d last %d", w.FirstIndex(), w.LastIndex())
	}
}

func TestConcurrentReadersWriterTruncator(t *testing.T) {
	w := openWAL(t, Options{FS: NewMemFS(), SegmentMaxBytes: 1024})
	const n = 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for {
				select {
				case <-done:
					return
				default:
				}
				last := w.LastIndex()
				if last == 0 {
					continue
				}
				i := 1 + rng.Uint64N(last)
				d, err := w.Read(i)
				switch {
				case err == nil && !bytes.Equal(d, payload(i, int(i%50))):
					errc <- fmt.Errorf("Read(%d) returned wrong data", i)
					return
				case err != nil && !errors.Is(err, ErrNotFound):
					errc <- fmt.Errorf("Read(%d): %w", i, err)
					return
				case err != nil && i >= w.FirstIndex() && w.FirstIndex() != 0 && i%2 == 0:
					// Even indexes are never skipped; one at or above the
					// first retained index must be readable (FirstIndex only
					// grows, so checking after the read is conservative).
					errc <- fmt.Errorf("Read(%d) not found, first index %d", i, w.FirstIndex())
					return
				}
				_ = w.Iterate(i, func(uint64, []byte) error { return nil })
			}
		}()
	}
	for i := uint64(2); i <= n; i += 2 {
		if err := w.AppendAsync(entry(i, int(i%50))); err != nil {
			t.Fatal(err)
		}
		if i%200 == 0 {
			if err := w.TruncateFront(i - 100); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestEmptyLastSegmentIsReplaced(t *testing.T) {
	// A crash right after a roll leaves an empty last segment named for an
	// index that may never be written.
	fsys := NewMemFS()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, filepath.Join(testDir, segmentName(1)), segmentImage(1, entry(1, 5), entry(2, 5)))
	writeFile(t, fsys, filepath.Join(testDir, segmentName(10)), segmentImage(10))
	w := openWAL(t, Options{FS: fsys})
	if w.LastIndex() != 2 || w.FirstIndex() != 1 {
		t.Fatalf("first %d last %d", w.FirstIndex(), w.LastIndex())
	}
	mustAppend(t, w, entry(5, 5))
	mustClose(t, w)
	if got, want := segmentFiles(t, fsys, testDir), []string{segmentName(1), segmentName(5)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("segment files %v, want %v", got, want)
	}
	w = openWAL(t, Options{FS: fsys})
	if got := all(t, w); !equalEntries(got, []Entry{entry(1, 5), entry(2, 5), entry(5, 5)}) {
		t.Fatalf("entries %s", describe(got))
	}
}

func TestLeftoverTempFileRemoved(t *testing.T) {
	fsys := NewMemFS()
	if err := fsys.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(testDir, segmentName(3)+tempSuffix)
	writeFile(t, fsys, tmp, encodeHeader(3)[:7])
	other := filepath.Join(testDir, "unrelated.tmp")
	writeFile(t, fsys, other, []byte("x"))
	w := openWAL(t, Options{FS: fsys})
	mustAppend(t, w, entry(1, 1))
	if _, err := fsys.ReadFile(tmp); err == nil {
		t.Fatal("leftover segment temp file still exists")
	}
	if _, err := fsys.ReadFile(other); err != nil {
		t.Fatalf("a file the WAL does not own was touched: %v", err)
	}
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open with no Dir succeeded")
	}
	if _, err := Open(Options{Dir: testDir, FS: NewMemFS(), SyncInterval: -1}); err == nil {
		t.Fatal("Open with a negative SyncInterval succeeded")
	}
	// Dir is created, nested.
	fsys := NewMemFS()
	w := openWAL(t, Options{FS: fsys, Dir: "/a/b/c"})
	mustAppend(t, w, entry(1, 1))
	if got := segmentFiles(t, fsys, "/a/b/c"); len(got) != 1 {
		t.Fatalf("segments %v", got)
	}
}

func TestMetrics(t *testing.T) {
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	fs1 := NewMemFS()
	w1 := openWAL(t, Options{FS: fs1, Registerer: reg1, SegmentMaxBytes: 100})
	w2 := openWAL(t, Options{FS: NewMemFS(), Registerer: reg2})
	mustAppend(t, w1, entry(1, 30), entry(2, 30), entry(3, 30))
	mustAppend(t, w2, entry(1, 30))

	gather := func(reg *prometheus.Registry, name string) float64 {
		t.Helper()
		return testkit.Metric(t, reg, name)
	}
	if got := gather(reg1, "streamhouse_wal_entries"); got != 3 {
		t.Errorf("entries = %v", got)
	}
	if got := gather(reg1, "streamhouse_wal_appends_total"); got != 3 {
		t.Errorf("appends = %v", got)
	}
	if got := gather(reg1, "streamhouse_wal_bytes"); got != float64(w1.Stats().Bytes) {
		t.Errorf("bytes = %v, Stats %d", got, w1.Stats().Bytes)
	}
	if got := gather(reg1, "streamhouse_wal_fsync_duration_seconds"); got < 1 {
		t.Errorf("fsync observations = %v", got)
	}
	if got := gather(reg2, "streamhouse_wal_entries"); got != 1 {
		t.Errorf("second WAL entries = %v", got)
	}
	if err := w1.TruncateFront(3); err != nil {
		t.Fatal(err)
	}
	if got := gather(reg1, "streamhouse_wal_entries"); got != 1 {
		t.Errorf("entries after truncation = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg1); err != nil || n != 5 {
		t.Errorf("%d metrics registered (%v), want 5", n, err)
	}

	// A second WAL on the same registry is refused while the first is open.
	if _, err := Open(Options{FS: NewMemFS(), Dir: testDir, Registerer: reg1}); err == nil {
		t.Fatal("two WALs registered on one registry")
	}
	// Close unregisters, so reopening with the same registry works, and the
	// repair counter counts torn tails.
	mustClose(t, w1)
	f, err := fs1.OpenFile(filepath.Join(testDir, segmentName(3)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	w1 = openWAL(t, Options{FS: fs1, Registerer: reg1})
	if got := gather(reg1, "streamhouse_wal_corruptions_total"); got != 1 {
		t.Errorf("corruptions = %v", got)
	}
	if got := gather(reg1, "streamhouse_wal_entries"); got != 1 || w1.Stats().Entries != 1 {
		t.Errorf("entries after reopen = %v, Stats %+v", got, w1.Stats())
	}
}

// TestTruncateFrontRemovesFilesWithoutTheWriterLock: the unlink of an old
// segment and the directory fsync after it can take 100 ms on a busy disk
// (a 64 MiB file on ext4 with online discard); appends — the state
// machine's applies, on every agent at once since they all roll and prune
// at the same records — must not wait for them.
func TestTruncateFrontRemovesFilesWithoutTheWriterLock(t *testing.T) {
	fsys := NewMemFS()
	w := openWAL(t, Options{FS: fsys, SegmentMaxBytes: 20 + 2*46})
	for i := uint64(1); i <= 6; i++ {
		mustAppend(t, w, entry(i, 30))
	}
	removing, release := make(chan string, 8), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before Close, on failure too
	fsys.SetHook(func(op Op, path string) error {
		if op == OpRemove {
			removing <- path
			<-release
		}
		return nil
	})
	truncated := make(chan error, 1)
	go func() { truncated <- w.TruncateFront(5) }()
	select {
	case <-removing: // the first old segment's removal has started and is held
	case err := <-truncated:
		t.Fatalf("TruncateFront returned (%v) without removing a file", err)
	}
	appended := make(chan error, 1)
	go func() { appended <- w.Append(context.Background(), entry(7, 30)) }()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an append waited for the removal of an old segment file")
	}
	if got := w.FirstIndex(); got != 5 {
		t.Fatalf("FirstIndex = %d while the files are being removed, want 5", got)
	}
	releaseOnce.Do(func() { close(release) })
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	fsys.SetHook(nil)
	if got := len(segmentFiles(t, fsys, testDir)); got != 2 {
		t.Fatalf("%d segment files, want 2 ([5,6] and [7])", got)
	}
}

// TestTruncateFrontRetriesAFailedRemoval: a segment whose file could not be
// removed is out of the index at once; no newer file is removed before it
// (a crash must leave a contiguous log); its bytes still count until it is
// gone; the next TruncateFront removes it and the rest, oldest first,
// whether or not that call finds new segments to drop.
func TestTruncateFrontRetriesAFailedRemoval(t *testing.T) {
	fsys := NewMemFS()
	w := openWAL(t, Options{FS: fsys, SegmentMaxBytes: 20 + 2*46})
	for i := uint64(1); i <= 6; i++ {
		mustAppend(t, w, entry(i, 30))
	}
	files := segmentFiles(t, fsys, testDir) // [1,2] [3,4] [5,6]
	oldest := filepath.Join(testDir, files[0])
	bytes := w.Stats().Bytes
	var removals []string
	fsys.SetHook(func(op Op, path string) error {
		if op != OpRemove {
			return nil
		}
		removals = append(removals, path)
		if path == oldest {
			return syscall.EIO
		}
		return nil
	})
	if err := w.TruncateFront(5); !errors.Is(err, syscall.EIO) {
		t.Fatalf("TruncateFront with the oldest file's removal failing: %v", err)
	}
	if len(removals) != 1 || len(segmentFiles(t, fsys, testDir)) != 3 {
		t.Fatalf("removals tried %v, %d files left; want only the oldest tried and all 3 files there", removals, len(segmentFiles(t, fsys, testDir)))
	}
	if got := w.FirstIndex(); got != 5 || w.Stats().Bytes != bytes {
		t.Fatalf("FirstIndex %d, %d bytes; want 5 and the %d bytes of the files still there", got, w.Stats().Bytes, bytes)
	}
	fsys.SetHook(nil)
	if err := w.TruncateFront(5); err != nil {
		t.Fatal(err)
	}
	if files := len(segmentFiles(t, fsys, testDir)); files != 1 || w.Stats().Bytes >= bytes {
		t.Fatalf("%d segment files, %d bytes after the retry; want 1 file and fewer bytes", files, w.Stats().Bytes)
	}
	mustClose(t, w)
	w = openWAL(t, Options{FS: fsys, SegmentMaxBytes: 20 + 2*46})
	if got := all(t, w); !equalEntries(got, []Entry{entry(5, 30), entry(6, 30)}) {
		t.Fatalf("after reopen: %s", describe(got))
	}
}
