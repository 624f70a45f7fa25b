package transport

import (
	"net/http"
	"net/url"
	"strconv"
)

// OffsetsResponse is GET /api/v1/topics/{name}/partitions/{partition}/offsets.
type OffsetsResponse struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Timestamp is the time asked for (unix ms); absent for earliest and
	// latest.
	Timestamp *int64 `json:"timestamp,omitempty"`
	// Offset is the first offset whose record timestamp is at or after
	// Timestamp (the high watermark when none is), or the low or high
	// watermark for earliest and latest.
	Offset        int64 `json:"offset"`
	LowWatermark  int64 `json:"low_watermark"`
	HighWatermark int64 `json:"high_watermark"`
}

// offsetsQuery parses the query of the offsets route: timestamp is unix
// milliseconds (>= 0), "earliest" or "latest"; nothing else is accepted.
func offsetsQuery(raw string) (ts int64, word string, err error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return 0, "", badRequest("malformed query string: %v", err)
	}
	for name := range q {
		if name != "timestamp" {
			return 0, "", badRequest("unknown query parameter %q (only timestamp is accepted)", clip(name))
		}
	}
	v := q.Get("timestamp")
	switch v {
	case "":
		return 0, "", badRequest("query parameter timestamp is required (unix milliseconds, earliest or latest)")
	case offsetEarliest, offsetLatest:
		return 0, v, nil
	}
	ts, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil || ts < 0 {
		return 0, "", badRequest("query parameter timestamp must be unix milliseconds >= 0, earliest or latest; got %q", clip(v))
	}
	return ts, "", nil
}

// handleOffsets answers the offset of a partition for a time (the first
// record at or after it), or its earliest or latest offset.
func (s *HTTPServer) handleOffsets(w http.ResponseWriter, r *http.Request) error {
	topic := r.PathValue("name")
	if err := s.authorize(r, ScopeRead, topic); err != nil {
		return err
	}
	if s.cfg.Offsets == nil {
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "offset lookups are not served by this agent"}
	}
	part, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || part < 0 {
		return badRequest("partition must be an integer >= 0, got %q", clip(r.PathValue("partition")))
	}
	ts, word, err := offsetsQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	res, err := s.cfg.Offsets.OffsetForTimestamp(r.Context(), topic, int32(part), ts)
	if err != nil {
		return err
	}
	out := OffsetsResponse{Topic: topic, Partition: int32(part), Offset: res.Offset,
		LowWatermark: res.LowWatermark, HighWatermark: res.HighWatermark}
	switch word {
	case offsetEarliest:
		out.Offset = res.LowWatermark
	case offsetLatest:
		out.Offset = res.HighWatermark
	default:
		out.Timestamp = &ts
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
