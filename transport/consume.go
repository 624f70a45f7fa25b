package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/streamhouse/streamhouse/fsm"
)

// Consume defaults.
const (
	defaultMaxRecords = 100
	offsetEarliest    = "earliest"
	offsetLatest      = "latest"
)

type recordOutJSON struct {
	Partition       int32          `json:"partition"`
	Offset          int64          `json:"offset"`
	Timestamp       int64          `json:"timestamp"`
	Key             *string        `json:"key"`
	Value           *string        `json:"value"` // null: a null value
	Headers         orderedHeaders `json:"headers"`
	KeyEncoding     string         `json:"key_encoding,omitempty"`
	ValueEncoding   string         `json:"value_encoding,omitempty"`
	HeadersEncoding string         `json:"headers_encoding,omitempty"`
}

type consumeResponse struct {
	Records       []recordOutJSON `json:"records"`
	NextOffset    int64           `json:"next_offset"`
	HighWatermark int64           `json:"high_watermark"`
	LowWatermark  int64           `json:"low_watermark"`
}

// queryInt parses an optional integer query parameter; "" means absent.
func queryInt(q url.Values, name string, bits int, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, bits)
	if err != nil {
		return 0, badRequest("query parameter %s must be a %d-bit integer, got %q", name, bits, clip(v))
	}
	return n, nil
}

func (s *HTTPServer) handleConsume(w http.ResponseWriter, r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("malformed query string: %v", err)
	}
	topic := q.Get("topic")
	if topic == "" {
		return badRequest("query parameter topic is required")
	}
	if err := s.authorize(r, ScopeRead, topic); err != nil {
		return err
	}
	cq, err := parseConsumeQuery(q)
	if err != nil {
		return err
	}
	cq.req.Topic = topic
	if err := s.resolveOffset(&cq); err != nil {
		return err
	}
	res, err := s.consume(r, cq)
	// The bytes returned are charged after the read: an over-quota key's
	// next fetch is throttled (docs/security.md, "Resource limits").
	s.cfg.Quotas.Charge(r.Context(), QuotaFetch, FetchedBytes(res.Records))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, consumeResponseOf(cq, res))
	return nil
}

// consumeQuery is a parsed consume request.
type consumeQuery struct {
	req fsm.FetchRequest
	// offset is the offset parameter as given: "", earliest, latest or a
	// number (already in req.Offset).
	offset string
	// force: encoding=base64 (keys, values and headers always base64).
	force bool
}

// parseConsumeQuery reads every consume parameter but topic, checking them
// in this order: partition, max_records, max_bytes, wait_ms, encoding,
// offset.
func parseConsumeQuery(q url.Values) (consumeQuery, error) {
	var cq consumeQuery
	part, err := queryNonNegative(q, "partition", 32)
	if err != nil {
		return cq, err
	}
	cq.req.Partition = int32(part)
	maxRecords, err := queryInt(q, "max_records", 32, defaultMaxRecords)
	if err != nil {
		return cq, err
	}
	if maxRecords <= 0 {
		return cq, badRequest("query parameter max_records must be positive, got %d", maxRecords)
	}
	cq.req.MaxRecords = int(maxRecords)
	maxBytes, err := queryNonNegative(q, "max_bytes", 32)
	if err != nil {
		return cq, err
	}
	cq.req.MaxBytes = int(maxBytes)
	if cq.req.WaitMs, err = queryNonNegative(q, "wait_ms", 64); err != nil {
		return cq, err
	}
	switch enc := q.Get("encoding"); enc {
	case "", "auto":
	case base64Name:
		cq.force = true
	default:
		return cq, badRequest("query parameter encoding must be \"auto\" or \"base64\", got %q", clip(enc))
	}
	cq.offset = q.Get("offset")
	switch cq.offset {
	case "", offsetEarliest, offsetLatest:
	default:
		n, err := strconv.ParseInt(cq.offset, 10, 64)
		if err != nil || n < 0 {
			return cq, badRequest("query parameter offset must be a non-negative integer, %q or %q, got %q",
				offsetEarliest, offsetLatest, clip(cq.offset))
		}
		cq.req.Offset = n
	}
	return cq, nil
}

// queryNonNegative parses an optional integer query parameter that must
// not be negative; "" means 0.
func queryNonNegative(q url.Values, name string, bits int) (int64, error) {
	n, err := queryInt(q, name, bits, 0)
	if err == nil && n < 0 {
		err = badRequest("query parameter %s must not be negative, got %d", name, n)
	}
	return n, err
}

// resolveOffset turns earliest (the default) and latest into the
// partition's low watermark or next offset.
func (s *HTTPServer) resolveOffset(cq *consumeQuery) error {
	switch cq.offset {
	case "", offsetEarliest, offsetLatest:
	default:
		return nil
	}
	info, err := s.partitionInfo(cq.req.Topic, cq.req.Partition)
	if err != nil {
		return err
	}
	cq.req.Offset = info.LowWatermark
	if cq.offset == offsetLatest {
		cq.req.Offset = info.NextOffset
	}
	return nil
}

// consume reads cq.req once the key's fetch quota allows it. Long polls
// end early when the server shuts down (503: retry elsewhere).
func (s *HTTPServer) consume(r *http.Request, cq consumeQuery) (fsm.FetchResult, error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	if err := s.cfg.Quotas.Take(r.Context(), QuotaFetch, 0); err != nil {
		return fsm.FetchResult{}, err
	}
	res, err := s.fetch.Fetch(ctx, cq.req)
	var oor *fsm.OffsetOutOfRangeError
	if err != nil && (cq.offset == "" || cq.offset == offsetEarliest) && errors.As(err, &oor) && oor.LowWatermark > cq.req.Offset {
		// Retention moved the low watermark between resolving "earliest"
		// and reading: earliest now means the new low watermark.
		cq.req.Offset = oor.LowWatermark
		res, err = s.fetch.Fetch(ctx, cq.req)
	}
	if err != nil && s.stopping.Err() != nil && r.Context().Err() == nil && ctx.Err() != nil {
		return res, restError(nil, Unavailable(OpRead, " (the agent is shutting down; retry, possibly against another agent)"))
	}
	return res, err
}

func consumeResponseOf(cq consumeQuery, res fsm.FetchResult) consumeResponse {
	out := consumeResponse{
		Records:    make([]recordOutJSON, len(res.Records)),
		NextOffset: res.NextOffset, HighWatermark: res.HighWatermark, LowWatermark: res.LowWatermark,
	}
	for i := range res.Records {
		out.Records[i] = toRecordOut(cq.req.Partition, &res.Records[i], cq.force)
	}
	return out
}

// partitionInfo finds one partition of a topic, to resolve earliest/latest.
func (s *HTTPServer) partitionInfo(topic string, part int32) (fsm.PartitionInfo, error) {
	ps, err := s.topics.Partitions(topic)
	if err != nil {
		return fsm.PartitionInfo{}, err
	}
	for _, p := range ps {
		if p.Partition == part {
			return p, nil
		}
	}
	return fsm.PartitionInfo{}, fmt.Errorf("%w: partition %d of topic %q (it has %d)", fsm.ErrPartitionInvalid, part, topic, len(ps))
}

// toRecordOut renders a fetched record. Keys and values are JSON strings
// when valid UTF-8 (unless force), else base64 with a *_encoding marker.
// Header values likewise, all-or-nothing per record since the header object
// has no room for per-value markers.
func toRecordOut(part int32, fr *fsm.FetchedRecord, force bool) recordOutJSON {
	o := recordOutJSON{Partition: part, Offset: fr.Offset, Timestamp: fr.Timestamp, Headers: orderedHeaders{}}
	if fr.Key != nil {
		k, b64 := encodeBytes(fr.Key, force)
		o.Key = &k
		if b64 {
			o.KeyEncoding = base64Name
		}
	}
	if fr.Value != nil {
		v, b64 := encodeBytes(fr.Value, force)
		o.Value = &v
		if b64 {
			o.ValueEncoding = base64Name
		}
	}
	if len(fr.Headers) > 0 {
		hb64 := false
		for _, h := range fr.Headers {
			if !utf8.Valid(h.Value) {
				hb64 = true
				break
			}
		}
		o.Headers = make(orderedHeaders, len(fr.Headers))
		for i, h := range fr.Headers {
			hv, _ := encodeBytes(h.Value, hb64)
			o.Headers[i] = rawHeader{key: h.Key, value: hv}
		}
		if hb64 {
			o.HeadersEncoding = base64Name
		}
	}
	return o
}
