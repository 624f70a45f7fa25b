package s3segtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg"
)

// RunObjectStoreSuite runs the ObjectStore conformance tests. newStore must
// return a new, empty store for each call (each subtest calls it once);
// stores backed by a shared service should use a fresh bucket or a
// prefix-scoped view. The suite runs subtests in parallel.
func RunObjectStoreSuite(t *testing.T, newStore func(t *testing.T) s3seg.ObjectStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s s3seg.ObjectStore)
	}{
		{"PutGet", testPutGet},
		{"PutDoesNotRetainData", testPutDoesNotRetain},
		{"EmptyObject", testEmptyObject},
		{"LargeObject", testLargeObject},
		{"OverwriteRefused", testOverwriteRefused},
		{"ConcurrentPutSameKey", testConcurrentPutSameKey},
		{"ConcurrentPutDistinctKeys", testConcurrentPutDistinct},
		{"NotFound", testNotFound},
		{"GetRange", testGetRange},
		{"GetRangeInvalid", testGetRangeInvalid},
		{"Head", testHead},
		{"ListOrderAndPrefix", testList},
		{"ListEmpty", testListEmpty},
		{"Delete", testDelete},
		{"DeleteIdempotent", testDeleteIdempotent},
		{"PutAfterDelete", testPutAfterDelete},
		{"InvalidKeys", testInvalidKeys},
		{"CanceledContext", testCanceledContext},
		{"Check", testCheck},
		{"SegmentRoundTrip", testSegmentRoundTrip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func payload(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func mustPut(t *testing.T, s s3seg.ObjectStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s s3seg.ObjectStore, key string) []byte {
	t.Helper()
	b, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

func keys(infos []s3seg.ObjectInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func testPutGet(t *testing.T, s s3seg.ObjectStore) {
	for i, key := range []string{"a", "seg/x.seg", "segments/2024/01/02/node-1-00ff.seg", "deep/a/b/c/d/e/f/g"} {
		data := payload(i, 100+i)
		mustPut(t, s, key, data)
		got := mustGet(t, s, key)
		if !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) returned different bytes", key)
		}
		got[0] ^= 0xff // the returned slice is the caller's
		if again := mustGet(t, s, key); !bytes.Equal(again, data) {
			t.Fatalf("modifying a Get result changed the stored object %q", key)
		}
	}
}

func testPutDoesNotRetain(t *testing.T, s s3seg.ObjectStore) {
	data := payload(1, 64)
	want := slices.Clone(data)
	mustPut(t, s, "k", data)
	for i := range data {
		data[i] = 0
	}
	if got := mustGet(t, s, "k"); !bytes.Equal(got, want) {
		t.Fatal("modifying the slice passed to Put changed the stored object")
	}
}

func testEmptyObject(t *testing.T, s s3seg.ObjectStore) {
	mustPut(t, s, "empty", nil)
	if got := mustGet(t, s, "empty"); len(got) != 0 {
		t.Fatalf("Get(empty) = %d bytes, want 0", len(got))
	}
	info, err := s.Head(context.Background(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Head(empty) = %+v, %v; want size 0", info, err)
	}
	if err := s.Put(context.Background(), "empty", []byte("x")); !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("Put over an empty object: %v, want ErrExists", err)
	}
}

func testLargeObject(t *testing.T, s s3seg.ObjectStore) {
	data := payload(7, 5<<20+13)
	mustPut(t, s, "big/object", data)
	if got := mustGet(t, s, "big/object"); !bytes.Equal(got, data) {
		t.Fatal("large object round trip differs")
	}
	got, err := s.GetRange(context.Background(), "big/object", 4<<20, 1<<20+13)
	if err != nil || !bytes.Equal(got, data[4<<20:]) {
		t.Fatalf("GetRange of the tail of a large object: err=%v equal=%v", err, bytes.Equal(got, data[4<<20:]))
	}
}

func testOverwriteRefused(t *testing.T, s s3seg.ObjectStore) {
	first := payload(1, 50)
	mustPut(t, s, "once/key", first)
	err := s.Put(context.Background(), "once/key", payload(2, 80))
	if !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("second Put: %v, want ErrExists", err)
	}
	if got := mustGet(t, s, "once/key"); !bytes.Equal(got, first) {
		t.Fatal("refused Put changed the object")
	}
	list, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(list); !slices.Equal(got, []string{"once/key"}) {
		t.Fatalf("List after refused Put = %q, want [once/key]", got)
	}
}

func testConcurrentPutSameKey(t *testing.T, s s3seg.ObjectStore) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Put(context.Background(), "race/key", payload(100+i, 4096))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("Puts %d and %d of the same key both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, s3seg.ErrExists):
			t.Fatalf("Put %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent Put succeeded")
	}
	if got := mustGet(t, s, "race/key"); !bytes.Equal(got, payload(100+winner, 4096)) {
		t.Fatal("stored object is not the successful Put's data")
	}
}

func testConcurrentPutDistinct(t *testing.T, s s3seg.ObjectStore) {
	const writers, per = 8, 8
	var wg sync.WaitGroup
	errc := make(chan error, writers*per)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				key := fmt.Sprintf("c/%02d/%02d", w, i)
				if err := s.Put(context.Background(), key, payload(w*per+i, 1000+i)); err != nil {
					errc <- fmt.Errorf("Put(%q): %w", key, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	list, err := s.List(context.Background(), "c/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != writers*per {
		t.Fatalf("List returned %d objects, want %d", len(list), writers*per)
	}
	for w := range writers {
		for i := range per {
			key := fmt.Sprintf("c/%02d/%02d", w, i)
			if got := mustGet(t, s, key); !bytes.Equal(got, payload(w*per+i, 1000+i)) {
				t.Fatalf("object %q has wrong contents", key)
			}
		}
	}
}

func testNotFound(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	mustPut(t, s, "dir/present", []byte("x"))
	for _, key := range []string{"missing", "dir/missing", "dir", "dir/present/below", "nodir/x"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, s3seg.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", key, err)
		}
		if _, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, s3seg.ErrNotFound) {
			t.Errorf("GetRange(%q): %v, want ErrNotFound", key, err)
		}
		if _, err := s.Head(ctx, key); !errors.Is(err, s3seg.ErrNotFound) {
			t.Errorf("Head(%q): %v, want ErrNotFound", key, err)
		}
	}
}

func testGetRange(t *testing.T, s s3seg.ObjectStore) {
	data := payload(3, 1000)
	mustPut(t, s, "r", data)
	for _, rg := range [][2]int64{{0, 1}, {0, 1000}, {999, 1}, {10, 90}, {500, 500}, {984, 16}} {
		got, err := s.GetRange(context.Background(), "r", rg[0], rg[1])
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", rg[0], rg[1], err)
		}
		if !bytes.Equal(got, data[rg[0]:rg[0]+rg[1]]) {
			t.Fatalf("GetRange(%d, %d) returned the wrong bytes", rg[0], rg[1])
		}
	}
}

func testGetRangeInvalid(t *testing.T, s s3seg.ObjectStore) {
	mustPut(t, s, "r", payload(3, 100))
	for _, rg := range [][2]int64{{-1, 10}, {0, 0}, {0, -1}, {0, 101}, {100, 1}, {99, 2}, {1000, 1}} {
		if _, err := s.GetRange(context.Background(), "r", rg[0], rg[1]); !errors.Is(err, s3seg.ErrInvalidRange) {
			t.Errorf("GetRange(%d, %d): %v, want ErrInvalidRange", rg[0], rg[1], err)
		}
	}
}

func testHead(t *testing.T, s s3seg.ObjectStore) {
	mustPut(t, s, "h/obj", payload(4, 1234))
	info, err := s.Head(context.Background(), "h/obj")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "h/obj" || info.Size != 1234 || info.LastModified.IsZero() {
		t.Fatalf("Head = %+v, want key h/obj, size 1234, a modification time", info)
	}
}

func testList(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	// Insertion order differs from key order; "a-c" sorts before "a/b"
	// ('-' < '/') although a directory walk would visit a/ first.
	all := []string{"b", "a/b/c", "a-c", "a/bc", "a/b/a", "ab", "z/y/x", "a/b/c2"}
	for i, k := range all {
		mustPut(t, s, k, payload(i, i+1))
	}
	sorted := slices.Sorted(slices.Values(all))
	cases := map[string][]string{
		"":       sorted,
		"a":      {"a-c", "a/b/a", "a/b/c", "a/b/c2", "a/bc", "ab"},
		"a/":     {"a/b/a", "a/b/c", "a/b/c2", "a/bc"},
		"a/b":    {"a/b/a", "a/b/c", "a/b/c2", "a/bc"},
		"a/b/":   {"a/b/a", "a/b/c", "a/b/c2"},
		"a/b/c":  {"a/b/c", "a/b/c2"},
		"a/b/c2": {"a/b/c2"},
		"z/":     {"z/y/x"},
		"q":      nil,
		"a/x/":   nil,
		"a//":    nil,
		"../":    nil,
	}
	for prefix, want := range cases {
		list, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if got := keys(list); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
		for _, in := range list {
			i := slices.Index(all, in.Key)
			if in.Size != int64(i+1) {
				t.Errorf("List(%q): %q has size %d, want %d", prefix, in.Key, in.Size, i+1)
			}
		}
	}
}

func testListEmpty(t *testing.T, s s3seg.ObjectStore) {
	for _, prefix := range []string{"", "segments/", "x"} {
		list, err := s.List(context.Background(), prefix)
		if err != nil || len(list) != 0 {
			t.Fatalf("List(%q) on an empty store = %v, %v; want nothing", prefix, keys(list), err)
		}
	}
}

func testDelete(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	mustPut(t, s, "d/1", []byte("one"))
	mustPut(t, s, "d/2", []byte("two"))
	if err := s.Delete(ctx, "d/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "d/1"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Head(ctx, "d/1"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Fatalf("Head after Delete: %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx, "d/")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(list); !slices.Equal(got, []string{"d/2"}) {
		t.Fatalf("List after Delete = %q, want [d/2]", got)
	}
	if got := mustGet(t, s, "d/2"); string(got) != "two" {
		t.Fatal("Delete affected another object")
	}
}

func testDeleteIdempotent(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	if err := s.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	mustPut(t, s, "twice", []byte("x"))
	for i := range 2 {
		if err := s.Delete(ctx, "twice"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
}

func testPutAfterDelete(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	mustPut(t, s, "p/k", []byte("old"))
	if err := s.Delete(ctx, "p/k"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "p/k", []byte("new"))
	if got := mustGet(t, s, "p/k"); string(got) != "new" {
		t.Fatalf("Get = %q, want new", got)
	}
}

// InvalidKeys lists keys every ObjectStore must reject with ErrInvalidKey.
var InvalidKeys = []string{
	"", "/abs", "/", "a//b", "a/", "a/../b", "..", "../x", ".", "a/./b",
	".hidden", "a/.tmp/x", "a\x00b", "a\nb", "a\\b", "\xff\xfe",
	strings.Repeat("k", s3seg.MaxKeyLength+1),
}

func testInvalidKeys(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	for _, key := range InvalidKeys {
		if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("GetRange(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Head(ctx, key); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("Head(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	list, err := s.List(ctx, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("invalid Puts left objects behind: %q, %v", keys(list), err)
	}
	// The longest valid key works (segments of 100 bytes stay within file
	// name limits of directory-backed stores).
	long := strings.Repeat(strings.Repeat("k", 99)+"/", 10) + strings.Repeat("k", s3seg.MaxKeyLength-1000)
	if len(long) != s3seg.MaxKeyLength {
		t.Fatalf("test bug: key of %d bytes", len(long))
	}
	mustPut(t, s, long, []byte("x"))
	if got := mustGet(t, s, long); string(got) != "x" {
		t.Fatalf("Get(longest key) = %q", got)
	}
}

func testCanceledContext(t *testing.T, s s3seg.ObjectStore) {
	mustPut(t, s, "exists", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "new", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "exists"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.GetRange(ctx, "exists", 0, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("GetRange with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Head(ctx, "exists"); !errors.Is(err, context.Canceled) {
		t.Errorf("Head with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "new"); !errors.Is(err, s3seg.ErrNotFound) {
		t.Errorf("a Put with a canceled context created the object (Get: %v)", err)
	}
}

func testCheck(t *testing.T, s s3seg.ObjectStore) {
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// testSegmentRoundTrip stores an encoded segment and reads it back through
// s3seg.Reader, which exercises Head and ranged GETs the way the read path
// does.
func testSegmentRoundTrip(t *testing.T, s s3seg.ObjectStore) {
	ctx := context.Background()
	var parts []s3seg.PartitionBatch
	for p := range 3 {
		b := s3seg.PartitionBatch{Topic: "orders", TopicID: 9, Partition: int32(p), Compression: s3seg.Compression(p)}
		for i := range 50 {
			b.Records = append(b.Records, s3seg.Record{Offset: int64(100 + i), Timestamp: int64(1_700_000_000_000 + i), Key: []byte(fmt.Sprint(i)), Value: payload(p*100+i, 64)})
		}
		parts = append(parts, b)
	}
	obj, footer, err := s3seg.NewEncoder().Encode(parts)
	if err != nil {
		t.Fatal(err)
	}
	key := s3seg.ObjectKey("node-1", 3)
	mustPut(t, s, key, obj)
	r := s3seg.NewReader(s, nil, s3seg.WithFooterTail(64))
	got, size, err := r.ReadFooter(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(obj)) || len(got.Entries) != len(footer.Entries) {
		t.Fatalf("ReadFooter: size %d, %d entries; want %d, %d", size, len(got.Entries), len(obj), len(footer.Entries))
	}
	for i, e := range got.Entries {
		if e != footer.Entries[i] {
			t.Fatalf("entry %d = %+v, want %+v", i, e, footer.Entries[i])
		}
		recs, err := r.ReadBlock(ctx, key, e)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 50 || recs[0].Offset != 100 || !bytes.Equal(recs[49].Value, parts[i].Records[49].Value) {
			t.Fatalf("block %d read back wrong", i)
		}
	}
}
