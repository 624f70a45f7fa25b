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
	Value           string         `json:"value"`
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
	req := fsm.FetchRequest{Topic: q.Get("topic")}
	if req.Topic == "" {
		return badRequest("query parameter topic is required")
	}
	if err := s.authorize(r, ScopeRead, req.Topic); err != nil {
		return err
	}
	part, err := queryInt(q, "partition", 32, 0)
	if err != nil {
		return err
	}
	if part < 0 {
		return badRequest("query parameter partition must not be negative, got %d", part)
	}
	req.Partition = int32(part)
	maxRecords, err := queryInt(q, "max_records", 32, defaultMaxRecords)
	if err != nil {
		return err
	}
	if maxRecords <= 0 {
		return badRequest("query parameter max_records must be positive, got %d", maxRecords)
	}
	req.MaxRecords = int(maxRecords)
	maxBytes, err := queryInt(q, "max_bytes", 32, 0)
	if err != nil {
		return err
	}
	if maxBytes < 0 {
		return badRequest("query parameter max_bytes must not be negative, got %d", maxBytes)
	}
	req.MaxBytes = int(maxBytes)
	if req.WaitMs, err = queryInt(q, "wait_ms", 64, 0); err != nil {
		return err
	}
	if req.WaitMs < 0 {
		return badRequest("query parameter wait_ms must not be negative, got %d", req.WaitMs)
	}
	force := false
	switch enc := q.Get("encoding"); enc {
	case "", "auto":
	case base64Name:
		force = true
	default:
		return badRequest("query parameter encoding must be \"auto\" or \"base64\", got %q", clip(enc))
	}

	offset := q.Get("offset")
	switch offset {
	case "", offsetEarliest, offsetLatest:
		info, err := s.partitionInfo(req.Topic, req.Partition)
		if err != nil {
			return err
		}
		req.Offset = info.LowWatermark
		if offset == offsetLatest {
			req.Offset = info.NextOffset
		}
	default:
		n, err := strconv.ParseInt(offset, 10, 64)
		if err != nil || n < 0 {
			return badRequest("query parameter offset must be a non-negative integer, %q or %q, got %q",
				offsetEarliest, offsetLatest, clip(offset))
		}
		req.Offset = n
	}

	// Long polls end early when the server shuts down.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()

	// The bytes returned are charged after the read: an over-quota key's
	// next fetch is throttled (docs/security.md, "Resource limits").
	if err := s.cfg.Quotas.Take(r.Context(), QuotaFetch, 0); err != nil {
		return err
	}
	res, err := s.fetch.Fetch(ctx, req)
	defer func() { s.cfg.Quotas.Charge(r.Context(), QuotaFetch, FetchedBytes(res.Records)) }()
	var oor *fsm.OffsetOutOfRangeError
	if err != nil && (offset == "" || offset == offsetEarliest) && errors.As(err, &oor) && oor.LowWatermark > req.Offset {
		// Retention moved the low watermark between resolving "earliest"
		// and reading: earliest now means the new low watermark.
		req.Offset = oor.LowWatermark
		res, err = s.fetch.Fetch(ctx, req)
	}
	if err != nil {
		if s.stopping.Err() != nil && r.Context().Err() == nil && ctx.Err() != nil {
			return restError(nil, Unavailable(OpRead, " (the agent is shutting down; retry, possibly against another agent)"))
		}
		return err
	}

	out := consumeResponse{
		Records:    make([]recordOutJSON, len(res.Records)),
		NextOffset: res.NextOffset, HighWatermark: res.HighWatermark, LowWatermark: res.LowWatermark,
	}
	for i := range res.Records {
		out.Records[i] = toRecordOut(req.Partition, &res.Records[i], force)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
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
	v, b64 := encodeBytes(fr.Value, force)
	o.Value = v
	if b64 {
		o.ValueEncoding = base64Name
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
