package s3segtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/s3seg"
)

// MemStore is an in-memory s3seg.ObjectStore with the same semantics as the
// real stores (it passes RunObjectStoreSuite). It copies data in and out.
type MemStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	now     func() time.Time
}

type memObject struct {
	data    []byte
	modTime time.Time
}

var _ s3seg.ObjectStore = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{objects: make(map[string]memObject), now: time.Now}
}

func memBegin(ctx context.Context, key string) error {
	if err := s3seg.ValidateKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// Put implements s3seg.ObjectStore.
func (m *MemStore) Put(ctx context.Context, key string, data []byte) error {
	if err := memBegin(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; ok {
		return fmt.Errorf("%w: %q", s3seg.ErrExists, key)
	}
	m.objects[key] = memObject{data: slices.Clone(data), modTime: m.now()}
	return nil
}

func (m *MemStore) get(key string) (memObject, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return memObject{}, fmt.Errorf("%w: %q", s3seg.ErrNotFound, key)
	}
	return o, nil
}

// Get implements s3seg.ObjectStore.
func (m *MemStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := memBegin(ctx, key); err != nil {
		return nil, err
	}
	o, err := m.get(key)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, o.data...), nil
}

// GetRange implements s3seg.ObjectStore.
func (m *MemStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := memBegin(ctx, key); err != nil {
		return nil, err
	}
	o, err := m.get(key)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if off < 0 || n <= 0 || off > size || n > size-off {
		return nil, fmt.Errorf("%w: [%d,+%d) of a %d-byte object %q", s3seg.ErrInvalidRange, off, n, size, key)
	}
	return slices.Clone(o.data[off : off+n]), nil
}

// Head implements s3seg.ObjectStore.
func (m *MemStore) Head(ctx context.Context, key string) (s3seg.ObjectInfo, error) {
	if err := memBegin(ctx, key); err != nil {
		return s3seg.ObjectInfo{}, err
	}
	o, err := m.get(key)
	if err != nil {
		return s3seg.ObjectInfo{}, err
	}
	return s3seg.ObjectInfo{Key: key, Size: int64(len(o.data)), LastModified: o.modTime}, nil
}

// Delete implements s3seg.ObjectStore.
func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := memBegin(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

// List implements s3seg.ObjectStore.
func (m *MemStore) List(ctx context.Context, prefix string) ([]s3seg.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []s3seg.ObjectInfo
	for k, o := range m.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, s3seg.ObjectInfo{Key: k, Size: int64(len(o.data)), LastModified: o.modTime})
		}
	}
	slices.SortFunc(out, func(a, b s3seg.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Check implements s3seg.ObjectStore.
func (m *MemStore) Check(ctx context.Context) error { return ctx.Err() }

// Corrupt replaces the stored bytes of key by f(copy of the bytes), bypassing
// the no-overwrite rule, so tests can simulate bit rot or truncation.
func (m *MemStore) Corrupt(key string, f func([]byte) []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return fmt.Errorf("%w: %q", s3seg.ErrNotFound, key)
	}
	o.data = f(slices.Clone(o.data))
	m.objects[key] = o
	return nil
}
