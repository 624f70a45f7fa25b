package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
)

// Op says whether a request changes state; it decides how timeouts and
// unavailability are worded (invariant 5: a client must be able to tell a
// write that definitely failed from one whose outcome is unknown).
type Op int

const (
	OpRead Op = iota
	OpWrite
)

// ErrRequestTooLarge: the records of one request exceed the request limit.
var ErrRequestTooLarge = errors.New("request too large")

// ErrorKind is one row of the error table: an error code and what it is on
// each public protocol.
type ErrorKind struct {
	// Code is the REST error "code", the gRPC ErrorDetail.code and the
	// kind label of streamhouse_errors_total.
	Code       string
	HTTPStatus int
	GRPCCode   codes.Code
	// RetryAfter: REST answers carry a Retry-After header.
	RetryAfter bool
	// GRPCHint is appended to the gRPC message: the call a gRPC client
	// makes next (REST.md says it for REST clients).
	GRPCHint string
}

// errorKinds is the error table. Where more than one gRPC code would fit:
//   - a record over the agent's record limit is INVALID_ARGUMENT (the record
//     itself is bad: retrying never helps), while a request over the request
//     limit is RESOURCE_EXHAUSTED (split it; gRPC answers an over-limit
//     message the same way before it reaches the handler);
//   - the idempotent-producer errors are FAILED_PRECONDITION: the producer's
//     session is not in the state the request needs and it must call
//     InitProducer (or resend in order), not blindly retry;
//   - backpressure is unavailable → UNAVAILABLE ("not written, retry
//     later"), which gRPC clients retry, rather than RESOURCE_EXHAUSTED;
//   - a timeout or cancellation keeps the gRPC code of its cause
//     (DEADLINE_EXCEEDED or CANCELED) whatever its kind (see Failure.GRPC).
var errorKinds = []ErrorKind{
	{Code: CodeBadRequest, HTTPStatus: http.StatusBadRequest, GRPCCode: codes.InvalidArgument},
	{Code: CodeNotFound, HTTPStatus: http.StatusNotFound, GRPCCode: codes.NotFound},
	{Code: CodeMethodNotAllowed, HTTPStatus: http.StatusMethodNotAllowed, GRPCCode: codes.Unimplemented},
	{Code: CodeTopicExists, HTTPStatus: http.StatusConflict, GRPCCode: codes.AlreadyExists},
	{Code: CodeLimitExceeded, HTTPStatus: http.StatusConflict, GRPCCode: codes.ResourceExhausted},
	{Code: CodeQuotaExceeded, HTTPStatus: http.StatusTooManyRequests, GRPCCode: codes.ResourceExhausted, RetryAfter: true},
	{Code: CodeRecordTooLarge, HTTPStatus: http.StatusRequestEntityTooLarge, GRPCCode: codes.InvalidArgument},
	{Code: CodeRequestTooLarge, HTTPStatus: http.StatusRequestEntityTooLarge, GRPCCode: codes.ResourceExhausted},
	{Code: CodeOffsetOutOfRange, HTTPStatus: http.StatusRequestedRangeNotSatisfiable, GRPCCode: codes.OutOfRange},
	{Code: CodeInternal, HTTPStatus: http.StatusInternalServerError, GRPCCode: codes.Internal},
	{Code: CodeUnavailable, HTTPStatus: http.StatusServiceUnavailable, GRPCCode: codes.Unavailable, RetryAfter: true},
	{Code: CodeOutcomeUnknown, HTTPStatus: http.StatusGatewayTimeout, GRPCCode: codes.Unknown},
	{Code: CodeTimeout, HTTPStatus: http.StatusGatewayTimeout, GRPCCode: codes.DeadlineExceeded},
	{Code: CodeProducerFenced, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; this producer session is over: call InitProducer for a new epoch"},
	{Code: CodeUnknownProducer, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; call InitProducer for a producer id"},
	{Code: CodeOutOfOrderSequence, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; resend the batches in sequence order, or call InitProducer to start over"},
	{Code: CodeUnauthenticated, HTTPStatus: http.StatusUnauthorized, GRPCCode: codes.Unauthenticated},
	{Code: CodePermissionDenied, HTTPStatus: http.StatusForbidden, GRPCCode: codes.PermissionDenied},
	{Code: CodeNotCoordinator, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; send group calls to the coordinator (the Raft leader, ErrorDetail.coordinator)"},
	{Code: CodeUnknownMember, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; join the group again without a member id"},
	{Code: CodeIllegalGeneration, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; rejoin the group (JoinGroup) for the current generation"},
	{Code: CodeRebalanceInProgress, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition,
		GRPCHint: "; rejoin the group (JoinGroup)"},
	{Code: CodeInconsistentProtocol, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition},
	{Code: CodeGroupNotEmpty, HTTPStatus: http.StatusConflict, GRPCCode: codes.FailedPrecondition},
}

// ErrorCodes returns every error code of the table, in table order.
func ErrorCodes() []string {
	out := make([]string, len(errorKinds))
	for i, k := range errorKinds {
		out[i] = k.Code
	}
	return out
}

// Kind returns the row of an error code (internal's for an unknown one).
func Kind(code string) ErrorKind {
	for _, k := range errorKinds {
		if k.Code == code {
			return k
		}
	}
	return Kind(CodeInternal)
}

// Failure is an error as a client sees it: its kind and public message,
// with what a protocol may add.
type Failure struct {
	ErrorKind
	// Message is the public text (REST's wording; see GRPC). It never
	// carries the text of an unclassified error, which may hold internals.
	Message string
	// Range is the valid offset range of offset_out_of_range, when known.
	Range *fsm.OffsetOutOfRangeError
	// RetryIn is when a quota_exceeded request may be sent again.
	RetryIn time.Duration
	// Cause is context.Canceled or context.DeadlineExceeded when the
	// request's own deadline or cancellation ended it.
	Cause error
}

// Fixed public messages.
const (
	msgOutcomeUnknown  = "outcome unknown: the write may or may not have been applied; read back before retrying, or retry only if a duplicate is acceptable"
	msgUnavailableRead = "unavailable: the agent cannot serve this request right now; nothing was changed and it is safe to retry"
	msgUnavailable     = "unavailable: the write was NOT applied and is safe to retry"
	msgInternal        = "internal error while handling the request; see the agent log"
	// msgFailedAfterProposal never carries the error's text (it may hold
	// internals).
	msgFailedAfterProposal = "outcome unknown: the agent failed while handling the write (see its log); it may or may not have been applied"
)

// Classify maps an error from the agent (or a handler) to its Failure. It is
// the only place that does so, for REST, gRPC and the peer RPC. Order matters
// where an error could wrap several sentinels: "outcome unknown" wins over
// everything, because telling a client that a write which may have been
// applied definitely failed invites duplicates.
func Classify(op Op, err error) Failure {
	var oor *fsm.OffsetOutOfRangeError
	var qe *QuotaError
	switch {
	case errors.As(err, &qe):
		f := failure(CodeQuotaExceeded, err.Error())
		f.RetryIn = qe.RetryAfter
		return f
	case errors.Is(err, ErrUnauthenticated):
		return failure(CodeUnauthenticated, err.Error())
	case errors.Is(err, ErrPermissionDenied), errors.Is(err, fsm.ErrProducerNotOwned):
		return failure(CodePermissionDenied, err.Error())
	case errors.Is(err, fsm.ErrOutcomeUnknown):
		return failure(CodeOutcomeUnknown, msgOutcomeUnknown+detail(err, fsm.ErrOutcomeUnknown))
	case errors.As(err, &oor):
		f := failure(CodeOffsetOutOfRange, fmt.Sprintf("offset %d is out of range: valid offsets are %d (low watermark) through %d (high watermark: the next offset to be written, where a read waits for new records)",
			oor.Requested, oor.LowWatermark, oor.HighWatermark))
		f.Range = oor
		return f
	}
	for _, s := range sentinelKinds {
		if errors.Is(err, s.err) {
			return failure(s.code, err.Error())
		}
	}
	switch {
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, fsm.ErrNotLeader):
		return Unavailable(op, detail(err, fsm.ErrUnavailable))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return timedOut(op, err)
	}
	var pw proposedError
	if op == OpWrite && errors.As(err, &pw) {
		return failure(CodeOutcomeUnknown, msgFailedAfterProposal)
	}
	return failure(CodeInternal, msgInternal)
}

// proposedError is the error of a write that may have been proposed.
type proposedError struct{ err error }

func (e proposedError) Error() string { return e.err.Error() }
func (e proposedError) Unwrap() error { return e.err }

// AfterProposal marks err as the error of a write that may have been
// proposed already (a produce): Classify answers an unclassified one as
// outcome unknown rather than internal, because a client takes "internal"
// for "not written" and a retry could then duplicate the records or, with
// an idempotent producer's sequence given back, lose the next batch. A
// classified error keeps its kind. Nil stays nil.
func AfterProposal(err error) error {
	if err == nil {
		return nil
	}
	return proposedError{err}
}

// sentinelKinds are the errors whose own text is the public message, in
// the order Classify tries them.
var sentinelKinds = []struct {
	err  error
	code string
}{
	{fsm.ErrOffsetOutOfRange, CodeOffsetOutOfRange},
	{fsm.ErrRecordTooLarge, CodeRecordTooLarge},
	{ErrRequestTooLarge, CodeRequestTooLarge},
	{fsm.ErrInvalidArgument, CodeBadRequest},
	{fsm.ErrInvalidCommand, CodeBadRequest},
	{fsm.ErrTopicNotFound, CodeNotFound},
	{fsm.ErrPartitionInvalid, CodeNotFound},
	{fsm.ErrGroupNotFound, CodeNotFound},
	{fsm.ErrTopicExists, CodeTopicExists},
	{fsm.ErrLimitExceeded, CodeLimitExceeded},
	{fsm.ErrProducerFenced, CodeProducerFenced},
	{fsm.ErrUnknownProducer, CodeUnknownProducer},
	{fsm.ErrOutOfOrderSequence, CodeOutOfOrderSequence},
	{fsm.ErrNotCoordinator, CodeNotCoordinator},
	{fsm.ErrUnknownMember, CodeUnknownMember},
	{fsm.ErrMemberIDRequired, CodeUnknownMember},
	{fsm.ErrIllegalGeneration, CodeIllegalGeneration},
	{fsm.ErrRebalanceInProgress, CodeRebalanceInProgress},
	{fsm.ErrInconsistentProtocol, CodeInconsistentProtocol},
	{fsm.ErrGroupNotEmpty, CodeGroupNotEmpty},
}

// failure is a Failure of kind code; long quoted input in msg is clipped.
func failure(code, msg string) Failure {
	return Failure{ErrorKind: Kind(code), Message: clipQuoted(msg)}
}

// Unavailable is the failure of a request that was definitely not applied
// and may be retried; suffix is appended to the message.
func Unavailable(op Op, suffix string) Failure {
	if op == OpRead {
		return failure(CodeUnavailable, msgUnavailableRead+suffix)
	}
	return failure(CodeUnavailable, msgUnavailable+suffix)
}

// timedOut: a write whose request ended while it was in flight may have
// been applied; a read changed nothing.
func timedOut(op Op, cause error) Failure {
	var f Failure
	if op == OpWrite {
		f = failure(CodeOutcomeUnknown, "outcome unknown: the request timed out or was canceled while the write was in flight; it may or may not have been applied")
	} else {
		f = failure(CodeTimeout, "the read timed out or was canceled before it completed; nothing was changed, retry")
	}
	f.Cause = cause
	return f
}

// GRPC returns the gRPC status code and message of f. A timeout keeps the
// code of its cause and says which one it was.
func (f Failure) GRPC() (codes.Code, string) {
	if f.Cause == nil {
		return f.GRPCCode, f.Message + f.GRPCHint
	}
	code, what := codes.DeadlineExceeded, "the deadline expired"
	if errors.Is(f.Cause, context.Canceled) {
		code, what = codes.Canceled, "the call was canceled"
	}
	if f.Code == CodeOutcomeUnknown {
		return code, "outcome unknown: " + what + " while the write was in flight; it may or may not have been applied"
	}
	return code, what + " before the read completed; nothing was changed, retry"
}

// detail returns err's text without the sentinel's own text (which the
// response message already paraphrases), as " (detail)" or "".
func detail(err, sentinel error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, sentinel.Error())
	s = strings.TrimPrefix(s, ": ")
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
