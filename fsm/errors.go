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
	ErrGroupNotFound    = errors.New("consumer group not found")
	// ErrProducerFenced: a newer epoch of this producer id exists.
	ErrProducerFenced = errors.New("producer fenced by a newer epoch")
	// ErrUnknownProducer: the producer id was never issued or has expired.
	ErrUnknownProducer = errors.New("unknown producer id")
	// ErrOutOfOrderSequence: the batch's sequence is neither the next one
	// nor one of the producer's recent batches.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrSequenceGap is the ErrOutOfOrderSequence of a batch above the
	// next expected sequence: an earlier batch is missing and may still
	// arrive (it is in flight on another connection or agent), so the
	// client should resend this one as it is, not renumber it.
	ErrSequenceGap = fmt.Errorf("%w (a gap: an earlier batch is missing)", ErrOutOfOrderSequence)
	// ErrUploadExpired: a segment commit arrived after its object's
	// commit-by time; the object is left to garbage collection and the
	// records are flushed again in a new object.
	ErrUploadExpired = errors.New("segment upload expired before its commit")
	// ErrLimitExceeded: the command would take the cluster past one of its
	// configured totals (ClusterLimits).
	ErrLimitExceeded = errors.New("cluster limit exceeded")
	// ErrProducerNotOwned: the producer id was issued to another owner
	// (another API key); only its owner may bump its epoch.
	ErrProducerNotOwned = errors.New("producer id belongs to another owner")
	// ErrUnflushedLimit: the partition holds as many unflushed records as
	// its bound allows (segment uploads are behind). The batch was not
	// applied; it wraps ErrUnavailable, so retrying later is safe.
	ErrUnflushedLimit = fmt.Errorf("%w: unflushed record limit reached", ErrUnavailable)
	// ErrRetentionChanged: a TrimPartition asked to drop segments that the
	// topic's retention at apply time keeps (its config changed after the
	// trim point was computed). Nothing was trimmed; recompute.
	ErrRetentionChanged = errors.New("trim refused: the topic's current retention keeps these segments")
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
	CodeGroupNotFound
	CodeProducerFenced
	CodeUnknownProducer
	CodeOutOfOrderSequence
	CodeUploadExpired
	// CodeNotApplied: this agent halted (shutting down while it waited for
	// local storage) before applying a committed entry. Local only, never
	// part of replicated state; the outcome is unknown to the proposer.
	CodeNotApplied
	CodeLimitExceeded
	CodeProducerNotOwned
	CodeUnflushedLimit
	CodeRetentionChanged
	CodeSequenceGap
)

var codeErrors = map[Code]error{
	CodeTopicExists:        ErrTopicExists,
	CodeTopicNotFound:      ErrTopicNotFound,
	CodePartitionInvalid:   ErrPartitionInvalid,
	CodeStaleEpoch:         ErrStaleEpoch,
	CodeNotContiguous:      ErrNotContiguous,
	CodeInvalid:            ErrInvalidCommand,
	CodeGroupNotFound:      ErrGroupNotFound,
	CodeProducerFenced:     ErrProducerFenced,
	CodeUnknownProducer:    ErrUnknownProducer,
	CodeOutOfOrderSequence: ErrOutOfOrderSequence,
	CodeUploadExpired:      ErrUploadExpired,
	CodeNotApplied:         ErrOutcomeUnknown,
	CodeLimitExceeded:      ErrLimitExceeded,
	CodeProducerNotOwned:   ErrProducerNotOwned,
	CodeUnflushedLimit:     ErrUnflushedLimit,
	CodeRetentionChanged:   ErrRetentionChanged,
	CodeSequenceGap:        ErrSequenceGap,
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
	// Duplicate is set by AppendBatch when an idempotent producer's batch
	// had already been appended: BaseOffset/Count are the original ones.
	Duplicate bool
	// Index is the Raft index of the command (set for every command).
	Index uint64
	// ProducerID and ProducerEpoch are set by InitProducer.
	ProducerID    uint64
	ProducerEpoch uint32
	// Batches is set by AppendBatches: each batch's own result, in order
	// (the entry's own Code is OK whatever they say).
	Batches []Result
	// BrokerID is set by RegisterBroker: the node's broker ID.
	BrokerID int32
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

// Write-outcome errors shared by every layer that proposes commands, so a
// client can be told whether retrying is safe (invariant 5).
var (
	// ErrUnavailable: the write was definitely not applied (no leader, not
	// the leader, shutting down before enqueue, backpressure). Safe to retry.
	ErrUnavailable = errors.New("unavailable: the write was not applied; retry")
	// ErrOutcomeUnknown: the write may or may not have been applied
	// (leadership lost after enqueue, timeout while waiting for commit).
	ErrOutcomeUnknown = errors.New("outcome unknown: the write may or may not have been applied")
)

// API-level errors shared by the read/write path and the transports.
var (
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrRecordTooLarge   = errors.New("record too large")
	ErrOffsetOutOfRange = errors.New("offset out of range")
	ErrNotLeader        = errors.New("this agent does not lead the partition")
)

// OffsetOutOfRangeError names the valid range for a read.
type OffsetOutOfRangeError struct {
	Requested     int64
	LowWatermark  int64 // first readable offset
	HighWatermark int64 // next offset to be written
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("offset %d out of range: valid offsets are %d to %d (high watermark %d)",
		e.Requested, e.LowWatermark, e.HighWatermark, e.HighWatermark)
}

// Unwrap makes errors.Is(err, ErrOffsetOutOfRange) true.
func (e *OffsetOutOfRangeError) Unwrap() error { return ErrOffsetOutOfRange }
