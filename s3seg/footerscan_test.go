package s3seg_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func TestScanFootersRetriesTransientErrorsOnly(t *testing.T) {
	mem := s3segtest.NewMemStore()
	fs := s3segtest.NewFaultStore(mem)
	var objs []s3seg.ObjectInfo
	for i, key := range []string{"segments/a.seg", "segments/b.seg"} {
		obj, _ := mustEncode(t, batch(uint64(i), "t", 7, int32(i), s3seg.CompressionZstd, 0, 3, 20))
		if err := mem.Put(bg, key, obj); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, s3seg.ObjectInfo{Key: key, Size: int64(len(obj))})
	}
	if err := mem.Put(bg, "segments/junk.seg", []byte("not a segment at all, not at all")); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, s3seg.ObjectInfo{Key: "segments/junk.seg", Size: 32},
		s3seg.ObjectInfo{Key: "segments/gone.seg", Size: 100}) // listed, deleted since
	transient := fmt.Errorf("%w: connection reset", s3seg.ErrUnreachable)
	opt := s3seg.ScanOptions{RetryFor: 10 * time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Workers: 1}

	fs.Fail(s3seg.OpGetRange, transient, 5)
	res := s3seg.ScanFooters(bg, fs, objs, opt)
	if len(res.Footers) != 2 || res.Footers[0].Entries[0].TopicID != 7 {
		t.Fatalf("footers %+v after 5 transient failures", res.Footers)
	}
	if len(res.Unreadable) != 1 || res.Unreadable[0].Key != "segments/junk.seg" || res.Unreadable[0].Attempts != 1 ||
		!errors.Is(res.Unreadable[0].Err, s3seg.ErrCorrupt) {
		t.Fatalf("unreadable %+v: a corrupt object is unreadable at once, without retries", res.Unreadable)
	}
	if len(res.Vanished) != 1 || res.Vanished[0] != "segments/gone.seg" {
		t.Fatalf("vanished %v", res.Vanished)
	}

	// Failures that outlast RetryFor leave the object unreadable.
	fs.Fail(s3seg.OpGetRange, transient, -1)
	opt.RetryFor = 30 * time.Millisecond
	res = s3seg.ScanFooters(bg, fs, objs[:1], opt)
	if len(res.Footers) != 0 || len(res.Unreadable) != 1 || res.Unreadable[0].Attempts < 2 ||
		!errors.Is(res.Unreadable[0].Err, s3seg.ErrUnreachable) {
		t.Fatalf("persistent failure: %+v", res)
	}
	// RetryFor 0: one attempt.
	before := fs.Calls(s3seg.OpGetRange)
	opt.RetryFor = 0
	if res = s3seg.ScanFooters(bg, fs, objs[:1], opt); len(res.Unreadable) != 1 || fs.Calls(s3seg.OpGetRange)-before != 1 {
		t.Fatalf("RetryFor 0 made %d attempts", fs.Calls(s3seg.OpGetRange)-before)
	}
}

// TestScanBucket: every listed segment object counts as existing, only the
// ones not skipped are read, and the progress callbacks see the count.
func TestScanBucket(t *testing.T) {
	mem := s3segtest.NewMemStore()
	for i, key := range []string{"segments/known.seg", "segments/new-1.seg", "segments/new-2.seg"} {
		obj, _ := mustEncode(t, batch(uint64(i), "t", 7, int32(i), s3seg.CompressionNone, 0, 2, 10))
		if err := mem.Put(bg, key, obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.Put(bg, "other/not-a-segment", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var started, done int
	res, err := s3seg.ScanBucket(bg, mem, map[string]bool{"segments/known.seg": true},
		s3seg.ScanOptions{Workers: 1, Start: func(n int) { started = n }, Done: func() { done++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Existing) != 3 || !res.Existing["segments/known.seg"] || res.Existing["other/not-a-segment"] {
		t.Fatalf("existing %v", res.Existing)
	}
	if len(res.Footers) != 2 || len(res.Unreadable) != 0 || started != 2 || done != 2 {
		t.Fatalf("footers %d, unreadable %v, progress %d/%d", len(res.Footers), res.Unreadable, done, started)
	}

	fs := s3segtest.NewFaultStore(mem)
	fs.Fail(s3seg.OpList, fmt.Errorf("%w: down", s3seg.ErrUnreachable), -1)
	if _, err := s3seg.ScanBucket(bg, fs, nil, s3seg.ScanOptions{}); !errors.Is(err, s3seg.ErrUnreachable) {
		t.Fatalf("listing failure: %v", err)
	}
}
