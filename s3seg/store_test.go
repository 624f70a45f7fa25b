package s3seg_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func newLocal(t *testing.T) *s3seg.LocalStore {
	t.Helper()
	s, err := s3seg.NewLocalStore(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocalStoreConformance(t *testing.T) {
	s3segtest.RunObjectStoreSuite(t, func(t *testing.T) s3seg.ObjectStore { return newLocal(t) })
}

func TestInstrumentedConformance(t *testing.T) {
	s3segtest.RunObjectStoreSuite(t, func(t *testing.T) s3seg.ObjectStore {
		return s3seg.Instrumented(newLocal(t), prometheus.NewRegistry(), "local")
	})
}

func TestLocalStoreLayoutAndTempFiles(t *testing.T) {
	s := newLocal(t)
	if err := s.Put(bg, "a/b/c", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, "a/b/c", []byte("other")); !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(s.Dir(), "a", "b", "c"))
	if err != nil || string(got) != "data" {
		t.Fatalf("object file: %q, %v", got, err)
	}
	tmps, err := os.ReadDir(filepath.Join(s.Dir(), ".tmp"))
	if err != nil || len(tmps) != 0 {
		t.Fatalf("temporary files left behind: %v, %v", tmps, err)
	}
	// Files that are not valid keys (hidden files, temp files) are not listed.
	for _, p := range []string{".tmp/put-123", "a/.DS_Store", ".hidden/x"} {
		full := filepath.Join(s.Dir(), filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(bg, "")
	if err != nil || len(list) != 1 || list[0].Key != "a/b/c" || list[0].Size != 4 {
		t.Fatalf("List = %+v, %v; want only a/b/c", list, err)
	}
}

func TestLocalStoreReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s1, err := s3seg.NewLocalStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Put(bg, "segments/x.seg", []byte("persisted")); err != nil {
		t.Fatal(err)
	}
	s2, err := s3seg.NewLocalStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Get(bg, "segments/x.seg"); err != nil || string(got) != "persisted" {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
	if err := s2.Put(bg, "segments/x.seg", nil); !errors.Is(err, s3seg.ErrExists) {
		t.Fatalf("overwrite after reopen: %v", err)
	}
}

func TestLocalStoreRemovesStaleTemps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := s3seg.NewLocalStore(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".tmp", "put-stale")
	fresh := filepath.Join(dir, ".tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s3seg.NewLocalStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temp file (maybe another writer's) removed: %v", err)
	}
}

func TestLocalStoreKeyConflicts(t *testing.T) {
	s := newLocal(t)
	if err := s.Put(bg, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// "a" is a directory of keys and "a/b/c" would need "a/b" to be one.
	for _, key := range []string{"a", "a/b/c"} {
		if err := s.Put(bg, key, []byte("y")); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	if err := s.Delete(bg, "a"); err != nil {
		t.Fatalf("Delete of a directory name: %v", err)
	}
	if got, err := s.Get(bg, "a/b"); err != nil || string(got) != "x" {
		t.Fatalf("a/b after Delete(a): %q, %v", got, err)
	}
	long := strings.Repeat("x", 256)
	if err := s.Put(bg, long, nil); !errors.Is(err, s3seg.ErrInvalidKey) {
		t.Fatalf("segment longer than a file name: %v, want ErrInvalidKey", err)
	}
}

func TestNewLocalStoreErrors(t *testing.T) {
	if _, err := s3seg.NewLocalStore(""); err == nil {
		t.Fatal("empty directory accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s3seg.NewLocalStore(file); err == nil {
		t.Fatal("a regular file accepted as store directory")
	}
	s := newLocal(t)
	if err := os.RemoveAll(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(bg); err == nil {
		t.Fatal("Check passed with the directory gone")
	}
}

func TestValidateKey(t *testing.T) {
	for _, key := range []string{"a", "a/b", "segments/2024/01/02/n-1-ff.seg", "a.b", "a..b", "x/y.", "ü/ключ", "a b", "a:b@c=d"} {
		if err := s3seg.ValidateKey(key); err != nil {
			t.Errorf("ValidateKey(%q): %v", key, err)
		}
	}
	for _, key := range s3segtest.InvalidKeys {
		if err := s3seg.ValidateKey(key); !errors.Is(err, s3seg.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q): %v, want ErrInvalidKey", key, err)
		}
	}
}

func TestObjectKey(t *testing.T) {
	at := time.Date(2024, 3, 9, 23, 59, 0, 0, time.FixedZone("x", -3600))
	re := regexp.MustCompile(`^segments/2024/03/10/node_7-42-[0-9a-f]{16}\.seg$`)
	seen := map[string]bool{}
	for range 1000 {
		k := s3seg.ObjectKeyAt("node/7", 42, at)
		if !re.MatchString(k) {
			t.Fatalf("ObjectKeyAt = %q, want %v (UTC date, sanitised node)", k, re)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
	for _, node := range []string{"", "..", ".hidden", "a/../b", "n\x00", strings.Repeat("n", 300), "ünï"} {
		k := s3seg.ObjectKey(node, 1)
		if err := s3seg.ValidateKey(k); err != nil || !strings.HasPrefix(k, s3seg.SegmentKeyPrefix) {
			t.Errorf("ObjectKey(%q) = %q: %v", node, k, err)
		}
	}
}

func TestObjectKeyCommitBy(t *testing.T) {
	k := s3seg.ObjectKeyCommitBy("node/7", 42, 1_733_400_000_123)
	re := regexp.MustCompile(`^segments/\d{4}/\d{2}/\d{2}/node_7-42-[0-9a-f]{16}-cb1733400000123\.seg$`)
	if !re.MatchString(k) || s3seg.ValidateKey(k) != nil {
		t.Fatalf("ObjectKeyCommitBy = %q, want %v", k, re)
	}
	if got := s3seg.KeyCommitBy(k); got != 1_733_400_000_123 {
		t.Fatalf("KeyCommitBy(%q) = %d", k, got)
	}
	for _, key := range []string{
		s3seg.ObjectKey("n", 1), // older keys: no commit-by time
		"segments/2024/01/01/n-1-00-cb.seg", "segments/2024/01/01/n-1-00-cb-5.seg", "segments/2024/01/01/n-1-00-cb0.seg",
		"segments/2024/01/01/n-1-00-cb99999999999999999999.seg", "segments/2024/01/01/n-1-00-cb12.bin", "segments/x-cb12/a.seg", "",
	} {
		if got := s3seg.KeyCommitBy(key); got != 0 {
			t.Errorf("KeyCommitBy(%q) = %d, want 0", key, got)
		}
	}
}
