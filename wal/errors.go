package wal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (test
// with errors.Is) together with the underlying cause where there is one.
var (
	// ErrCorrupt reports data on disk that fails verification: a bad segment
	// header, a frame whose checksum does not match in the middle of the log,
	// or a frame that breaks the index order. The wrapping error is a
	// *CorruptionError naming the file and byte offset.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrNotFound reports an index that is not in the log (never written, in
	// a gap, or already truncated).
	ErrNotFound = errors.New("wal: entry not found")
	// ErrOutOfOrder reports an Append whose indexes are not strictly greater
	// than every index already written.
	ErrOutOfOrder = errors.New("wal: index out of order")
	// ErrClosed reports use of a closed WAL.
	ErrClosed = errors.New("wal: closed")
	// ErrFailed reports that the instance hit an unrecoverable I/O error (an
	// fsync failed, or a failed write could not be rolled back). Every later
	// write or sync returns an error wrapping ErrFailed and the original
	// cause; the data written since the last successful fsync is in an
	// unknown state. Close the WAL and Open the directory again.
	ErrFailed = errors.New("wal: failed")
	// ErrEntryTooLarge reports an entry whose data exceeds MaxEntrySize.
	ErrEntryTooLarge = errors.New("wal: entry too large")
)

// CorruptionError locates corrupt data. It matches ErrCorrupt under
// errors.Is.
type CorruptionError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the bad header or frame
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

func corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptionError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
