package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
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
	// Consumer-group membership (409; gRPC FAILED_PRECONDITION): nothing
	// was changed.
	CodeNotCoordinator       = "not_coordinator"       // ask the coordinator (the Raft leader)
	CodeUnknownMember        = "unknown_member"        // the member is not in the group: join again without a member id
	CodeIllegalGeneration    = "illegal_generation"    // the group moved to another generation: rejoin
	CodeRebalanceInProgress  = "rebalance_in_progress" // the group is rebalancing: rejoin
	CodeInconsistentProtocol = "inconsistent_protocol" // the member's protocols do not match the group's
	CodeGroupNotEmpty        = "group_not_empty"       // the group has active members
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

// classify maps an error to its response: an *apiError a handler built
// itself as it is, anything else through the error table (Classify).
func classify(op Op, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return restError(err, Classify(op, err))
}

// restError is the REST answer of a classified error.
func restError(err error, f Failure) *apiError {
	ae := &apiError{status: f.HTTPStatus, code: f.Code, msg: f.Message, retryAfter: f.RetryAfter,
		retryAfterSecs: int(math.Ceil(f.RetryIn.Seconds()))}
	switch f.Code {
	case CodeUnauthenticated:
		// A request that presented a token gets error="invalid_token" (RFC 6750).
		ae.authenticate = `Bearer realm="streamhouse"`
		if !errors.Is(err, ErrMissingToken) {
			ae.authenticate += `, error="invalid_token"`
		}
	case CodePermissionDenied:
		ae.authenticate = `Bearer realm="streamhouse", error="insufficient_scope"`
	}
	if r := f.Range; r != nil {
		low, high := r.LowWatermark, r.HighWatermark
		ae.low, ae.high = &low, &high
	}
	return ae
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

// statusClientClosed is recorded (streamhouse_http_requests_total) for a
// request whose client went away before the answer: nginx's 499. Nobody
// reads it, so it is neither a server error nor an error response.
const statusClientClosed = 499

// fail logs err at a level matching its severity and writes its response.
// A request whose client disconnected (a long-poll given up) is logged at
// debug and not counted in errors_total, as on gRPC.
func (s *HTTPServer) fail(w http.ResponseWriter, r *http.Request, op Op, err error) {
	if clientGone(r, err) {
		s.log.Debug("client went away before the answer", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(statusClientClosed)
		return
	}
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
	s.cfg.Errors.WithLabelValues(ae.code).Inc()
	if ae.retryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, ae.retryAfterSecs)))
	}
	if ae.authenticate != "" {
		w.Header().Set("WWW-Authenticate", ae.authenticate)
	}
	writeJSON(w, ae.status, errorResponse{Error: errorDetail{
		Code: ae.code, Message: clipQuoted(ae.msg), LowWatermark: ae.low, HighWatermark: ae.high,
	}})
}

// clientGone: the request ended because its client disconnected (the
// request context is canceled only then, or when the server is closed).
func clientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
