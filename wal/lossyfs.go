package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// NewLossyFS returns an FS over base that holds every file's written bytes
// in process memory until the file is synced: Write, and Truncate past
// the synced size, change only an in-memory tail; File.Sync writes the tail
// to base and syncs it there. Reads, Size and later opens of the same path
// see the buffered bytes, so the process behaves as on a normal disk, but a
// SIGKILL (or any process death) loses every write that was not synced —
// which a real kernel's page cache would keep. The jepsen harness runs
// agents on it (STREAMHOUSE_UNSAFE_WAL_FS=lossy) to prove that nothing
// acknowledged depends on unsynced WAL writes.
//
// Namespace operations (create, rename, remove, MkdirAll, SyncDir) and a
// Truncate below the synced size go to base at once. Bytes buffered for a
// path move with Rename and are dropped by Remove. A non-append write into
// the already-synced part of a file is supported (the tail then starts
// there; Sync cuts base back to it and appends), which the WAL never does.
//
// Never use it outside fault-injection runs. It is safe for concurrent use.
func NewLossyFS(base FS) FS {
	return &lossyFS{base: base, nodes: map[string]*lossyNode{}}
}

type lossyFS struct {
	base FS

	mu    sync.Mutex
	nodes map[string]*lossyNode // by cleaned path: files with unsynced bytes or open handles
}

// lossyNode is the in-memory state of one file. Its content is base's
// first from bytes followed by tail (when dirty); when clean it is base's
// content.
type lossyNode struct {
	mu    sync.Mutex
	path  string // current path (Rename updates it)
	dirty bool
	from  int64
	tail  []byte
	refs  int // open handles
}

func (l *lossyFS) node(name string) *lossyNode {
	name = filepath.Clean(name)
	n := l.nodes[name]
	if n == nil {
		n = &lossyNode{path: name}
		l.nodes[name] = n
	}
	return n
}

// release drops a node that has no handles and nothing buffered. l.mu held.
func (l *lossyFS) release(n *lossyNode) {
	n.mu.Lock()
	idle := n.refs == 0 && !n.dirty
	n.mu.Unlock()
	if idle && l.nodes[n.path] == n {
		delete(l.nodes, n.path)
	}
}

// OpenFile opens name on base (always with O_APPEND added when writable,
// because the buffered tail is appended on Sync) and returns a handle on
// the file's buffered view.
func (l *lossyFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	bflag := flag
	if writable {
		bflag |= os.O_APPEND
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := l.base.OpenFile(name, bflag, perm)
	if err != nil {
		return nil, err
	}
	n := l.node(name)
	n.mu.Lock()
	defer n.mu.Unlock()
	if flag&os.O_TRUNC != 0 {
		n.dirty, n.from, n.tail = false, 0, nil
	}
	n.refs++
	h := &lossyFile{fs: l, n: n, f: f, writable: writable, append: flag&os.O_APPEND != 0}
	return h, nil
}

// Remove removes name from base and drops its buffered bytes.
func (l *lossyFS) Remove(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.base.Remove(name); err != nil {
		return err
	}
	if n := l.nodes[filepath.Clean(name)]; n != nil {
		n.mu.Lock()
		n.dirty, n.from, n.tail = false, 0, nil
		n.path = "" // open handles keep working on their own bytes
		n.mu.Unlock()
		delete(l.nodes, filepath.Clean(name))
	}
	return nil
}

// Rename renames on base; the buffered bytes follow the file.
func (l *lossyFS) Rename(oldpath, newpath string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.base.Rename(oldpath, newpath); err != nil {
		return err
	}
	oldpath, newpath = filepath.Clean(oldpath), filepath.Clean(newpath)
	if oldpath == newpath {
		return nil
	}
	if victim := l.nodes[newpath]; victim != nil {
		victim.mu.Lock()
		victim.dirty, victim.from, victim.tail, victim.path = false, 0, nil, ""
		victim.mu.Unlock()
		delete(l.nodes, newpath)
	}
	if n := l.nodes[oldpath]; n != nil {
		delete(l.nodes, oldpath)
		n.mu.Lock()
		n.path = newpath
		n.mu.Unlock()
		l.nodes[newpath] = n
	}
	return nil
}

// MkdirAll creates directories on base.
func (l *lossyFS) MkdirAll(path string, perm os.FileMode) error { return l.base.MkdirAll(path, perm) }

// ReadDir lists base.
func (l *lossyFS) ReadDir(dir string) ([]string, error) { return l.base.ReadDir(dir) }

// SyncDir syncs the directory on base (file contents are not synced).
func (l *lossyFS) SyncDir(dir string) error { return l.base.SyncDir(dir) }

type lossyFile struct {
	fs       *lossyFS
	n        *lossyNode
	f        File
	writable bool
	append   bool

	mu     sync.Mutex // pos and closed
	pos    int64      // write position of a non-append handle
	closed bool
}

var errLossyClosed = errors.New("wal: lossy file already closed")

// size returns the logical size. n.mu held.
func (h *lossyFile) sizeLocked() (int64, error) {
	if h.n.dirty {
		return h.n.from + int64(len(h.n.tail)), nil
	}
	return h.f.Size()
}

// makeDirty starts a tail at from (<= base size), copying base's bytes
// in [from, base size) into it. n.mu held.
func (h *lossyFile) makeDirtyAt(from int64) error {
	bsize, err := h.f.Size()
	if err != nil {
		return err
	}
	if h.n.dirty {
		if from >= h.n.from {
			return nil
		}
		// Pull base bytes [from, n.from) in front of the tail.
		pre := make([]byte, h.n.from-from)
		if _, err := h.f.ReadAt(pre, from); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		h.n.tail = append(pre, h.n.tail...)
		h.n.from = from
		return nil
	}
	from = min(from, bsize)
	tail := make([]byte, bsize-from)
	if len(tail) > 0 {
		if _, err := h.f.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	h.n.dirty, h.n.from, h.n.tail = true, from, tail
	return nil
}

// lockOpen takes the handle's lock, then its node's; it fails on a closed
// handle. unlock releases both.
func (h *lossyFile) lockOpen() (unlock func(), err error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errLossyClosed
	}
	h.n.mu.Lock()
	return func() { h.n.mu.Unlock(); h.mu.Unlock() }, nil
}

func (h *lossyFile) Write(p []byte) (int, error) {
	unlock, err := h.lockOpen()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if !h.writable {
		return 0, &os.PathError{Op: "write", Path: h.n.path, Err: errors.New("file not open for writing")}
	}
	size, err := h.sizeLocked()
	if err != nil {
		return 0, err
	}
	at := size
	if !h.append {
		at = h.pos
	}
	if err := h.makeDirtyAt(min(at, size)); err != nil {
		return 0, err
	}
	rel := at - h.n.from
	if need := rel + int64(len(p)); need > int64(len(h.n.tail)) {
		h.n.tail = append(h.n.tail, make([]byte, need-int64(len(h.n.tail)))...)
	}
	copy(h.n.tail[rel:], p)
	h.pos = at + int64(len(p))
	return len(p), nil
}

func (h *lossyFile) ReadAt(p []byte, off int64) (int, error) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if !h.n.dirty {
		return h.f.ReadAt(p, off)
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: h.n.path, Err: errors.New("negative offset")}
	}
	end := h.n.from + int64(len(h.n.tail))
	read := 0
	if off < h.n.from {
		k := min(int64(len(p)), h.n.from-off)
		n, err := h.f.ReadAt(p[:k], off)
		read += n
		if err != nil && !errors.Is(err, io.EOF) {
			return read, err
		}
		if int64(n) < k {
			return read, io.EOF
		}
		off += k
	}
	if read < len(p) {
		if off >= end {
			return read, io.EOF
		}
		n := copy(p[read:], h.n.tail[off-h.n.from:])
		read += n
	}
	if read < len(p) {
		return read, io.EOF
	}
	return read, nil
}

// Sync writes the buffered tail to base and syncs it.
func (h *lossyFile) Sync() error {
	unlock, err := h.lockOpen()
	if err != nil {
		return err
	}
	defer unlock()
	if h.n.dirty {
		f := h.f
		if !h.writable {
			if h.n.path == "" {
				return fmt.Errorf("wal: lossy sync of a removed file")
			}
			wf, err := h.fs.base.OpenFile(h.n.path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer wf.Close()
			f = wf
		}
		bsize, err := f.Size()
		if err != nil {
			return err
		}
		if bsize != h.n.from {
			if err := f.Truncate(h.n.from); err != nil {
				return err
			}
		}
		for len(h.n.tail) > 0 {
			n, err := f.Write(h.n.tail)
			h.n.from += int64(n)
			h.n.tail = h.n.tail[n:]
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrShortWrite
			}
		}
		h.n.dirty, h.n.tail = false, nil
	}
	return h.f.Sync()
}

func (h *lossyFile) Truncate(size int64) error {
	unlock, err := h.lockOpen()
	if err != nil {
		return err
	}
	defer unlock()
	if h.n.dirty && size >= h.n.from {
		rel := size - h.n.from
		if rel <= int64(len(h.n.tail)) {
			h.n.tail = h.n.tail[:rel]
		} else {
			h.n.tail = append(h.n.tail, make([]byte, rel-int64(len(h.n.tail)))...)
		}
		return nil
	}
	bsize, err := h.f.Size()
	if err != nil {
		return err
	}
	if !h.n.dirty && size > bsize {
		// Growing: buffered like a write of zeros.
		if err := h.makeDirtyAt(bsize); err != nil {
			return err
		}
		h.n.tail = append(h.n.tail, make([]byte, size-bsize)...)
		return nil
	}
	h.n.dirty, h.n.from, h.n.tail = false, 0, nil
	return h.f.Truncate(size)
}

func (h *lossyFile) Size() (int64, error) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	return h.sizeLocked()
}

// Close closes the base handle. Buffered bytes stay in memory (readable by
// later opens) until a Sync writes them or the process dies.
func (h *lossyFile) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errLossyClosed
	}
	h.closed = true
	h.mu.Unlock()
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	h.n.mu.Lock()
	h.n.refs--
	h.n.mu.Unlock()
	h.fs.release(h.n)
	return h.f.Close()
}
