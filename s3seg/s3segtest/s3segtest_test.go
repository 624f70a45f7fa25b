package s3segtest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestMemStoreConformance(t *testing.T) {
	s3segtest.RunObjectStoreSuite(t, func(*testing.T) s3seg.ObjectStore { return s3segtest.NewMemStore() })
}

func TestFaultStoreConformance(t *testing.T) {
	// With no faults set, the decorator must be transparent.
	s3segtest.RunObjectStoreSuite(t, func(*testing.T) s3seg.ObjectStore {
		return s3segtest.NewFaultStore(s3segtest.NewMemStore())
	})
}

func TestFaultStoreFails(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	f := s3segtest.NewFaultStore(s3segtest.NewMemStore())
	f.Fail(s3seg.OpPut, boom, 2)
	for i := range 2 {
		if err := f.Put(ctx, "k", []byte("x")); !errors.Is(err, boom) {
			t.Fatalf("Put #%d: %v, want injected error", i+1, err)
		}
	}
	if err := f.Put(ctx, "k", []byte("x")); err != nil {
		t.Fatalf("Put after the faults ran out: %v", err)
	}
	if got := f.Calls(s3seg.OpPut); got != 3 {
		t.Fatalf("Calls(put) = %d, want 3", got)
	}
	f.Fail(s3seg.OpGet, boom, -1)
	for range 3 {
		if _, err := f.Get(ctx, "k"); !errors.Is(err, boom) {
			t.Fatalf("Get: %v, want injected error", err)
		}
	}
	f.Clear(s3seg.OpGet)
	if _, err := f.Get(ctx, "k"); err != nil {
		t.Fatalf("Get after Clear: %v", err)
	}
}

func TestMinIOBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "minio")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Setenv(s3segtest.MinIOEnv, exe)
	if got, err := s3segtest.MinIOBinary(); err != nil || got != exe {
		t.Fatalf("with %s set: %q, %v", s3segtest.MinIOEnv, got, err)
	}
	// A set but unusable variable is an error, not a silent fallback, and
	// the message says what to do.
	for _, p := range []string{filepath.Join(dir, "missing"), plain, dir} {
		t.Setenv(s3segtest.MinIOEnv, p)
		_, err := s3segtest.MinIOBinary()
		if err == nil || !strings.Contains(err.Error(), "make deps") || !strings.Contains(err.Error(), s3segtest.MinIOEnv) {
			t.Errorf("%s=%s: %v; want an error naming the variable and `make deps`", s3segtest.MinIOEnv, p, err)
		}
	}
}
