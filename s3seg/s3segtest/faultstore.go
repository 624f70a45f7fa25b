package s3segtest

import (
	"context"
	"sync"

	"github.com/streamhouse/streamhouse/s3seg"
)

// FaultStore decorates an ObjectStore and fails chosen operations, for
// testing upload retries and read errors. Operation names are the s3seg.Op*
// constants plus "check". It also counts calls per operation (failed ones
// included).
type FaultStore struct {
	next s3seg.ObjectStore

	mu     sync.Mutex
	faults map[string]fault
	calls  map[string]int
}

type fault struct {
	err   error
	times int // remaining failures; < 0 means until cleared
}

var _ s3seg.ObjectStore = (*FaultStore)(nil)

// NewFaultStore wraps next.
func NewFaultStore(next s3seg.ObjectStore) *FaultStore {
	return &FaultStore{next: next, faults: make(map[string]fault), calls: make(map[string]int)}
}

// Fail makes the next times calls of op return err without reaching the
// wrapped store; times < 0 fails every call until Clear.
func (f *FaultStore) Fail(op string, err error, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = fault{err: err, times: times}
}

// Clear removes the fault of op.
func (f *FaultStore) Clear(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, op)
}

// Calls returns how many times op was called.
func (f *FaultStore) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *FaultStore) enter(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	ft, ok := f.faults[op]
	if !ok || ft.times == 0 {
		return nil
	}
	if ft.times > 0 {
		ft.times--
		f.faults[op] = ft
	}
	return ft.err
}

// Put implements s3seg.ObjectStore.
func (f *FaultStore) Put(ctx context.Context, key string, data []byte) error {
	if err := f.enter(s3seg.OpPut); err != nil {
		return err
	}
	return f.next.Put(ctx, key, data)
}

// Get implements s3seg.ObjectStore.
func (f *FaultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.enter(s3seg.OpGet); err != nil {
		return nil, err
	}
	return f.next.Get(ctx, key)
}

// GetRange implements s3seg.ObjectStore.
func (f *FaultStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := f.enter(s3seg.OpGetRange); err != nil {
		return nil, err
	}
	return f.next.GetRange(ctx, key, off, n)
}

// Head implements s3seg.ObjectStore.
func (f *FaultStore) Head(ctx context.Context, key string) (s3seg.ObjectInfo, error) {
	if err := f.enter(s3seg.OpHead); err != nil {
		return s3seg.ObjectInfo{}, err
	}
	return f.next.Head(ctx, key)
}

// Delete implements s3seg.ObjectStore.
func (f *FaultStore) Delete(ctx context.Context, key string) error {
	if err := f.enter(s3seg.OpDelete); err != nil {
		return err
	}
	return f.next.Delete(ctx, key)
}

// List implements s3seg.ObjectStore.
func (f *FaultStore) List(ctx context.Context, prefix string) ([]s3seg.ObjectInfo, error) {
	if err := f.enter(s3seg.OpList); err != nil {
		return nil, err
	}
	return f.next.List(ctx, prefix)
}

// Check implements s3seg.ObjectStore.
func (f *FaultStore) Check(ctx context.Context) error {
	if err := f.enter("check"); err != nil {
		return err
	}
	return f.next.Check(ctx)
}
