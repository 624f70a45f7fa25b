package s3seg

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test for them with errors.Is; the errors returned by
// this package wrap them with context (object key, block position, ...).
var (
	// ErrCorrupt reports a segment object, footer or block that fails a
	// checksum, a structural check, or does not match its index entry.
	// Decoders never return records together with this error.
	ErrCorrupt = errors.New("s3seg: corrupt segment data")

	// ErrUnsupportedVersion reports a well-formed footer (valid magic and
	// checksum) whose format version this build cannot read.
	ErrUnsupportedVersion = errors.New("s3seg: unsupported segment format version")

	// ErrShortTail reports that the bytes given to DecodeFooterTail do not
	// contain the whole footer. The returned error is a *ShortTailError that
	// carries the number of trailing bytes needed.
	ErrShortTail = errors.New("s3seg: footer tail too short")

	// ErrInvalidBatch reports input that Encoder.Encode refuses: an empty
	// batch, non-dense offsets, an unknown compression, an oversized block...
	ErrInvalidBatch = errors.New("s3seg: invalid partition batch")

	// ErrUnknownCompression reports a compression name or code this package
	// does not know.
	ErrUnknownCompression = errors.New("s3seg: unknown compression")

	// ErrNotFound reports a missing object.
	ErrNotFound = errors.New("s3seg: object not found")

	// ErrExists reports a Put to a key that already holds an object. Objects
	// are never overwritten.
	ErrExists = errors.New("s3seg: object already exists")

	// ErrInvalidKey reports an object key that ValidateKey rejects.
	ErrInvalidKey = errors.New("s3seg: invalid object key")

	// ErrInvalidRange reports a GetRange whose range is empty, negative or
	// not inside the object.
	ErrInvalidRange = errors.New("s3seg: invalid byte range")

	// ErrBucketNotFound reports that the configured S3 bucket does not
	// exist (S3Store.Check, or any S3Store call answered with NoSuchBucket).
	ErrBucketNotFound = errors.New("s3seg: bucket does not exist")

	// ErrAccessDenied reports that S3 refused the request's credentials or
	// permissions (HTTP 403: invalid access key, wrong secret key, missing
	// policy), or that no credentials could be obtained at all.
	ErrAccessDenied = errors.New("s3seg: access denied")

	// ErrUnreachable reports that the request could not be sent or no
	// response arrived in time: nothing listening, DNS failure, network
	// partition, or a server that does not answer within the request
	// timeout. The outcome of a Put that fails this way is unknown.
	ErrUnreachable = errors.New("s3seg: object store unreachable")
)

// ShortTailError is returned by DecodeFooterTail when the tail it was given is
// shorter than the footer plus trailer. Need is the number of trailing bytes of
// the object that must be supplied; it never exceeds the object size.
// errors.Is(err, ErrShortTail) is true for it.
type ShortTailError struct {
	Have int64 // bytes supplied
	Need int64 // bytes needed
}

func (e *ShortTailError) Error() string {
	return fmt.Sprintf("%v: have %d bytes, need the last %d bytes of the object", ErrShortTail, e.Have, e.Need)
}

// Is makes errors.Is(err, ErrShortTail) true.
func (e *ShortTailError) Is(target error) bool { return target == ErrShortTail }

// corruptf returns an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// invalidf returns an error wrapping ErrInvalidBatch.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidBatch, fmt.Sprintf(format, args...))
}
