package transport

import (
	"encoding/json"
	"fmt"
	"net/http"

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

func (s *HTTPServer) handleProduceBatch(w http.ResponseWriter, r *http.Request) error {
	var req produceBatchRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Topic == "" {
		return badRequest("topic is required (a non-empty string)")
	}
	if err := s.authorize(r, ScopeWrite, req.Topic); err != nil {
		return err
	}
	if req.Records == nil {
		return badRequest("records is required (a non-empty array of records)")
	}
	if len(req.Records) == 0 {
		return badRequest("records must not be empty")
	}
	recs := make([]fsm.ProduceRecord, len(req.Records))
	for i, raw := range req.Records {
		path := fmt.Sprintf("records[%d]", i)
		if isNull(raw) {
			return badRequest("%s: expected a record object, got null", path)
		}
		var rj recordJSON
		if err := s.decodeStrict(path, raw, &rj); err != nil {
			return err
		}
		if rj.Topic != nil {
			return badRequest("%s.topic: a batch names its topic once, at the top level", path)
		}
		rec, err := s.toProduceRecord(path+".", &rj)
		if err != nil {
			return err
		}
		recs[i] = rec
	}
	offs, err := s.produce(r, req.Topic, recs)
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

// recordValue decodes a record's value: a string (in enc), or JSON null
// for a null value, which stays distinct from "" on every path.
func recordValue(prefix string, raw json.RawMessage, enc encoding) ([]byte, error) {
	if raw == nil {
		return nil, badRequest("%svalue is required (a string, or null for a null value)", prefix)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badRequest("%svalue: expected a string or null, got %s", prefix, clip(string(raw)))
	}
	return decodeBytes(prefix+"value", v, enc)
}
