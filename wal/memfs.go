package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// Op names a filesystem operation of MemFS, for fault injection.
type Op string

// MemFS operations.
const (
	OpOpen     Op = "open"
	OpRead     Op = "read"
	OpWrite    Op = "write"
	OpSync     Op = "sync"
	OpTruncate Op = "truncate"
	OpClose    Op = "close"
	OpRemove   Op = "remove"
	OpRename   Op = "rename"
	OpMkdir    Op = "mkdir"
	OpReadDir  Op = "readdir"
	OpSyncDir  Op = "syncdir"
)

var (
	errIsDir     = errors.New("is a directory")
	errNotDir    = errors.New("not a directory")
	errReadOnly  = errors.New("file not open for writing")
	errWriteOnly = errors.New("file not open for reading")
	errStale     = errors.New("file handle invalidated by MemFS.Crash")
)

// MemFS is an in-memory FS. The agent uses it when the WAL is disabled;
// tests use its strict mode and fault injection.
//
// In strict mode (NewStrictMemFS), MemFS tracks what would survive a power
// failure: a file's content as of its last successful File.Sync, and a
// directory's entries (creations, renames, removals) as of its last
// successful SyncDir. Crash and CrashClone throw everything else away.
// Directories made by MkdirAll are durable at once.
//
// Faults: InjectError makes every operation of one kind fail; SetHook runs a
// function before every operation and fails it when the function returns an
// error. A failed Write writes the first half of its buffer (a short write),
// a failed Sync syncs nothing, any other failed operation has no effect.
//
// MemFS is safe for concurrent use.
type MemFS struct {
	mu      sync.RWMutex
	strict  bool
	gen     uint64 // bumped by Crash; handles of an older generation fail
	dirs    map[string]struct{}
	files   map[string]*memNode // live namespace
	durable map[string]*memNode // namespace as of the last SyncDir (strict only)

	faultMu sync.Mutex
	hook    func(op Op, path string) error
	inject  map[Op]error

	syncs    atomic.Int64
	dirSyncs atomic.Int64
}

var _ FS = (*MemFS)(nil)

// memChunkBytes bounds the blocks a MemFS file is kept in: a file that
// grows appends to its last block (copying at most memChunkBytes) or
// starts a new one, and never copies the rest of what it holds (a WAL
// segment in memory grows to WAL_SEGMENT_BYTES under the lock every read
// takes).
const memChunkBytes = 1 << 20

type memNode struct {
	// chunks hold the content: chunk i holds the bytes from
	// i*memChunkBytes, at most memChunkBytes of them; a chunk's bytes past
	// its length, and a nil chunk, read as zeros up to size.
	chunks [][]byte
	size   int
	synced []byte // content as of the last Sync (strict only)
	// dirtyFrom: content[:k] == synced[:k] for k = min(dirtyFrom, size, len(synced)).
	dirtyFrom int
}

// newMemNode returns a node holding a copy of b, synced when strict.
func newMemNode(b []byte, synced bool) *memNode {
	n := &memNode{}
	n.writeAt(b, 0)
	if synced {
		n.synced = slices.Clone(b)
	}
	n.dirtyFrom = n.size
	return n
}

// NewMemFS returns an in-memory FS in which every completed operation counts
// as durable.
func NewMemFS() *MemFS { return newMemFS(false) }

// NewStrictMemFS returns an in-memory FS that keeps only synced state across
// Crash and CrashClone.
func NewStrictMemFS() *MemFS { return newMemFS(true) }

func newMemFS(strict bool) *MemFS {
	return &MemFS{
		strict:  strict,
		dirs:    map[string]struct{}{"/": {}, ".": {}},
		files:   map[string]*memNode{},
		durable: map[string]*memNode{},
		inject:  map[Op]error{},
	}
}

// InjectError makes every later operation op fail with err (wrapped in an
// *fs.PathError) until InjectError(op, nil) clears it.
func (m *MemFS) InjectError(op Op, err error) {
	m.faultMu.Lock()
	defer m.faultMu.Unlock()
	if err == nil {
		delete(m.inject, op)
		return
	}
	m.inject[op] = err
}

// SetHook installs fn (nil removes it). fn runs before every operation, with
// no MemFS lock held, and may call any MemFS method; a non-nil result fails
// the operation.
func (m *MemFS) SetHook(fn func(op Op, path string) error) {
	m.faultMu.Lock()
	defer m.faultMu.Unlock()
	m.hook = fn
}

// Syncs returns the number of successful File.Sync calls.
func (m *MemFS) Syncs() int64 { return m.syncs.Load() }

// DirSyncs returns the number of successful SyncDir calls.
func (m *MemFS) DirSyncs() int64 { return m.dirSyncs.Load() }

// Crash simulates a power failure in place: every write not covered by a
// File.Sync and every directory change not covered by a SyncDir is lost, and
// every open handle fails from now on. The caller must make sure nothing
// else uses the FS concurrently (namespace operations carry no handle and
// would land in the crashed state); CrashClone has no such restriction.
// In non-strict mode everything completed so far survives.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.strict {
		m.files = m.durableCopyLocked()
		m.durable = maps(m.files)
	}
	m.gen++
}

// CrashClone returns a new MemFS holding what would be on disk after a power
// failure now (in non-strict mode: everything). The receiver is unaffected
// and may go on being used, e.g. by the WAL instance that "crashed". The
// clone has no hook and no injected errors.
func (m *MemFS) CrashClone() *MemFS {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := newMemFS(m.strict)
	for d := range m.dirs {
		c.dirs[d] = struct{}{}
	}
	if m.strict {
		c.files = m.durableCopyLocked()
	} else {
		for p, n := range m.files {
			c.files[p] = newMemNode(n.content(0), false)
		}
	}
	c.durable = maps(c.files)
	return c
}

// CrashCloneKeep is CrashClone with torn writes: for every file that will
// survive and whose unsynced change is only an append past its synced
// content, keep(path, appended) returns the bytes that reached the disk
// after the synced content (typically a prefix of appended, possibly with
// zeros in place of lost sectors). keep runs with the MemFS locked and must
// not call it.
func (m *MemFS) CrashCloneKeep(keep func(path string, appended []byte) []byte) *MemFS {
	c := m.CrashClone()
	if !m.strict {
		return c
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for p, n := range m.durable {
		if live, ok := m.files[p]; !ok || live != n {
			continue // removed or replaced since the last SyncDir
		}
		if n.dirtyFrom < len(n.synced) || n.size <= len(n.synced) {
			continue
		}
		extra := keep(p, n.content(len(n.synced)))
		cn := c.files[p]
		cn.writeAt(extra, cn.size)
		cn.synced = cn.content(0)
		cn.dirtyFrom = cn.size
	}
	return c
}

func maps(src map[string]*memNode) map[string]*memNode {
	dst := make(map[string]*memNode, len(src))
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

func (m *MemFS) durableCopyLocked() map[string]*memNode {
	files := make(map[string]*memNode, len(m.durable))
	fresh := map[*memNode]*memNode{}
	for p, n := range m.durable {
		nn, ok := fresh[n]
		if !ok {
			nn = newMemNode(n.synced, true)
			fresh[n] = nn
		}
		files[p] = nn
	}
	return files
}

// ReadFile returns a copy of the current content of a file (synced or not).
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, ok := m.files[filepath.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return n.content(0), nil
}

func (m *MemFS) fault(op Op, path string) error {
	m.faultMu.Lock()
	hook, err := m.hook, m.inject[op]
	m.faultMu.Unlock()
	if err == nil && hook != nil {
		err = hook(op, path)
	}
	if err != nil {
		return &fs.PathError{Op: string(op), Path: path, Err: err}
	}
	return nil
}

func (m *MemFS) parentExistsLocked(p string) bool {
	_, ok := m.dirs[filepath.Dir(p)]
	return ok
}

// OpenFile opens or creates a file. It honours O_RDONLY/O_WRONLY/O_RDWR,
// O_CREATE, O_EXCL, O_TRUNC and O_APPEND.
func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	if err := m.fault(OpOpen, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := filepath.Clean(name)
	if _, ok := m.dirs[p]; ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errIsDir}
	}
	if !m.parentExistsLocked(p) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	writable := acc == os.O_WRONLY || acc == os.O_RDWR
	n, ok := m.files[p]
	switch {
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &memNode{}
		m.files[p] = n
	case flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	}
	if flag&os.O_TRUNC != 0 && writable {
		n.truncate(0)
	}
	return &memFile{
		fs: m, node: n, path: name, gen: m.gen,
		readable: acc == os.O_RDONLY || acc == os.O_RDWR,
		writable: writable,
		append:   flag&os.O_APPEND != 0,
	}, nil
}

// Remove removes a file or an empty directory.
func (m *MemFS) Remove(name string) error {
	if err := m.fault(OpRemove, name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := filepath.Clean(name)
	if _, ok := m.files[p]; ok {
		delete(m.files, p)
		return nil
	}
	if _, ok := m.dirs[p]; ok {
		for q := range m.files {
			if filepath.Dir(q) == p {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		for q := range m.dirs {
			if q != p && filepath.Dir(q) == p {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		delete(m.dirs, p)
		return nil
	}
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
}

// Rename renames a file, replacing newpath if it exists.
func (m *MemFS) Rename(oldpath, newpath string) error {
	if err := m.fault(OpRename, oldpath); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	op, np := filepath.Clean(oldpath), filepath.Clean(newpath)
	n, ok := m.files[op]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if _, isDir := m.dirs[np]; isDir || !m.parentExistsLocked(np) {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrInvalid}
	}
	delete(m.files, op)
	m.files[np] = n
	return nil
}

// MkdirAll creates a directory and its parents; directories are durable at
// once.
func (m *MemFS) MkdirAll(path string, _ os.FileMode) error {
	if err := m.fault(OpMkdir, path); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, ok := m.files[p]; ok {
			return &fs.PathError{Op: "mkdir", Path: path, Err: errNotDir}
		}
		m.dirs[p] = struct{}{}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

// ReadDir lists the files and directories directly inside dir, sorted.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	if err := m.fault(OpReadDir, dir); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	d := filepath.Clean(dir)
	if _, ok := m.dirs[d]; !ok {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for p := range m.files {
		if filepath.Dir(p) == d {
			names = append(names, filepath.Base(p))
		}
	}
	for p := range m.dirs {
		if p != d && filepath.Dir(p) == d {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir makes the current entries of dir durable.
func (m *MemFS) SyncDir(dir string) error {
	if err := m.fault(OpSyncDir, dir); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := filepath.Clean(dir)
	if _, ok := m.dirs[d]; !ok {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	if m.strict {
		for p := range m.durable {
			if filepath.Dir(p) == d {
				delete(m.durable, p)
			}
		}
		for p, n := range m.files {
			if filepath.Dir(p) == d {
				m.durable[p] = n
			}
		}
	}
	m.dirSyncs.Add(1)
	return nil
}

// readAt copies the content from off into p and returns how many bytes it
// copied (fewer than len(p) at the end of the file).
func (n *memNode) readAt(p []byte, off int) int {
	if off >= n.size {
		return 0
	}
	p = p[:min(len(p), n.size-off)]
	for done := 0; done < len(p); {
		c, at := (off+done)/memChunkBytes, (off+done)%memChunkBytes
		k := min(len(p)-done, memChunkBytes-at)
		held := 0
		if chunk := n.chunks[c]; at < len(chunk) {
			held = copy(p[done:done+k], chunk[at:])
		}
		clear(p[done+held : done+k])
		done += k
	}
	return len(p)
}

// content returns a copy of the content from off on.
func (n *memNode) content(off int) []byte {
	b := make([]byte, max(n.size-off, 0))
	n.readAt(b, off)
	return b
}

func (n *memNode) writeAt(p []byte, off int) {
	if end := off + len(p); end > n.size {
		n.resize(end)
	}
	for done := 0; done < len(p); {
		c, at := (off+done)/memChunkBytes, (off+done)%memChunkBytes
		k := min(len(p)-done, memChunkBytes-at)
		n.chunks[c] = growChunk(n.chunks[c], at+k)
		copy(n.chunks[c][at:], p[done:done+k])
		done += k
	}
	n.dirtyFrom = min(n.dirtyFrom, off)
}

// growChunk returns c at least l long, the added bytes zero, copying at
// most memChunkBytes.
func growChunk(c []byte, l int) []byte {
	switch {
	case l <= len(c):
		return c
	case l <= cap(c):
		old := len(c)
		c = c[:l]
		clear(c[old:])
		return c
	}
	grown := make([]byte, l, min(max(2*cap(c), l, 512), memChunkBytes))
	copy(grown, c)
	return grown
}

// resize sets the size: a shrink drops the blocks and bytes past it, so a
// later growth reads zeros there.
func (n *memNode) resize(size int) {
	if size < n.size {
		keep := (size + memChunkBytes - 1) / memChunkBytes
		if at := size % memChunkBytes; at != 0 && len(n.chunks[keep-1]) > at {
			n.chunks[keep-1] = n.chunks[keep-1][:at]
		}
		clear(n.chunks[keep:])
		n.chunks = n.chunks[:keep]
	}
	for len(n.chunks)*memChunkBytes < size {
		n.chunks = append(n.chunks, nil)
	}
	n.size = size
}

func (n *memNode) truncate(size int) {
	n.dirtyFrom = min(n.dirtyFrom, size, n.size)
	n.resize(size)
}

func (n *memNode) sync() {
	keep := min(n.dirtyFrom, n.size, len(n.synced))
	n.synced = append(n.synced[:keep], n.content(keep)...)
	n.dirtyFrom = n.size
}

type memFile struct {
	fs       *MemFS
	node     *memNode
	path     string
	gen      uint64
	readable bool
	writable bool
	append   bool
	off      int  // write offset when not appending; guarded by fs.mu
	closed   bool // guarded by fs.mu
}

func (f *memFile) checkLocked(op string) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: op, Path: f.path, Err: fs.ErrClosed}
	case f.gen != f.fs.gen:
		return &fs.PathError{Op: op, Path: f.path, Err: errStale}
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.fault(OpRead, f.path); err != nil {
		return 0, err
	}
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	if err := f.checkLocked("read"); err != nil {
		return 0, err
	}
	if !f.readable {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: errWriteOnly}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	if off >= int64(f.node.size) {
		return 0, io.EOF
	}
	n := f.node.readAt(p, int(off))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	ferr := f.fs.fault(OpWrite, f.path)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write"); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, &fs.PathError{Op: "write", Path: f.path, Err: errReadOnly}
	}
	if ferr != nil {
		p = p[:len(p)/2] // a failed write may still have written a prefix
	}
	off := f.off
	if f.append {
		off = f.node.size
	}
	f.node.writeAt(p, off)
	f.off = off + len(p)
	if ferr != nil {
		return len(p), ferr
	}
	return len(p), nil
}

func (f *memFile) Sync() error {
	if err := f.fs.fault(OpSync, f.path); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("sync"); err != nil {
		return err
	}
	if f.fs.strict {
		f.node.sync()
	}
	f.fs.syncs.Add(1)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	if err := f.fs.fault(OpTruncate, f.path); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("truncate"); err != nil {
		return err
	}
	if !f.writable {
		return &fs.PathError{Op: "truncate", Path: f.path, Err: errReadOnly}
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.path, Err: fs.ErrInvalid}
	}
	f.node.truncate(int(size))
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	if err := f.checkLocked("stat"); err != nil {
		return 0, err
	}
	return int64(f.node.size), nil
}

func (f *memFile) Close() error {
	ferr := f.fs.fault(OpClose, f.path)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.path, Err: fs.ErrClosed}
	}
	f.closed = true // like close(2), the handle is gone even when close fails
	return ferr
}
