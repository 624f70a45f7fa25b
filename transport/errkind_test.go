package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
)

// TestClassify is the error table's test, for both protocols: an error
// becomes one kind, with its HTTP status, its gRPC code and its message on
// each. msg "" means the error's own text; grpcMsg "" means msg.
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("%w: detail text", err) }
	oor := &fsm.OffsetOutOfRangeError{Requested: 9, LowWatermark: 2, HighWatermark: 5}
	quota := fmt.Errorf("produce: %w", &QuotaError{Key: "k", Quota: QuotaMutations, Rate: 1, RetryAfter: 2500 * time.Millisecond})
	const (
		unknown     = "outcome unknown: the write may or may not have been applied; read back before retrying, or retry only if a duplicate is acceptable"
		unavailable = "unavailable: the write was NOT applied and is safe to retry"
		unavailRead = "unavailable: the agent cannot serve this request right now; nothing was changed and it is safe to retry"
		internal    = "internal error while handling the request; see the agent log"
	)
	cases := []struct {
		name      string
		op        Op
		err       error
		code      string
		http      int
		grpc      codes.Code
		msg       string
		grpcMsg   string
		withRange bool
	}{
		{"invalid argument", OpWrite, wrap(fsm.ErrInvalidArgument), CodeBadRequest, 400, codes.InvalidArgument, "", "", false},
		{"invalid command", OpWrite, wrap(fsm.ErrInvalidCommand), CodeBadRequest, 400, codes.InvalidArgument, "", "", false},
		{"record too large", OpWrite, wrap(fsm.ErrRecordTooLarge), CodeRecordTooLarge, 413, codes.InvalidArgument, "", "", false},
		{"request too large", OpWrite, wrap(ErrRequestTooLarge), CodeRequestTooLarge, 413, codes.ResourceExhausted, "", "", false},
		{"topic not found", OpRead, wrap(fsm.ErrTopicNotFound), CodeNotFound, 404, codes.NotFound, "", "", false},
		{"group not found", OpRead, wrap(fsm.ErrGroupNotFound), CodeNotFound, 404, codes.NotFound, "", "", false},
		{"partition invalid", OpRead, wrap(fsm.ErrPartitionInvalid), CodeNotFound, 404, codes.NotFound, "", "", false},
		{"topic exists", OpWrite, wrap(fsm.ErrTopicExists), CodeTopicExists, 409, codes.AlreadyExists, "", "", false},
		{"limit exceeded", OpWrite, wrap(fsm.ErrLimitExceeded), CodeLimitExceeded, 409, codes.ResourceExhausted, "", "", false},
		{"quota exceeded", OpWrite, quota, CodeQuotaExceeded, 429, codes.ResourceExhausted, "", "", false},
		{"offset out of range with range", OpRead, fmt.Errorf("fetch: %w", oor), CodeOffsetOutOfRange, 416, codes.OutOfRange,
			"offset 9 is out of range: valid offsets are 2 (low watermark) through 5 (high watermark: the next offset to be written, where a read waits for new records)", "", true},
		{"offset out of range bare", OpRead, wrap(fsm.ErrOffsetOutOfRange), CodeOffsetOutOfRange, 416, codes.OutOfRange, "", "", false},
		{"unavailable write", OpWrite, wrap(fsm.ErrUnavailable), CodeUnavailable, 503, codes.Unavailable, unavailable + " (detail text)", "", false},
		{"unavailable read", OpRead, fsm.ErrUnavailable, CodeUnavailable, 503, codes.Unavailable, unavailRead, "", false},
		{"not leader", OpWrite, fmt.Errorf("%w: %w: led by n2", fsm.ErrUnavailable, fsm.ErrNotLeader), CodeUnavailable, 503, codes.Unavailable,
			unavailable + " (this agent does not lead the partition: led by n2)", "", false},
		{"not leader alone", OpWrite, fsm.ErrNotLeader, CodeUnavailable, 503, codes.Unavailable, unavailable + " (this agent does not lead the partition)", "", false},
		{"stale epoch, not applied", OpWrite, fmt.Errorf("%w: %w", fsm.ErrUnavailable, fsm.ErrStaleEpoch), CodeUnavailable, 503, codes.Unavailable,
			unavailable + " (stale partition leader epoch)", "", false},
		{"outcome unknown", OpWrite, wrap(fsm.ErrOutcomeUnknown), CodeOutcomeUnknown, 504, codes.Unknown, unknown + " (detail text)", "", false},
		{"outcome unknown wins over unavailable", OpWrite, fmt.Errorf("%w: %w", fsm.ErrOutcomeUnknown, fsm.ErrUnavailable), CodeOutcomeUnknown, 504, codes.Unknown,
			unknown + " (unavailable: the write was not applied; retry)", "", false},
		{"deadline write", OpWrite, context.DeadlineExceeded, CodeOutcomeUnknown, 504, codes.DeadlineExceeded,
			"outcome unknown: the request timed out or was canceled while the write was in flight; it may or may not have been applied",
			"outcome unknown: the deadline expired while the write was in flight; it may or may not have been applied", false},
		{"canceled write", OpWrite, context.Canceled, CodeOutcomeUnknown, 504, codes.Canceled,
			"outcome unknown: the request timed out or was canceled while the write was in flight; it may or may not have been applied",
			"outcome unknown: the call was canceled while the write was in flight; it may or may not have been applied", false},
		{"deadline read", OpRead, fmt.Errorf("fetch: %w", context.DeadlineExceeded), CodeTimeout, 504, codes.DeadlineExceeded,
			"the read timed out or was canceled before it completed; nothing was changed, retry",
			"the deadline expired before the read completed; nothing was changed, retry", false},
		{"canceled read", OpRead, context.Canceled, CodeTimeout, 504, codes.Canceled,
			"the read timed out or was canceled before it completed; nothing was changed, retry",
			"the call was canceled before the read completed; nothing was changed, retry", false},
		{"producer fenced", OpWrite, wrap(fsm.ErrProducerFenced), CodeProducerFenced, 409, codes.FailedPrecondition, "",
			"producer fenced by a newer epoch: detail text; this producer session is over: call InitProducer for a new epoch", false},
		{"unknown producer", OpWrite, wrap(fsm.ErrUnknownProducer), CodeUnknownProducer, 409, codes.FailedPrecondition, "",
			"unknown producer id: detail text; call InitProducer for a producer id", false},
		{"out of order sequence", OpWrite, wrap(fsm.ErrOutOfOrderSequence), CodeOutOfOrderSequence, 409, codes.FailedPrecondition, "",
			"out of order sequence number: detail text; resend the batches in sequence order, or call InitProducer to start over", false},
		{"producer of another key", OpWrite, wrap(fsm.ErrProducerNotOwned), CodePermissionDenied, 403, codes.PermissionDenied, "", "", false},
		{"permission denied", OpRead, wrap(ErrPermissionDenied), CodePermissionDenied, 403, codes.PermissionDenied, "", "", false},
		{"unauthenticated", OpRead, ErrMissingToken, CodeUnauthenticated, 401, codes.Unauthenticated, "", "", false},
		{"stale epoch alone is internal", OpWrite, wrap(fsm.ErrStaleEpoch), CodeInternal, 500, codes.Internal, internal, "", false},
		{"anything else is internal, without its text", OpRead, errors.New("disk on fire: /secret/path"), CodeInternal, 500, codes.Internal, internal, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := Classify(c.op, c.err)
			if c.msg == "" {
				c.msg = c.err.Error()
			}
			if c.grpcMsg == "" {
				c.grpcMsg = c.msg
			}
			if f.Code != c.code || f.HTTPStatus != c.http || f.Message != c.msg {
				t.Fatalf("Classify = %s %d %q, want %s %d %q", f.Code, f.HTTPStatus, f.Message, c.code, c.http, c.msg)
			}
			if code, msg := f.GRPC(); code != c.grpc || msg != c.grpcMsg {
				t.Fatalf("GRPC() = %s %q, want %s %q", code, msg, c.grpc, c.grpcMsg)
			}
			if (f.Range != nil) != c.withRange {
				t.Fatalf("Range = %v", f.Range)
			}
			if want := c.code == CodeUnavailable || c.code == CodeQuotaExceeded; f.RetryAfter != want {
				t.Fatalf("RetryAfter = %v", f.RetryAfter)
			}
		})
	}
}

// TestErrorKindsComplete: every error code has one row, and REST statuses
// are what REST.md documents for their class.
func TestErrorKindsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range errorKinds {
		if seen[k.Code] {
			t.Errorf("%s has two rows", k.Code)
		}
		seen[k.Code] = true
		if http.StatusText(k.HTTPStatus) == "" || k.HTTPStatus < 400 {
			t.Errorf("%s: HTTP status %d", k.Code, k.HTTPStatus)
		}
		if k.GRPCCode == codes.OK {
			t.Errorf("%s: gRPC code OK", k.Code)
		}
	}
	if len(seen) != 24 {
		t.Errorf("%d kinds, want one per Code constant (24)", len(seen))
	}
	if k := Kind("no_such_code"); k.Code != CodeInternal {
		t.Errorf("Kind(unknown) = %+v", k)
	}
}

// An unclassified error of a write that may have been proposed is outcome
// unknown, with a generic message; a classified one keeps its kind.
func TestAfterProposal(t *testing.T) {
	secret := errors.New("disk on fire at /secret/path")
	for _, tc := range []struct {
		name string
		op   Op
		err  error
		want string
	}{
		{"unclassified write", OpWrite, AfterProposal(secret), CodeOutcomeUnknown},
		{"wrapped again", OpWrite, fmt.Errorf("produce: %w", AfterProposal(secret)), CodeOutcomeUnknown},
		{"unavailable stays", OpWrite, AfterProposal(fmt.Errorf("%w: led by n2", fsm.ErrNotLeader)), CodeUnavailable},
		{"bad request stays", OpWrite, AfterProposal(fmt.Errorf("%w: x", fsm.ErrInvalidArgument)), CodeBadRequest},
		{"unmarked write", OpWrite, secret, CodeInternal},
	} {
		f := Classify(tc.op, tc.err)
		if f.Code != tc.want {
			t.Errorf("%s: kind %s, want %s", tc.name, f.Code, tc.want)
		}
		if strings.Contains(f.Message, "/secret/path") {
			t.Errorf("%s: message leaks the error: %q", tc.name, f.Message)
		}
	}
	if AfterProposal(nil) != nil {
		t.Error("AfterProposal(nil) != nil")
	}
}
