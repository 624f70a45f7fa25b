package s3seg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// ObjectStore is the object storage the segment layer needs. Implementations
// (LocalStore, S3Store) must pass
// s3segtest.RunObjectStoreSuite. All methods are safe for concurrent use.
//
// Keys are validated with ValidateKey; an invalid key gives ErrInvalidKey.
// Objects are immutable: Put never replaces an existing object.
type ObjectStore interface {
	// Put stores data under key, atomically: readers see either no object
	// or all of data. If key already holds an object, Put returns ErrExists
	// and leaves it untouched, also when two Puts race. Put does not retain
	// data.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the whole object, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns exactly n bytes starting at off. n must be positive
	// and [off, off+n) inside the object, else ErrInvalidRange; a missing
	// object gives ErrNotFound.
	GetRange(ctx context.Context, key string, off, n int64) ([]byte, error)
	// Head returns the object's size and modification time, or ErrNotFound.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every object whose key starts with prefix (a plain string
	// prefix, as in S3, not a path prefix), sorted by key. No match is an
	// empty result, not an error.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Check reports whether the store is reachable and usable (the bucket
	// or directory exists). It backs readiness probes.
	Check(ctx context.Context) error
}

// MaxKeyLength is the longest accepted object key, in bytes (S3's limit).
const MaxKeyLength = 1024

// ValidateKey reports whether key is acceptable to every ObjectStore. A key
// is 1..MaxKeyLength bytes of valid UTF-8 without control characters or
// backslashes, made of '/'-separated segments that are non-empty, not "."
// or "..", and do not start with '.' (names starting with '.' are reserved
// for store-internal files such as LocalStore's temporary files). So a key
// never starts or ends with '/' and never contains "//". The error wraps
// ErrInvalidKey.
func ValidateKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	if key == "" {
		return bad("empty")
	}
	if len(key) > MaxKeyLength {
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLength))
	}
	if !utf8.ValidString(key) {
		return bad("not valid UTF-8")
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return bad("control character or backslash")
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty path segment (leading, trailing or double '/')")
		case seg[0] == '.':
			return bad("path segment starts with '.'")
		}
	}
	return nil
}

// SegmentKeyPrefix is the prefix of every key ObjectKey generates.
const SegmentKeyPrefix = "segments/"

// ObjectKey returns a new, never reused key for a segment object uploaded by
// node nodeID in its leadership epoch epoch:
//
//	segments/<yyyy>/<mm>/<dd>/<node>-<epoch>-<16 hex digits>.seg
//
// The date is the current UTC date, so listings can be scoped by day; the
// suffix is 64 bits from crypto/rand, so two calls never collide in practice
// even for the same node and epoch. nodeID is sanitised: bytes outside
// [A-Za-z0-9_] become '_' and it is cut to 64 bytes.
func ObjectKey(nodeID string, epoch uint64) string {
	return ObjectKeyAt(nodeID, epoch, time.Now())
}

// ObjectKeyAt is ObjectKey with the date taken from t.
func ObjectKeyAt(nodeID string, epoch uint64, t time.Time) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand crashes the program instead)
	t = t.UTC()
	var b strings.Builder
	b.Grow(len(SegmentKeyPrefix) + 12 + 64 + 1 + 20 + 1 + 16 + 4)
	b.WriteString(SegmentKeyPrefix)
	b.WriteString(t.Format("2006/01/02"))
	b.WriteByte('/')
	b.WriteString(sanitizeNode(nodeID))
	b.WriteByte('-')
	b.WriteString(strconv.FormatUint(epoch, 10))
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(rnd[:]))
	b.WriteString(".seg")
	return b.String()
}

func sanitizeNode(id string) string {
	if id == "" {
		return "_"
	}
	if len(id) > 64 {
		id = id[:64]
	}
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
