package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// Sentinel errors of the client.
var (
	// ErrClosed: the Client, Producer or Consumer is closed.
	ErrClosed = errors.New("client: closed")
	// ErrFenced: another session bumped the epoch of the producer's id
	// (InitProducer with the same id). The producer cannot send any more;
	// create a new one. errors.Is(err, ErrFenced) matches the agent's
	// producer_fenced answers.
	ErrFenced = errors.New("producer fenced: another session owns this producer id with a newer epoch")
	// ErrNoGroup: Commit on a consumer without a group.
	ErrNoGroup = errors.New("client: the consumer has no group")
)

// Error kinds (ErrorDetail.code) the agent sends; they are the REST API's
// error codes plus the idempotent-producer ones.
const (
	KindBadRequest         = "bad_request"
	KindNotFound           = "not_found"
	KindTopicExists        = "topic_exists"
	KindLimitExceeded      = "limit_exceeded" // MAX_TOPICS or MAX_PARTITIONS reached
	KindRecordTooLarge     = "record_too_large"
	KindRequestTooLarge    = "request_too_large"
	KindOffsetOutOfRange   = "offset_out_of_range"
	KindQuotaExceeded      = "quota_exceeded"
	KindInternal           = "internal"
	KindUnavailable        = "unavailable"
	KindOutcomeUnknown     = "outcome_unknown"
	KindTimeout            = "timeout"
	KindProducerFenced     = "producer_fenced"
	KindUnknownProducer    = "unknown_producer"
	KindOutOfOrderSequence = "out_of_order_sequence"
	KindUnauthenticated    = "unauthenticated"   // no API key, or an unknown one
	KindPermissionDenied   = "permission_denied" // the key lacks the scope or the topic
	// Consumer-group membership (FAILED_PRECONDITION).
	KindNotCoordinator       = "not_coordinator"       // Error.Coordinator names the coordinator
	KindUnknownMember        = "unknown_member"        // join again without a member id
	KindIllegalGeneration    = "illegal_generation"    // the group moved on: rejoin
	KindRebalanceInProgress  = "rebalance_in_progress" // rejoin
	KindInconsistentProtocol = "inconsistent_protocol"
	KindGroupNotEmpty        = "group_not_empty"
)

// Error is a failed call: the RPC (Op), the gRPC status code, the agent's
// error kind and message. For offset_out_of_range the valid range is set.
// It implements GRPCStatus, so status.Code(err) and status.FromError(err)
// work on it and on errors wrapping it.
type Error struct {
	Op      string     // the RPC or client operation, e.g. "CreateTopic"
	Code    codes.Code // gRPC status code
	Kind    string     // ErrorDetail.code ("" when the agent sent none)
	Message string     // the agent's message

	// Set for offset_out_of_range.
	RequestedOffset, LowWatermark, HighWatermark *int64
	// Coordinator is set for not_coordinator: the group coordinator's gRPC
	// address ("" when the agent did not know it).
	Coordinator string

	st *status.Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.Op, e.Message, CodeWord(e.Code))
}

// GRPCStatus returns the status the error came from.
func (e *Error) GRPCStatus() *status.Status {
	if e.st == nil {
		return status.New(e.Code, e.Message)
	}
	return e.st
}

// Is makes errors.Is(err, ErrFenced) true for the agent's producer_fenced
// answer.
func (e *Error) Is(target error) bool {
	return target == ErrFenced && e.Kind == KindProducerFenced
}

// wrapErr turns the error of an RPC into an *Error (nil stays nil; errors
// that are not statuses, e.g. ErrClosed, are returned as they are).
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		default:
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	e := &Error{Op: op, Code: st.Code(), Message: st.Message(), st: st}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			e.Kind = ed.GetCode()
			e.RequestedOffset, e.LowWatermark, e.HighWatermark = ed.RequestedOffset, ed.LowWatermark, ed.HighWatermark
			e.Coordinator = ed.GetCoordinator()
		}
	}
	return e
}

// newError builds a client-side *Error (a check the client makes before
// sending anything).
func newError(op string, code codes.Code, kind, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Op: op, Code: code, Kind: kind, Message: msg, st: status.New(code, msg)}
}

// Code returns the gRPC status code of err: codes.OK for nil, the status's
// code for an error carrying one, DeadlineExceeded/Canceled for context
// errors, and codes.Unknown otherwise.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

// Kind returns the agent's error kind (ErrorDetail.code) of err, or "".
func Kind(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// hasStatus reports whether err carries a gRPC status or is a context error
// (as opposed to a client-side error such as ErrClosed).
func hasStatus(err error) bool {
	if _, ok := status.FromError(err); ok {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// IsRetriable reports whether err is UNAVAILABLE: a read can be retried as
// is (possibly on another agent), and so can a write when the agent said so
// (Kind "unavailable": definitely not applied); a write's UNAVAILABLE
// without a kind came from gRPC or a proxy and its outcome is unknown.
func IsRetriable(err error) bool {
	return err != nil && hasStatus(err) && Code(err) == codes.Unavailable
}

// IsOutcomeUnknown reports whether err is UNKNOWN or DEADLINE_EXCEEDED: a
// write may or may not have been applied. Only an idempotent write can be
// retried safely after it.
func IsOutcomeUnknown(err error) bool {
	if err == nil || !hasStatus(err) {
		return false
	}
	c := Code(err)
	return c == codes.Unknown || c == codes.DeadlineExceeded
}

// codeWords are short human wordings of status codes.
var codeWords = map[codes.Code]string{
	codes.NotFound:           "not found",
	codes.AlreadyExists:      "already exists",
	codes.InvalidArgument:    "invalid argument",
	codes.OutOfRange:         "offset out of range",
	codes.FailedPrecondition: "failed precondition",
	codes.Unavailable:        "unavailable",
	codes.Unknown:            "outcome unknown",
	codes.DeadlineExceeded:   "deadline exceeded",
	codes.ResourceExhausted:  "too large or over a cluster limit",
	codes.Canceled:           "canceled",
	codes.Unimplemented:      "not implemented by the agent",
	codes.Internal:           "internal error",
	codes.Unauthenticated:    "unauthenticated",
	codes.PermissionDenied:   "permission denied",
}

// CodeWord is a short human wording of a status code, or the code's name
// (c.String()) when it has none.
func CodeWord(c codes.Code) string {
	if w, ok := codeWords[c]; ok {
		return w
	}
	return c.String()
}
