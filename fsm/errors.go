package fsm

import (
	"errors"
	"fmt"
)

// Sentinel errors for business outcomes of Apply. Apply never returns them
// directly: it returns a *Result with a Code, and Result.Err converts the
// code into one of these (wrapped with the message) at the proposer.
var (
	ErrTopicExists      = errors.New("topic already exists")
	ErrTopicNotFound    = errors.New("topic not found")
	ErrPartitionInvalid = errors.New("partition does not exist")
	ErrStaleEpoch       = errors.New("stale partition leader epoch")
	ErrNotContiguous    = errors.New("segment does not continue the partition's flushed offset")
	ErrInvalidCommand   = errors.New("invalid command")
)

// Code is the outcome of applying one command.
type Code uint8

// Result codes. ONLY ADD TO THE END: codes are part of replicated results.
const (
	CodeOK Code = iota
	CodeTopicExists
	CodeTopicNotFound
	CodePartitionInvalid
	CodeStaleEpoch
	CodeNotContiguous
	CodeInvalid
)

var codeErrors = map[Code]error{
	CodeTopicExists:      ErrTopicExists,
	CodeTopicNotFound:    ErrTopicNotFound,
	CodePartitionInvalid: ErrPartitionInvalid,
	CodeStaleEpoch:       ErrStaleEpoch,
	CodeNotContiguous:    ErrNotContiguous,
	CodeInvalid:          ErrInvalidCommand,
}

// Result is what Apply returns for a command.
type Result struct {
	Code    Code
	Message string
	// TopicID is set by CreateTopic.
	TopicID uint64
	// BaseOffset and Count are set by AppendBatch: the batch holds offsets
	// [BaseOffset, BaseOffset+Count).
	BaseOffset int64
	Count      int32
	// Epoch is set by AssignLeader (the new epoch).
	Epoch uint64
	// Accepted is set by CommitSegment: one flag per entry.
	Accepted []bool
}

// Err converts a non-OK result into an error wrapping the code's sentinel.
func (r *Result) Err() error {
	if r == nil || r.Code == CodeOK {
		return nil
	}
	base, ok := codeErrors[r.Code]
	if !ok {
		base = ErrInvalidCommand
	}
	if r.Message == "" {
		return base
	}
	return fmt.Errorf("%w: %s", base, r.Message)
}

func fail(code Code, format string, args ...any) *Result {
	return &Result{Code: code, Message: fmt.Sprintf(format, args...)}
}
