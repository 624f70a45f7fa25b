package grpcapi

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// errUnimplemented: the agent was built without the backend an RPC needs.
var errUnimplemented = errors.New("not available on this agent")

// apiError is the status an error becomes, with its kind (a transport.Code*
// constant: the REST error code, so REST and gRPC count a failure under the
// same streamhouse_errors_total kind) and, for offset_out_of_range, the
// valid range.
type apiError struct {
	code codes.Code
	kind string
	msg  string
	oor  *fsm.OffsetOutOfRangeError
	// coordinator: the group coordinator's address of not_coordinator.
	coordinator string
}

// classify maps an error from a backend or a handler to the status the
// client gets: through transport's error table (transport.Classify, see
// GRPC.md, "Status codes"), except for a status gRPC itself produced and
// an RPC this agent does not serve.
func classify(op transport.Op, err error) apiError {
	if err == nil {
		return apiError{code: codes.OK}
	}
	if st, ok := status.FromError(err); ok {
		// Already a status (gRPC itself, health checks): keep it.
		return apiError{code: st.Code(), kind: kindForCode(op, st.Code()), msg: st.Message()}
	}
	if errors.Is(err, errUnimplemented) {
		return apiError{code: codes.Unimplemented, kind: transport.CodeNotFound, msg: err.Error()}
	}
	f := transport.Classify(op, err)
	code, msg := f.GRPC()
	ae := apiError{code: code, kind: f.Code, msg: msg, oor: f.Range}
	var nc *fsm.NotCoordinatorError
	if errors.As(err, &nc) {
		ae.coordinator = nc.Addr
	}
	return ae
}

// kindOfCode names the kind of a status that did not come from the error
// table (one produced by gRPC itself, e.g. an over-limit message).
var kindOfCode = map[codes.Code]string{
	codes.OK:                "",
	codes.InvalidArgument:   transport.CodeBadRequest,
	codes.NotFound:          transport.CodeNotFound,
	codes.Unimplemented:     transport.CodeNotFound,
	codes.AlreadyExists:     transport.CodeTopicExists,
	codes.OutOfRange:        transport.CodeOffsetOutOfRange,
	codes.ResourceExhausted: transport.CodeRequestTooLarge,
	codes.Unavailable:       transport.CodeUnavailable,
	codes.Unauthenticated:   transport.CodeUnauthenticated,
	codes.PermissionDenied:  transport.CodePermissionDenied,
	codes.Unknown:           transport.CodeOutcomeUnknown,
}

func kindForCode(op transport.Op, c codes.Code) string {
	if kind, ok := kindOfCode[c]; ok {
		return kind
	}
	if c == codes.DeadlineExceeded || c == codes.Canceled {
		if op == transport.OpWrite {
			return transport.CodeOutcomeUnknown
		}
		return transport.CodeTimeout
	}
	return transport.CodeInternal
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
	if e.coordinator != "" {
		d.Coordinator = &e.coordinator
	}
	if withDetail, err := st.WithDetails(d); err == nil {
		return withDetail
	}
	return st
}

// invalid is a request-validation error: INVALID_ARGUMENT (bad_request).
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", fsm.ErrInvalidArgument, fmt.Sprintf(format, args...))
}
