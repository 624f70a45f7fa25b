package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// errRequestTooLarge: the records of one request exceed the request limit
// (REST's 413 request_too_large).
var errRequestTooLarge = errors.New("request too large")

// errUnimplemented: the agent was built without the backend an RPC needs.
var errUnimplemented = errors.New("not available on this agent")

// opKind says whether an RPC changes state; it decides how timeouts and
// unavailability are worded (invariant 5: a client must be able to tell a
// write that definitely failed from one whose outcome is unknown).
type opKind int

const (
	opRead opKind = iota
	opWrite
)

// apiError is the status an error becomes, with its kind (a transport.Code*
// constant: the REST error code, so REST and gRPC count a failure under the
// same streamhouse_errors_total kind) and, for offset_out_of_range, the
// valid range.
type apiError struct {
	code codes.Code
	kind string
	msg  string
	oor  *fsm.OffsetOutOfRangeError
}

// classify maps an error from a backend or a handler to the status the
// client gets. It is the only place that does so (see GRPC.md, "Status
// codes"). Order matters where an error could wrap several sentinels:
// "outcome unknown" wins over everything, because telling a client that a
// write which may have been applied definitely failed invites duplicates.
//
// Choices where more than one code would fit:
//   - a record over the agent's record limit is INVALID_ARGUMENT (the record
//     itself is bad: retrying never helps), while a request over the request
//     limit is RESOURCE_EXHAUSTED (split it; gRPC answers an over-limit
//     message the same way before it reaches the handler);
//   - an unknown partition is NOT_FOUND, like REST's 404 not_found;
//   - the idempotent-producer errors (fenced, unknown producer, out-of-order
//     sequence) are FAILED_PRECONDITION: the producer's session is not in the
//     state the request needs and it must call InitProducer (or resend in
//     order), not blindly retry; ErrorDetail.code tells them apart;
//   - backpressure is fsm.ErrUnavailable → UNAVAILABLE ("not written, retry
//     later"), which gRPC clients retry, rather than RESOURCE_EXHAUSTED.
func classify(op opKind, err error) apiError {
	var oor *fsm.OffsetOutOfRangeError
	var qe *transport.QuotaError
	if err == nil {
		return apiError{code: codes.OK}
	}
	if st, ok := status.FromError(err); ok {
		// Already a status (gRPC itself, health checks): keep it.
		return apiError{code: st.Code(), kind: kindForCode(op, st.Code()), msg: st.Message()}
	}
	switch {
	case errors.As(err, &qe):
		return apiError{code: codes.ResourceExhausted, kind: transport.CodeQuotaExceeded, msg: err.Error()}
	case errors.Is(err, transport.ErrUnauthenticated):
		return apiError{code: codes.Unauthenticated, kind: transport.CodeUnauthenticated, msg: err.Error()}
	case errors.Is(err, transport.ErrPermissionDenied), errors.Is(err, fsm.ErrProducerNotOwned):
		return apiError{code: codes.PermissionDenied, kind: transport.CodePermissionDenied, msg: err.Error()}
	case errors.Is(err, fsm.ErrOutcomeUnknown):
		return apiError{code: codes.Unknown, kind: transport.CodeOutcomeUnknown,
			msg: "outcome unknown: the write may or may not have been applied; read back before retrying, or retry only if a duplicate is acceptable" +
				detail(err, fsm.ErrOutcomeUnknown)}
	case errors.As(err, &oor):
		return apiError{code: codes.OutOfRange, kind: transport.CodeOffsetOutOfRange, oor: oor,
			msg: fmt.Sprintf("offset %d is out of range: valid offsets are %d (low watermark) through %d (high watermark: the next offset to be written, where a read waits for new records)",
				oor.Requested, oor.LowWatermark, oor.HighWatermark)}
	case errors.Is(err, fsm.ErrOffsetOutOfRange):
		return apiError{code: codes.OutOfRange, kind: transport.CodeOffsetOutOfRange, msg: err.Error()}
	case errors.Is(err, fsm.ErrRecordTooLarge):
		return apiError{code: codes.InvalidArgument, kind: transport.CodeRecordTooLarge, msg: err.Error()}
	case errors.Is(err, errRequestTooLarge):
		return apiError{code: codes.ResourceExhausted, kind: transport.CodeRequestTooLarge, msg: err.Error()}
	case errors.Is(err, fsm.ErrInvalidArgument), errors.Is(err, fsm.ErrInvalidCommand):
		return apiError{code: codes.InvalidArgument, kind: transport.CodeBadRequest, msg: err.Error()}
	case errors.Is(err, fsm.ErrTopicNotFound), errors.Is(err, fsm.ErrPartitionInvalid), errors.Is(err, fsm.ErrGroupNotFound):
		return apiError{code: codes.NotFound, kind: transport.CodeNotFound, msg: err.Error()}
	case errors.Is(err, fsm.ErrTopicExists):
		return apiError{code: codes.AlreadyExists, kind: transport.CodeTopicExists, msg: err.Error()}
	case errors.Is(err, fsm.ErrLimitExceeded):
		return apiError{code: codes.ResourceExhausted, kind: transport.CodeLimitExceeded, msg: err.Error()}
	case errors.Is(err, fsm.ErrProducerFenced):
		return apiError{code: codes.FailedPrecondition, kind: transport.CodeProducerFenced,
			msg: err.Error() + "; this producer session is over: call InitProducer for a new epoch"}
	case errors.Is(err, fsm.ErrUnknownProducer):
		return apiError{code: codes.FailedPrecondition, kind: transport.CodeUnknownProducer,
			msg: err.Error() + "; call InitProducer for a producer id"}
	case errors.Is(err, fsm.ErrOutOfOrderSequence):
		return apiError{code: codes.FailedPrecondition, kind: transport.CodeOutOfOrderSequence,
			msg: err.Error() + "; resend the batches in sequence order, or call InitProducer to start over"}
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, fsm.ErrNotLeader):
		msg := "unavailable: the write was NOT applied and is safe to retry"
		if op == opRead {
			msg = "unavailable: the agent cannot serve this request right now; nothing was changed and it is safe to retry"
		}
		return apiError{code: codes.Unavailable, kind: transport.CodeUnavailable, msg: msg + detail(err, fsm.ErrUnavailable)}
	case errors.Is(err, errUnimplemented):
		return apiError{code: codes.Unimplemented, kind: transport.CodeNotFound, msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code, what := codes.DeadlineExceeded, "the deadline expired"
		if errors.Is(err, context.Canceled) {
			code, what = codes.Canceled, "the call was canceled"
		}
		if op == opWrite {
			return apiError{code: code, kind: transport.CodeOutcomeUnknown,
				msg: "outcome unknown: " + what + " while the write was in flight; it may or may not have been applied"}
		}
		return apiError{code: code, kind: transport.CodeTimeout,
			msg: what + " before the read completed; nothing was changed, retry"}
	default:
		return apiError{code: codes.Internal, kind: transport.CodeInternal,
			msg: "internal error while handling the request; see the agent log"}
	}
}

// kindForCode names the kind of a status that did not come from classify's
// own mapping (one produced by gRPC itself, e.g. an over-limit message).
func kindForCode(op opKind, c codes.Code) string {
	switch c {
	case codes.OK:
		return ""
	case codes.InvalidArgument:
		return transport.CodeBadRequest
	case codes.NotFound, codes.Unimplemented:
		return transport.CodeNotFound
	case codes.AlreadyExists:
		return transport.CodeTopicExists
	case codes.OutOfRange:
		return transport.CodeOffsetOutOfRange
	case codes.ResourceExhausted:
		return transport.CodeRequestTooLarge
	case codes.Unavailable:
		return transport.CodeUnavailable
	case codes.Unauthenticated:
		return transport.CodeUnauthenticated
	case codes.PermissionDenied:
		return transport.CodePermissionDenied
	case codes.Unknown:
		return transport.CodeOutcomeUnknown
	case codes.DeadlineExceeded, codes.Canceled:
		if op == opWrite {
			return transport.CodeOutcomeUnknown
		}
		return transport.CodeTimeout
	default:
		return transport.CodeInternal
	}
}

// status builds the gRPC status, with an ErrorDetail naming the kind (and
// the valid range for offset_out_of_range).
func (e apiError) status() *status.Status {
	st := status.New(e.code, e.msg)
	if e.code == codes.OK || e.kind == "" {
		return st
	}
	d := &pb.ErrorDetail{Code: e.kind}
	if e.oor != nil {
		d.RequestedOffset = &e.oor.Requested
		d.LowWatermark = &e.oor.LowWatermark
		d.HighWatermark = &e.oor.HighWatermark
	}
	if withDetail, err := st.WithDetails(d); err == nil {
		return withDetail
	}
	return st
}

// detail returns err's text without the sentinel's own text (which the
// message already paraphrases), as " (detail)" or "".
func detail(err, sentinel error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, sentinel.Error())
	s = strings.TrimPrefix(s, ": ")
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// invalid is a request-validation error: INVALID_ARGUMENT (bad_request).
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", fsm.ErrInvalidArgument, fmt.Sprintf(format, args...))
}
