package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// TestClassify: gRPC statuses from transport's error table (tested there,
// row by row), from gRPC itself, and their ErrorDetail.
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("%w: detail text", err) }
	oor := &fsm.OffsetOutOfRangeError{Requested: 9, LowWatermark: 2, HighWatermark: 5}
	cases := []struct {
		name    string
		op      transport.Op
		err     error
		code    codes.Code
		kind    string
		msgHas  string // substring of the message ("" = no check)
		msgNot  string // must not appear in the message
		withOOR bool
	}{
		{"table row", transport.OpWrite, wrap(fsm.ErrRecordTooLarge), codes.InvalidArgument, transport.CodeRecordTooLarge, "record too large", "", false},
		{"offset out of range with range", transport.OpRead, fmt.Errorf("fetch: %w", oor), codes.OutOfRange, transport.CodeOffsetOutOfRange, "valid offsets are 2 (low watermark) through 5", "", true},
		{"hint", transport.OpWrite, wrap(fsm.ErrProducerFenced), codes.FailedPrecondition, transport.CodeProducerFenced, "InitProducer", "", false},
		{"deadline read", transport.OpRead, fmt.Errorf("fetch: %w", context.DeadlineExceeded), codes.DeadlineExceeded, transport.CodeTimeout, "nothing was changed", "", false},
		{"unimplemented", transport.OpRead, wrap(errUnimplemented), codes.Unimplemented, transport.CodeNotFound, "", "", false},
		{"status passes through", transport.OpRead, status.Error(codes.NotFound, "unknown service x"), codes.NotFound, transport.CodeNotFound, "unknown service x", "", false},
		{"grpc size limit", transport.OpWrite, status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), codes.ResourceExhausted, transport.CodeRequestTooLarge, "", "", false},
		{"grpc deadline on a write", transport.OpWrite, status.Error(codes.DeadlineExceeded, "x"), codes.DeadlineExceeded, transport.CodeOutcomeUnknown, "", "", false},
		{"grpc internal", transport.OpRead, status.Error(codes.DataLoss, "x"), codes.DataLoss, transport.CodeInternal, "", "", false},
		{"anything else", transport.OpRead, errors.New("disk on fire: /secret/path"), codes.Internal, transport.CodeInternal, "internal error", "secret", false},
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
	if ae := classify(transport.OpRead, nil); ae.code != codes.OK || ae.status().Err() != nil {
		t.Errorf("classify(nil) = %v", ae)
	}
}
