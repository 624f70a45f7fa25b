package s3segtest_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
