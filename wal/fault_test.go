package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var diskErrors = []error{syscall.EIO, syscall.ENOSPC}

func TestWriteErrorIsReturnedAndRecoverable(t *testing.T) {
	for _, cause := range diskErrors {
		t.Run(cause.Error(), func(t *testing.T) {
			fsys := NewStrictMemFS()
			w := openWAL(t, Options{FS: fsys})
			want := []Entry{entry(1, 40), entry(2, 40), entry(3, 40)}
			mustAppend(t, w, want...)

			fsys.InjectError(OpWrite, cause) // writes half, then fails
			err := w.Append(context.Background(), entry(4, 40), entry(5, 40))
			if !errors.Is(err, cause) || errors.Is(err, ErrFailed) {
				t.Fatalf("Append: %v, want %v (not fatal)", err, cause)
			}
			if err := w.AppendAsync(entry(4, 40)); !errors.Is(err, cause) {
				t.Fatalf("AppendAsync: %v", err)
			}
			if w.LastIndex() != 3 {
				t.Fatalf("LastIndex %d after failed writes", w.LastIndex())
			}
			if _, err := w.Read(4); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Read of a failed entry: %v", err)
			}
			// The partial bytes were rolled back: the segment is clean.
			seg := filepath.Join(testDir, segmentName(1))
			if got, _ := fsys.ReadFile(seg); !bytes.Equal(got, segmentImage(1, want...)) {
				t.Fatalf("segment holds %d bytes after a failed write, want %d", len(got), len(segmentImage(1, want...)))
			}

			fsys.InjectError(OpWrite, nil)
			mustAppend(t, w, entry(4, 40)) // the same index again
			want = append(want, entry(4, 40))
			c := openWAL(t, Options{FS: fsys.CrashClone()})
			if got := all(t, c); !equalEntries(got, want) {
				t.Fatalf("after crash: %s", describe(got))
			}
			if _, err := fsys.ReadFile(seg + tornSuffix); err == nil {
				t.Fatal("a torn tail was left behind")
			}
		})
	}
}

func TestWriteErrorWithFailedRollbackIsFatal(t *testing.T) {
	fsys := NewStrictMemFS()
	w := openWAL(t, Options{FS: fsys})
	mustAppend(t, w, entry(1, 10))
	fsys.InjectError(OpWrite, syscall.EIO)
	fsys.InjectError(OpTruncate, syscall.EIO)
	err := w.Append(context.Background(), entry(2, 10))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append: %v", err)
	}
	fsys.InjectError(OpWrite, nil)
	fsys.InjectError(OpTruncate, nil)
	if err := w.Append(context.Background(), entry(3, 10)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after the instance failed: %v", err)
	}
	// The half-written frame is a torn tail for the next Open.
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
	w2 := openWAL(t, Options{FS: fsys})
	if got := all(t, w2); !equalEntries(got, []Entry{entry(1, 10)}) {
		t.Fatalf("after reopen: %s", describe(got))
	}
}

// syncFailer fails every fsync of a segment file with cause while armed and
// counts the attempts.
type syncFailer struct {
	armed    atomic.Bool
	attempts atomic.Int64
	cause    error
}

func (s *syncFailer) hook(op Op, path string) error {
	if op == OpSync && strings.HasSuffix(path, segmentSuffix) {
		s.attempts.Add(1)
		if s.armed.Load() {
			return s.cause
		}
	}
	return nil
}

func TestFsyncErrorIsFatal(t *testing.T) {
	ways := []struct {
		name    string
		trigger func(w *WAL) error // writes entry 3 and must fail
	}{
		{"Append", func(w *WAL) error { return w.Append(context.Background(), entry(3, 60)) }},
		{"AppendAsync+Sync", func(w *WAL) error {
			if err := w.AppendAsync(entry(3, 60)); err != nil {
				return fmt.Errorf("AppendAsync failed before any fsync: %w", err)
			}
			return w.Sync(context.Background())
		}},
		{"segment roll", func(w *WAL) error {
			// Written without waiting; the roll's fsync of the old segment
			// fails (the syncer may also hit the failure first).
			if err := w.AppendAsync(entry(3, 60)); err != nil {
				return err
			}
			err := w.AppendAsync(entry(4, 150))
			if err == nil {
				err = w.Sync(context.Background())
			}
			return err
		}},
	}
	for _, cause := range diskErrors {
		for _, way := range ways {
			t.Run(cause.Error()+"/"+way.name, func(t *testing.T) {
				fsys := NewStrictMemFS()
				sf := &syncFailer{cause: cause}
				fsys.SetHook(sf.hook)
				w := openWAL(t, Options{FS: fsys, SegmentMaxBytes: 256})
				acked := []Entry{entry(1, 60), entry(2, 60)}
				mustAppend(t, w, acked...)

				sf.armed.Store(true)
				err := way.trigger(w)
				if !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
					t.Fatalf("%s: %v, want an error wrapping ErrFailed and %v", way.name, err, cause)
				}
				if st := w.Stats(); st.LastSynced != 2 {
					t.Fatalf("LastSynced %d after a failed fsync, want 2", st.LastSynced)
				}
				// The instance refuses everything that writes, even once the
				// disk is healthy again, and never retries the fsync.
				sf.armed.Store(false)
				attempts := sf.attempts.Load()
				for what, err := range map[string]error{
					"Append":        w.Append(context.Background(), entry(10, 1)),
					"AppendAsync":   w.AppendAsync(entry(11, 1)),
					"Sync":          w.Sync(context.Background()),
					"TruncateFront": w.TruncateFront(2),
				} {
					if !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
						t.Errorf("%s after fsync failure: %v", what, err)
					}
				}
				if err := w.Close(); !errors.Is(err, cause) {
					t.Errorf("Close: %v, want the fsync error", err)
				}
				if got := sf.attempts.Load(); got != attempts {
					t.Errorf("fsync retried after failing (%d more attempts)", got-attempts)
				}
				// Acknowledged data survives a crash; Open works.
				c := openWAL(t, Options{FS: fsys.CrashClone(), SegmentMaxBytes: 256})
				got := all(t, c)
				if len(got) < 2 || !equalEntries(got[:2], acked) {
					t.Fatalf("after crash: %s", describe(got))
				}
			})
		}
	}
}

func TestFsyncErrorAtClose(t *testing.T) {
	fsys := NewStrictMemFS()
	sf := &syncFailer{cause: syscall.EIO}
	fsys.SetHook(sf.hook)
	w := openWAL(t, Options{FS: fsys, SyncInterval: time.Hour})
	sf.armed.Store(true)
	if err := w.AppendAsync(entry(1, 1), entry(2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}

func TestSegmentCreationFailures(t *testing.T) {
	tests := []struct {
		name   string
		op     Op
		suffix string
		fatal  bool
	}{
		{"create temp file", OpOpen, tempSuffix, false},
		{"write header", OpWrite, tempSuffix, false},
		{"fsync temp file", OpSync, tempSuffix, false},
		{"rename", OpRename, tempSuffix, true},
		{"fsync directory", OpSyncDir, "", true},
		{"reopen segment", OpOpen, segmentSuffix, true},
		{"fsync old segment", OpSync, segmentSuffix, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewStrictMemFS()
			opts := Options{FS: fsys, SegmentMaxBytes: 100}
			w := openWAL(t, opts)
			mustAppend(t, w, entry(1, 50))
			var armed atomic.Bool
			armed.Store(true)
			fsys.SetHook(func(op Op, path string) error {
				if armed.Load() && op == tc.op && strings.HasSuffix(path, tc.suffix) {
					return syscall.EIO
				}
				return nil
			})
			err := w.Append(context.Background(), entry(2, 50)) // needs a new segment
			if !errors.Is(err, syscall.EIO) || errors.Is(err, ErrFailed) != tc.fatal {
				t.Fatalf("Append: %v (want fatal=%v)", err, tc.fatal)
			}
			armed.Store(false)
			err = w.Append(context.Background(), entry(2, 50))
			if tc.fatal {
				if !errors.Is(err, ErrFailed) {
					t.Fatalf("Append after a fatal error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Append after a recoverable error: %v", err)
			}
			mustClose(t, w)
			names, _ := fsys.ReadDir(testDir)
			for _, n := range names {
				if strings.HasSuffix(n, tempSuffix) {
					t.Fatalf("temp file %s left behind", n)
				}
			}
			w = openWAL(t, opts)
			if got := all(t, w); !equalEntries(got, []Entry{entry(1, 50), entry(2, 50)}) {
				t.Fatalf("after reopen: %s", describe(got))
			}
		})
	}
}
