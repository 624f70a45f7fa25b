package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/streamhouse/streamhouse/fsm"
)

// Error codes: the "code" of every REST error response and the "kind" label
// of streamhouse_errors_total. They are part of the public API; only add.
const (
	CodeBadRequest       = "bad_request"         // 400: malformed or invalid input
	CodeNotFound         = "not_found"           // 404: unknown topic, partition or route
	CodeMethodNotAllowed = "method_not_allowed"  // 405
	CodeTopicExists      = "topic_exists"        // 409
	CodeLimitExceeded    = "limit_exceeded"      // 409: MAX_TOPICS or MAX_PARTITIONS reached; nothing was created
	CodeQuotaExceeded    = "quota_exceeded"      // 429: the API key is over a per-key quota; nothing was done, retry after Retry-After
	CodeRecordTooLarge   = "record_too_large"    // 413: a record exceeds the agent's record limit
	CodeRequestTooLarge  = "request_too_large"   // 413: the request body exceeds the body limit
	CodeOffsetOutOfRange = "offset_out_of_range" // 416
	CodeInternal         = "internal"            // 500
	CodeUnavailable      = "unavailable"         // 503: not applied, safe to retry
	CodeOutcomeUnknown   = "outcome_unknown"     // 504: a write may or may not have been applied
	CodeTimeout          = "timeout"             // 504: a read timed out or was canceled
	// Idempotent producer outcomes (409): the write was NOT applied.
	CodeProducerFenced     = "producer_fenced"       // a newer epoch of the producer id exists
	CodeUnknownProducer    = "unknown_producer"      // the producer id is unknown or expired
	CodeOutOfOrderSequence = "out_of_order_sequence" // the batch does not continue the producer's sequence
	// API keys (see docs/security.md).
	CodeUnauthenticated  = "unauthenticated"   // 401: no bearer token, or an unknown one
	CodePermissionDenied = "permission_denied" // 403: the key lacks the scope or the topic
)

// apiError is an error response: HTTP status, code and human message.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter bool
	// retryAfterSecs overrides the Retry-After value (default 1).
	retryAfterSecs int
	// authenticate is the WWW-Authenticate value of 401/403 answers.
	authenticate string
	// low and high are set for offset_out_of_range when the range is known.
	low, high *int64
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: CodeBadRequest, msg: fmt.Sprintf(format, args...)}
}

// opKind says whether a route changes state; it decides how timeouts and
// unavailability are worded (invariant 5: a client must be able to tell a
// write that definitely failed from one whose outcome is unknown).
type opKind int

const (
	opRead opKind = iota
	opWrite
)

// classify maps an error from the agent (or the handler itself) to the error
// response. Order matters where an error could wrap several sentinels:
// "outcome unknown" wins over everything, because telling a client that a
// write which may have been applied definitely failed invites duplicates.
func classify(op opKind, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var oor *fsm.OffsetOutOfRangeError
	var qe *QuotaError
	switch {
	case errors.As(err, &qe):
		return &apiError{status: http.StatusTooManyRequests, code: CodeQuotaExceeded, msg: err.Error(),
			retryAfter: true, retryAfterSecs: int(math.Ceil(qe.RetryAfter.Seconds()))}
	case errors.Is(err, ErrUnauthenticated):
		return unauthenticated(err)
	case errors.Is(err, ErrPermissionDenied), errors.Is(err, fsm.ErrProducerNotOwned):
		return &apiError{status: http.StatusForbidden, code: CodePermissionDenied, msg: err.Error(),
			authenticate: `Bearer realm="streamhouse", error="insufficient_scope"`}
	case errors.Is(err, fsm.ErrOutcomeUnknown):
		return &apiError{status: http.StatusGatewayTimeout, code: CodeOutcomeUnknown,
			msg: "outcome unknown: the write may or may not have been applied; read back before retrying, or retry only if a duplicate is acceptable" +
				detail(err, fsm.ErrOutcomeUnknown)}
	case errors.As(err, &oor):
		low, high := oor.LowWatermark, oor.HighWatermark
		return &apiError{status: http.StatusRequestedRangeNotSatisfiable, code: CodeOffsetOutOfRange,
			msg: fmt.Sprintf("offset %d is out of range: valid offsets are %d (low watermark) through %d (high watermark: the next offset to be written, where a read waits for new records)",
				oor.Requested, low, high),
			low: &low, high: &high}
	case errors.Is(err, fsm.ErrOffsetOutOfRange):
		return &apiError{status: http.StatusRequestedRangeNotSatisfiable, code: CodeOffsetOutOfRange, msg: err.Error()}
	case errors.Is(err, fsm.ErrInvalidArgument), errors.Is(err, fsm.ErrInvalidCommand):
		return &apiError{status: http.StatusBadRequest, code: CodeBadRequest, msg: err.Error()}
	case errors.Is(err, fsm.ErrProducerFenced):
		return &apiError{status: http.StatusConflict, code: CodeProducerFenced, msg: err.Error()}
	case errors.Is(err, fsm.ErrUnknownProducer):
		return &apiError{status: http.StatusConflict, code: CodeUnknownProducer, msg: err.Error()}
	case errors.Is(err, fsm.ErrOutOfOrderSequence):
		return &apiError{status: http.StatusConflict, code: CodeOutOfOrderSequence, msg: err.Error()}
	case errors.Is(err, fsm.ErrTopicNotFound), errors.Is(err, fsm.ErrPartitionInvalid), errors.Is(err, fsm.ErrGroupNotFound):
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: err.Error()}
	case errors.Is(err, fsm.ErrTopicExists):
		return &apiError{status: http.StatusConflict, code: CodeTopicExists, msg: err.Error()}
	case errors.Is(err, fsm.ErrLimitExceeded):
		return &apiError{status: http.StatusConflict, code: CodeLimitExceeded, msg: err.Error()}
	case errors.Is(err, fsm.ErrRecordTooLarge):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: CodeRecordTooLarge, msg: err.Error()}
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, fsm.ErrNotLeader):
		return unavailable(op, detail(err, fsm.ErrUnavailable))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if op == opWrite {
			return &apiError{status: http.StatusGatewayTimeout, code: CodeOutcomeUnknown,
				msg: "outcome unknown: the request timed out or was canceled while the write was in flight; it may or may not have been applied"}
		}
		return &apiError{status: http.StatusGatewayTimeout, code: CodeTimeout,
			msg: "the read timed out or was canceled before it completed; nothing was changed, retry"}
	default:
		return &apiError{status: http.StatusInternalServerError, code: CodeInternal,
			msg: "internal error while handling the request; see the agent log"}
	}
}

// unauthenticated is the 401 answer to a request without a valid token.
// A request that presented a token gets error="invalid_token" (RFC 6750).
func unauthenticated(err error) *apiError {
	h := `Bearer realm="streamhouse"`
	if !errors.Is(err, ErrMissingToken) {
		h += `, error="invalid_token"`
	}
	return &apiError{status: http.StatusUnauthorized, code: CodeUnauthenticated, msg: err.Error(), authenticate: h}
}

func unavailable(op opKind, suffix string) *apiError {
	msg := "unavailable: the write was NOT applied and is safe to retry"
	if op == opRead {
		msg = "unavailable: the agent cannot serve this request right now; nothing was changed and it is safe to retry"
	}
	return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, msg: msg + suffix, retryAfter: true}
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

type errorDetail struct {
	Code          string `json:"code"`
	Message       string `json:"message"`
	LowWatermark  *int64 `json:"low_watermark,omitempty"`
	HighWatermark *int64 `json:"high_watermark,omitempty"`
}

type errorResponse struct {
	Error errorDetail `json:"error"`
}

// fail logs err at a level matching its severity and writes its response.
func (s *HTTPServer) fail(w http.ResponseWriter, r *http.Request, op opKind, err error) {
	ae := classify(op, err)
	level := slog.LevelDebug
	switch {
	case ae.status >= 500 && ae.code == CodeInternal:
		level = slog.LevelError
	case ae.status >= 500:
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", ae.status, "code", ae.code, "err", err)
	s.writeError(w, ae)
}

// writeError writes an error response and counts it in errors_total.
func (s *HTTPServer) writeError(w http.ResponseWriter, ae *apiError) {
	if s.errors != nil {
		s.errors.WithLabelValues(ae.code).Inc()
	}
	if ae.retryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, ae.retryAfterSecs)))
	}
	if ae.authenticate != "" {
		w.Header().Set("WWW-Authenticate", ae.authenticate)
	}
	writeJSON(w, ae.status, errorResponse{Error: errorDetail{
		Code: ae.code, Message: ae.msg, LowWatermark: ae.low, HighWatermark: ae.high,
	}})
}
