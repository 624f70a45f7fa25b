package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("%w: detail text", err) }
	oor := &fsm.OffsetOutOfRangeError{Requested: 9, LowWatermark: 2, HighWatermark: 5}
	cases := []struct {
		name    string
		op      opKind
		err     error
		code    codes.Code
		kind    string
		msgHas  string // substring of the message ("" = no check)
		msgNot  string // must not appear in the message
		withOOR bool
	}{
		{"invalid argument", opWrite, wrap(fsm.ErrInvalidArgument), codes.InvalidArgument, transport.CodeBadRequest, "detail text", "", false},
		{"invalid command", opWrite, wrap(fsm.ErrInvalidCommand), codes.InvalidArgument, transport.CodeBadRequest, "detail text", "", false},
		{"record too large", opWrite, wrap(fsm.ErrRecordTooLarge), codes.InvalidArgument, transport.CodeRecordTooLarge, "record too large", "", false},
		{"request too large", opWrite, wrap(errRequestTooLarge), codes.ResourceExhausted, transport.CodeRequestTooLarge, "", "", false},
		{"topic not found", opRead, wrap(fsm.ErrTopicNotFound), codes.NotFound, transport.CodeNotFound, "topic not found", "", false},
		{"group not found", opRead, wrap(fsm.ErrGroupNotFound), codes.NotFound, transport.CodeNotFound, "group", "", false},
		{"partition invalid", opRead, wrap(fsm.ErrPartitionInvalid), codes.NotFound, transport.CodeNotFound, "partition", "", false},
		{"topic exists", opWrite, wrap(fsm.ErrTopicExists), codes.AlreadyExists, transport.CodeTopicExists, "", "", false},
		{"limit exceeded", opWrite, wrap(fsm.ErrLimitExceeded), codes.ResourceExhausted, transport.CodeLimitExceeded, "cluster limit", "", false},
		{"quota exceeded", opWrite, fmt.Errorf("produce: %w", &transport.QuotaError{Key: "k", Quota: transport.QuotaMutations, Rate: 1, RetryAfter: time.Second}), codes.ResourceExhausted, transport.CodeQuotaExceeded, "controller_mutation_rate", "", false},
		{"offset out of range with range", opRead, fmt.Errorf("fetch: %w", oor), codes.OutOfRange, transport.CodeOffsetOutOfRange, "valid offsets are 2 (low watermark) through 5", "", true},
		{"offset out of range bare", opRead, wrap(fsm.ErrOffsetOutOfRange), codes.OutOfRange, transport.CodeOffsetOutOfRange, "", "", false},
		{"unavailable write", opWrite, wrap(fsm.ErrUnavailable), codes.Unavailable, transport.CodeUnavailable, "NOT applied", "", false},
		{"unavailable read", opRead, wrap(fsm.ErrUnavailable), codes.Unavailable, transport.CodeUnavailable, "nothing was changed", "", false},
		{"not leader", opWrite, wrap(fsm.ErrNotLeader), codes.Unavailable, transport.CodeUnavailable, "NOT applied", "", false},
		{"outcome unknown", opWrite, wrap(fsm.ErrOutcomeUnknown), codes.Unknown, transport.CodeOutcomeUnknown, "may or may not", "", false},
		{"outcome unknown wins over unavailable", opWrite, fmt.Errorf("%w: %w", fsm.ErrOutcomeUnknown, fsm.ErrUnavailable), codes.Unknown, transport.CodeOutcomeUnknown, "", "", false},
		{"deadline write", opWrite, context.DeadlineExceeded, codes.DeadlineExceeded, transport.CodeOutcomeUnknown, "may or may not", "", false},
		{"deadline read", opRead, fmt.Errorf("fetch: %w", context.DeadlineExceeded), codes.DeadlineExceeded, transport.CodeTimeout, "nothing was changed", "", false},
		{"canceled write", opWrite, context.Canceled, codes.Canceled, transport.CodeOutcomeUnknown, "may or may not", "", false},
		{"canceled read", opRead, context.Canceled, codes.Canceled, transport.CodeTimeout, "", "", false},
		{"producer fenced", opWrite, wrap(fsm.ErrProducerFenced), codes.FailedPrecondition, transport.CodeProducerFenced, "InitProducer", "", false},
		{"unknown producer", opWrite, wrap(fsm.ErrUnknownProducer), codes.FailedPrecondition, transport.CodeUnknownProducer, "", "", false},
		{"out of order sequence", opWrite, wrap(fsm.ErrOutOfOrderSequence), codes.FailedPrecondition, transport.CodeOutOfOrderSequence, "", "", false},
		{"unimplemented", opRead, wrap(errUnimplemented), codes.Unimplemented, transport.CodeNotFound, "", "", false},
		{"status passes through", opRead, status.Error(codes.NotFound, "unknown service x"), codes.NotFound, transport.CodeNotFound, "unknown service x", "", false},
		{"grpc size limit", opWrite, status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), codes.ResourceExhausted, transport.CodeRequestTooLarge, "", "", false},
		{"stale epoch is internal", opWrite, wrap(fsm.ErrStaleEpoch), codes.Internal, transport.CodeInternal, "internal error", "stale", false},
		{"anything else", opRead, errors.New("disk on fire: /secret/path"), codes.Internal, transport.CodeInternal, "internal error", "secret", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ae := classify(c.op, c.err)
			if ae.code != c.code || ae.kind != c.kind {
				t.Fatalf("classify = %s/%q, want %s/%q", ae.code, ae.kind, c.code, c.kind)
			}
			if c.msgHas != "" && !strings.Contains(ae.msg, c.msgHas) {
				t.Errorf("message %q lacks %q", ae.msg, c.msgHas)
			}
			if c.msgNot != "" && strings.Contains(ae.msg, c.msgNot) {
				t.Errorf("message %q leaks %q", ae.msg, c.msgNot)
			}
			st := ae.status()
			if st.Code() != c.code {
				t.Fatalf("status code %s", st.Code())
			}
			var d *pb.ErrorDetail
			for _, x := range st.Details() {
				d, _ = x.(*pb.ErrorDetail)
			}
			if d == nil || d.Code != c.kind {
				t.Fatalf("ErrorDetail = %v, want code %q", d, c.kind)
			}
			if c.withOOR {
				if d.GetRequestedOffset() != 9 || d.GetLowWatermark() != 2 || d.GetHighWatermark() != 5 {
					t.Errorf("ErrorDetail range = %v", d)
				}
			} else if d.LowWatermark != nil || d.HighWatermark != nil {
				t.Errorf("unexpected watermarks in %v", d)
			}
		})
	}
	if ae := classify(opRead, nil); ae.code != codes.OK || ae.status().Err() != nil {
		t.Errorf("classify(nil) = %v", ae)
	}
}
