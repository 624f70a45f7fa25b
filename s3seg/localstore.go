package s3seg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// localTmpDir holds LocalStore's temporary files, under the store root. Its
// name starts with '.', which ValidateKey forbids, so it never collides with
// a key and List never reports it.
const localTmpDir = ".tmp"

// staleTempAge is the age after which NewLocalStore removes leftover
// temporary files (from a crash between write and link).
const staleTempAge = time.Hour

// LocalStore is an ObjectStore backed by a local directory: the key "a/b/c"
// is the file <dir>/a/b/c. It is the embedded default store and the store
// used by tests.
//
// Put writes a temporary file in <dir>/.tmp, fsyncs it, hard-links it to its
// final name (link fails if the name exists, so a racing Put cannot clobber
// an object) and fsyncs the directory; each directory's own entry is fsynced
// in its parent the first time this process uses it. The directory must be on
// a file system that supports hard links.
//
// Limitation compared with S3: a key cannot also be a directory of other
// keys ("a" and "a/b" cannot both exist); such a Put fails with ErrInvalidKey.
// Empty directories left by Delete are not removed.
type LocalStore struct {
	root   string
	tmp    string
	synced sync.Map // directory path -> struct{}: its entry in its parent is durable
}

var _ ObjectStore = (*LocalStore)(nil)

// NewLocalStore opens (creating if needed) a store rooted at dir and removes
// temporary files older than an hour left by an earlier crash.
func NewLocalStore(dir string) (*LocalStore, error) {
	if dir == "" {
		return nil, errors.New("s3seg: local store: empty directory")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("s3seg: local store: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("s3seg: local store: %w", err)
	}
	if err := syncDir(filepath.Dir(root)); err != nil {
		return nil, fmt.Errorf("s3seg: local store: %w", err)
	}
	s := &LocalStore{root: root, tmp: filepath.Join(root, localTmpDir)}
	if err := os.Mkdir(s.tmp, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("s3seg: local store: %w", err)
	}
	if err := syncDir(root); err != nil {
		return nil, fmt.Errorf("s3seg: local store: %w", err)
	}
	s.synced.Store(root, struct{}{})
	s.removeStaleTemps(time.Now().Add(-staleTempAge))
	return s, nil
}

// Dir returns the absolute root directory of the store.
func (s *LocalStore) Dir() string { return s.root }

func (s *LocalStore) removeStaleTemps(before time.Time) {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, de := range ents {
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(s.tmp, de.Name()))
		}
	}
}

func (s *LocalStore) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// maxNameLength is the longest file name common local file systems accept.
const maxNameLength = 255

func begin(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxNameLength {
			return fmt.Errorf("%w %q: path segment longer than %d bytes (local store limit)", ErrInvalidKey, key, maxNameLength)
		}
	}
	return ctx.Err()
}

// Put implements ObjectStore.
func (s *LocalStore) Put(ctx context.Context, key string, data []byte) error {
	if err := begin(ctx, key); err != nil {
		return err
	}
	final := s.path(key)
	dir := filepath.Dir(final)
	if err := s.ensureDir(key, dir); err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		return s.existsErr(key, final)
	}
	tmp, err := s.writeTemp(data)
	if err != nil {
		return fmt.Errorf("s3seg: local put %q: %w", key, err)
	}
	defer os.Remove(tmp)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.existsErr(key, final)
		}
		return fmt.Errorf("s3seg: local put %q: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("s3seg: local put %q: %w", key, err)
	}
	return nil
}

func (s *LocalStore) existsErr(key, final string) error {
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		return fmt.Errorf("%w %q: other keys exist below it (a local store cannot hold both)", ErrInvalidKey, key)
	}
	return fmt.Errorf("%w: %q", ErrExists, key)
}

func (s *LocalStore) writeTemp(data []byte) (name string, err error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return "", err
	}
	name = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(name)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if err = f.Chmod(0o644); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return name, nil
}

// ensureDir creates dir (below the root) and makes every directory entry on
// the way durable, fsyncing each parent once per process.
func (s *LocalStore) ensureDir(key, dir string) error {
	if _, ok := s.synced.Load(dir); ok {
		return nil
	}
	rel, err := filepath.Rel(s.root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur := s.root
	for _, seg := range strings.Split(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, seg)
		if _, ok := s.synced.Load(cur); ok {
			continue
		}
		if err := os.Mkdir(cur, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("s3seg: local put %q: %w", key, err)
			}
			fi, err := os.Stat(cur)
			if err != nil {
				return fmt.Errorf("s3seg: local put %q: %w", key, err)
			}
			if !fi.IsDir() {
				return fmt.Errorf("%w %q: a prefix of it is an existing key (a local store cannot hold both)", ErrInvalidKey, key)
			}
		}
		if err := syncDir(parent); err != nil {
			return fmt.Errorf("s3seg: local put %q: %w", key, err)
		}
		s.synced.Store(cur, struct{}{})
	}
	return nil
}

// open opens the object file; a missing file, a directory, or a path through
// a non-directory is ErrNotFound.
func (s *LocalStore) open(key string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, nil, s.mapErr(key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, s.mapErr(key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return f, fi, nil
}

func (s *LocalStore) mapErr(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return fmt.Errorf("s3seg: local store %q: %w", key, err)
}

// Get implements ObjectStore.
func (s *LocalStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.read(ctx, key, func(f *os.File, size int64) ([]byte, error) {
		buf := make([]byte, size)
		if _, err := io.ReadFull(f, buf); err != nil {
			return nil, fmt.Errorf("s3seg: local get %q: %w", key, err)
		}
		return buf, nil
	})
}

// GetRange implements ObjectStore.
func (s *LocalStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	return s.read(ctx, key, func(f *os.File, size int64) ([]byte, error) {
		if err := checkRange(off, n, size); err != nil {
			return nil, fmt.Errorf("%w (key %q)", err, key)
		}
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, fmt.Errorf("s3seg: local get range %q: %w", key, err)
		}
		return buf, nil
	})
}

// read opens the object of key and reads it with fn (given its size).
func (s *LocalStore) read(ctx context.Context, key string, fn func(f *os.File, size int64) ([]byte, error)) ([]byte, error) {
	if err := begin(ctx, key); err != nil {
		return nil, err
	}
	f, fi, err := s.open(key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return fn(f, fi.Size())
}

// checkRange validates [off, off+n) against an object of size bytes.
func checkRange(off, n, size int64) error {
	if off < 0 || n <= 0 || off > size || n > size-off {
		return fmt.Errorf("%w: [%d,+%d) of a %d-byte object", ErrInvalidRange, off, n, size)
	}
	return nil
}

// Head implements ObjectStore.
func (s *LocalStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	if err := begin(ctx, key); err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return ObjectInfo{}, s.mapErr(key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()}, nil
}

// Delete implements ObjectStore.
func (s *LocalStore) Delete(ctx context.Context, key string) error {
	if err := begin(ctx, key); err != nil {
		return err
	}
	p := s.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if err := s.mapErr(key, err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("s3seg: local delete %q: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a directory of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("s3seg: local delete %q: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("s3seg: local delete %q: %w", key, err)
	}
	return nil
}

// List implements ObjectStore.
func (s *LocalStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names completely. If that
	// directory part is not a valid key path, no valid key can match.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if ValidateKey(prefix[:i]) != nil {
			return nil, nil
		}
		start = s.path(prefix[:i])
	}
	var out []ObjectInfo
	n := 0
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil // start does not exist, or an entry vanished during the walk
			}
			return err
		}
		if p == s.root {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) || !d.Type().IsRegular() || ValidateKey(key) != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted during the walk
			}
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("s3seg: local list %q: %w", prefix, err)
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Check implements ObjectStore: the root and temporary directories exist.
func (s *LocalStore) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, d := range []string{s.root, s.tmp} {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("s3seg: local store: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("s3seg: local store: %s is not a directory", d)
		}
	}
	return nil
}

// syncDir fsyncs a directory so entries created or removed in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
