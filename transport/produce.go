package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/streamhouse/streamhouse/fsm"
)

// recordJSON is one record as a produce request carries it. Topic is set
// only in a single-record request (a batch names its topic once).
type recordJSON struct {
	Topic *string `json:"topic"`
	// Key: absent or null = null key; "" = empty (non-null) key.
	Key *string `json:"key"`
	// Value: a string, or null for a null value (a tombstone); required.
	Value json.RawMessage `json:"value"`
	// Partition: absent or null = let the partitioner choose.
	Partition *int32 `json:"partition"`
	// Headers: {"k":"v",...} (document order) or [{"key","value"},...].
	Headers         json.RawMessage `json:"headers"`
	KeyEncoding     string          `json:"key_encoding"`
	ValueEncoding   string          `json:"value_encoding"`
	HeadersEncoding string          `json:"headers_encoding"`
	// Timestamp in unix ms; absent or 0 = the agent's clock.
	Timestamp *int64 `json:"timestamp"`
}

type produceBatchRequest struct {
	Topic   string            `json:"topic"`
	Records []json.RawMessage `json:"records"`
}

type offsetJSON struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

type produceBatchResponse struct {
	Offsets []offsetJSON `json:"offsets"`
}

// toProduceRecord validates rj; prefix ("" or "records[i].") names fields in
// error messages.
func (s *HTTPServer) toProduceRecord(prefix string, rj *recordJSON) (fsm.ProduceRecord, error) {
	out := fsm.ProduceRecord{Partition: -1}
	keyEnc, err := parseEncoding(prefix+"key_encoding", rj.KeyEncoding)
	if err != nil {
		return out, err
	}
	valEnc, err := parseEncoding(prefix+"value_encoding", rj.ValueEncoding)
	if err != nil {
		return out, err
	}
	hdrEnc, err := parseEncoding(prefix+"headers_encoding", rj.HeadersEncoding)
	if err != nil {
		return out, err
	}
	if out.Record.Value, err = recordValue(prefix, rj.Value, valEnc); err != nil {
		return out, err
	}
	if rj.Key != nil {
		if out.Record.Key, err = decodeBytes(prefix+"key", *rj.Key, keyEnc); err != nil {
			return out, err
		}
	}
	if rj.Partition != nil {
		if *rj.Partition < 0 {
			return out, badRequest("%spartition must not be negative (omit it to let the partitioner choose), got %d", prefix, *rj.Partition)
		}
		out.Partition = *rj.Partition
	}
	if rj.Timestamp != nil {
		if *rj.Timestamp < 0 {
			return out, badRequest("%stimestamp must be unix milliseconds >= 0, got %d", prefix, *rj.Timestamp)
		}
		out.Record.Timestamp = *rj.Timestamp
	}
	raw, err := s.parseHeaders(prefix+"headers", rj.Headers)
	if err != nil {
		return out, err
	}
	if out.Record.Headers, err = decodeHeaders(prefix+"headers", raw, hdrEnc); err != nil {
		return out, err
	}
	return out, nil
}

func (s *HTTPServer) handleProduce(w http.ResponseWriter, r *http.Request) error {
	var req recordJSON
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Topic == nil || *req.Topic == "" {
		return badRequest("topic is required (a non-empty string)")
	}
	if err := s.authorize(r, ScopeWrite, *req.Topic); err != nil {
		return err
	}
	rec, err := s.toProduceRecord("", &req)
	if err != nil {
		return err
	}
	offs, err := s.produce(r, *req.Topic, []fsm.ProduceRecord{rec})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, offsetJSON{Partition: offs[0].Partition, Offset: offs[0].Offset})
	return nil
}

// handleProduceBatch decodes a valid batch in one pass (decodeBatchFast);
// any other body goes through decodeBatch, which says what is wrong.
func (s *HTTPServer) handleProduceBatch(w http.ResponseWriter, r *http.Request) error {
	body, rerr := s.readRequestBody(w, r)
	topic, recs, ok := "", []fsm.ProduceRecord(nil), false
	if rerr == nil {
		var err error
		topic, recs, ok, err = s.decodeBatchFast(body, func(topic string) error { return s.authorize(r, ScopeWrite, topic) })
		if err != nil {
			return err
		}
	}
	if !ok {
		// The same bytes, then the same read error, as the body gave.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		var err error
		if topic, recs, err = s.decodeBatch(w, r); err != nil {
			return err
		}
	}
	offs, err := s.produce(r, topic, recs)
	if err != nil {
		return err
	}
	out := produceBatchResponse{Offsets: make([]offsetJSON, len(offs))}
	for i, o := range offs {
		out.Offsets[i] = offsetJSON{Partition: o.Partition, Offset: o.Offset}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxPresizedRequest is the largest declared Content-Length a request
// body's buffer is sized to before its bytes arrive; a longer body grows
// with what arrives, so a header alone cannot make the agent allocate.
const maxPresizedRequest = 1 << 20

// readRequestBody reads the request body, at most the body limit (a
// longer one ends in the *http.MaxBytesError the limit reader returns).
func (s *HTTPServer) readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.bodyLimit {
		return nil, &http.MaxBytesError{Limit: s.bodyLimit}
	}
	return readSized(http.MaxBytesReader(w, r.Body, s.bodyLimit), r.ContentLength, maxPresizedRequest)
}

// errReader fails every read with err, or ends (io.EOF) when err is nil.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// decodeBatch decodes and checks a produce batch record by record, naming
// the first field that is wrong (records[i].field). It authorizes the
// topic before it looks at the records.
func (s *HTTPServer) decodeBatch(w http.ResponseWriter, r *http.Request) (string, []fsm.ProduceRecord, error) {
	var req produceBatchRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return "", nil, err
	}
	if req.Topic == "" {
		return "", nil, badRequest("topic is required (a non-empty string)")
	}
	if err := s.authorize(r, ScopeWrite, req.Topic); err != nil {
		return "", nil, err
	}
	if req.Records == nil {
		return "", nil, badRequest("records is required (a non-empty array of records)")
	}
	if len(req.Records) == 0 {
		return "", nil, badRequest("records must not be empty")
	}
	recs := make([]fsm.ProduceRecord, len(req.Records))
	for i, raw := range req.Records {
		path := fmt.Sprintf("records[%d]", i)
		if isNull(raw) {
			return "", nil, badRequest("%s: expected a record object, got null", path)
		}
		var rj recordJSON
		if err := s.decodeStrict(path, raw, &rj); err != nil {
			return "", nil, err
		}
		if rj.Topic != nil {
			return "", nil, badRequest("%s.topic: a batch names its topic once, at the top level", path)
		}
		rec, err := s.toProduceRecord(path+".", &rj)
		if err != nil {
			return "", nil, err
		}
		recs[i] = rec
	}
	return req.Topic, recs, nil
}

// produce charges the key's produce quota, calls the Producer and checks
// it answered once per record.
func (s *HTTPServer) produce(r *http.Request, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	if err := s.cfg.Quotas.Take(r.Context(), QuotaProduce, ProduceBytes(recs)); err != nil {
		return nil, err
	}
	offs, err := s.prod.Produce(r.Context(), topic, recs)
	if err != nil {
		return nil, AfterProposal(err)
	}
	if len(offs) != len(recs) {
		// The records were acknowledged, but we cannot say where: do not
		// claim failure (a retry would duplicate them).
		return nil, fmt.Errorf("%w: producer returned %d offsets for %d records", fsm.ErrOutcomeUnknown, len(offs), len(recs))
	}
	return offs, nil
}

// plainString returns the contents of raw, valid JSON, when it is a string
// json.Unmarshal would return byte for byte: no escapes, valid UTF-8 (which
// Unmarshal would replace with U+FFFD).
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') >= 0 || !utf8.Valid(in) {
		return nil, false
	}
	return in, true
}

// recordValue decodes a record's value: a string (in enc), or JSON null
// for a null value, which stays distinct from "" on every path.
func recordValue(prefix string, raw json.RawMessage, enc encoding) ([]byte, error) {
	if raw == nil {
		return nil, badRequest("%svalue is required (a string, or null for a null value)", prefix)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	if v, ok := plainString(raw); ok && enc == encUTF8 {
		return append([]byte{}, v...), nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badRequest("%svalue: expected a string or null, got %s", prefix, clip(string(raw)))
	}
	return decodeBytes(prefix+"value", v, enc)
}
