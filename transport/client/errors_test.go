package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestRetryClassification(t *testing.T) {
	cases := []struct {
		name              string
		err               error
		retriable, unknwn bool
		code              codes.Code
	}{
		{"nil", nil, false, false, codes.OK},
		{"unavailable", status.Error(codes.Unavailable, "x"), true, false, codes.Unavailable},
		{"wrapped unavailable", fmt.Errorf("op: %w", status.Error(codes.Unavailable, "x")), true, false, codes.Unavailable},
		{"client error unavailable", wrapErr("Produce", status.Error(codes.Unavailable, "x")), true, false, codes.Unavailable},
		{"unknown", status.Error(codes.Unknown, "x"), false, true, codes.Unknown},
		{"deadline", status.Error(codes.DeadlineExceeded, "x"), false, true, codes.DeadlineExceeded},
		{"ctx deadline", context.DeadlineExceeded, false, true, codes.DeadlineExceeded},
		{"canceled", status.Error(codes.Canceled, "x"), false, false, codes.Canceled},
		{"not found", status.Error(codes.NotFound, "x"), false, false, codes.NotFound},
		{"invalid", status.Error(codes.InvalidArgument, "x"), false, false, codes.InvalidArgument},
		{"fenced", detailErr(codes.FailedPrecondition, KindProducerFenced, "x"), false, false, codes.FailedPrecondition},
		// A client-side error is neither: it never reached an agent.
		{"closed", ErrClosed, false, false, codes.Unknown},
		{"plain error", errors.New("boom"), false, false, codes.Unknown},
	}
	for _, tc := range cases {
		if got := IsRetriable(tc.err); got != tc.retriable {
			t.Errorf("%s: IsRetriable = %v", tc.name, got)
		}
		if got := IsOutcomeUnknown(tc.err); got != tc.unknwn {
			t.Errorf("%s: IsOutcomeUnknown = %v", tc.name, got)
		}
		if got := Code(tc.err); got != tc.code {
			t.Errorf("%s: Code = %v, want %v", tc.name, got, tc.code)
		}
	}

	// What the producer resends: the agent's unavailable always; a
	// transient answer that may have been written only when idempotent
	// (the agent deduplicates); nothing the agent refused.
	for _, tc := range []struct {
		name        string
		err         error
		idem, plain bool
	}{
		{"agent unavailable", detailErr(codes.Unavailable, KindUnavailable, "not leader"), true, true},
		{"unavailable without detail", status.Error(codes.Unavailable, "connection reset"), true, false},
		{"unknown", detailErr(codes.Unknown, KindOutcomeUnknown, "x"), true, false},
		{"deadline", status.Error(codes.DeadlineExceeded, "x"), true, false},
		{"internal without detail", status.Error(codes.Internal, "no trailers"), true, false},
		{"agent internal", detailErr(codes.Internal, KindInternal, "x"), true, false},
		{"bad request", detailErr(codes.InvalidArgument, KindBadRequest, "x"), false, false},
		{"not found", detailErr(codes.NotFound, KindNotFound, "x"), false, false},
		{"out of order", detailErr(codes.FailedPrecondition, KindOutOfOrderSequence, "x"), false, false},
		{"request too large", detailErr(codes.ResourceExhausted, KindRequestTooLarge, "x"), false, false},
		{"too large without detail", status.Error(codes.ResourceExhausted, "x"), false, false},
		{"canceled", status.Error(codes.Canceled, "x"), false, false},
	} {
		err := wrapErr("Produce", tc.err)
		if got := retriable(true, err); got != tc.idem {
			t.Errorf("%s: idempotent retriable = %v", tc.name, got)
		}
		if got := retriable(false, err); got != tc.plain {
			t.Errorf("%s: non-idempotent retriable = %v", tc.name, got)
		}
	}
}

// Only the agent's own detail says a produce was not written.
func TestNotWritten(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{detailErr(codes.Unavailable, KindUnavailable, "not leader"), true},
		{detailErr(codes.InvalidArgument, KindBadRequest, "x"), true},
		{detailErr(codes.FailedPrecondition, KindProducerFenced, "x"), true},
		{detailErr(codes.ResourceExhausted, KindQuotaExceeded, "x"), true},
		{status.Error(codes.Unavailable, "connection reset"), false},
		{status.Error(codes.Internal, "server closed the stream without sending trailers"), false},
		{detailErr(codes.Internal, KindInternal, "x"), false},
		{detailErr(codes.Unknown, KindOutcomeUnknown, "x"), false},
		{status.Error(codes.InvalidArgument, "from a proxy"), false},
	} {
		if got := notWritten(wrapErr("Produce", tc.err)); got != tc.want {
			t.Errorf("notWritten(%v) = %v", tc.err, got)
		}
	}
}

func TestErrorCarriesStatusAndDetail(t *testing.T) {
	low, high, req := int64(3), int64(9), int64(20)
	st, _ := status.New(codes.OutOfRange, "offset 20 is out of range").WithDetails(&pb.ErrorDetail{Code: KindOffsetOutOfRange,
		RequestedOffset: &req, LowWatermark: &low, HighWatermark: &high})
	err := wrapErr("Fetch", st.Err())
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %T", err)
	}
	if e.Code != codes.OutOfRange || e.Kind != KindOffsetOutOfRange || *e.LowWatermark != 3 || *e.HighWatermark != 9 || *e.RequestedOffset != 20 {
		t.Fatalf("error = %+v", e)
	}
	if status.Code(fmt.Errorf("ctx: %w", err)) != codes.OutOfRange {
		t.Fatal("status.Code does not see through a wrapped *Error")
	}
	if Kind(err) != KindOffsetOutOfRange {
		t.Fatalf("Kind = %q", Kind(err))
	}
	fenced := wrapErr("Produce", detailErr(codes.FailedPrecondition, KindProducerFenced, "fenced"))
	if !errors.Is(fenced, ErrFenced) || errors.Is(err, ErrFenced) {
		t.Fatal("errors.Is(ErrFenced) must match producer_fenced and only it")
	}
}
