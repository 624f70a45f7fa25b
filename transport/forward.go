package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/streamhouse/streamhouse/fsm"
)

// LocalProducer is the receiving side of a forwarded produce: it appends to
// partitions this agent leads and never forwards again.
type LocalProducer interface {
	ProduceLocal(ctx context.Context, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error)
	ProduceIdempotentLocal(ctx context.Context, b fsm.IdempotentBatch) (fsm.IdempotentResult, error)
}

// PeerIdempotentPath is the peer-RPC route of a forwarded idempotent batch.
const PeerIdempotentPath = "/peer/v1/produce-idempotent"

// PeerProducePath is the peer-RPC route of a forwarded produce.
const PeerProducePath = "/peer/v1/produce"

// maxForwardBody bounds a forwarded produce request.
const maxForwardBody = 256 << 20

// encodeForward writes: uvarint topic length, topic, uvarint n, n varint
// partitions, then the fsm.AppendRecords blob of the n records.
func encodeForward(topic string, recs []fsm.ProduceRecord) []byte {
	b := binary.AppendUvarint(nil, uint64(len(topic)))
	b = append(b, topic...)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	rs := make([]fsm.Record, len(recs))
	for i, r := range recs {
		b = binary.AppendVarint(b, int64(r.Partition))
		rs[i] = r.Record
	}
	return fsm.AppendRecords(b, rs)
}

func decodeForward(b []byte) (string, []fsm.ProduceRecord, error) {
	bad := fmt.Errorf("%w: malformed forwarded produce", fsm.ErrInvalidArgument)
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, bad
	}
	topic := string(b[k : k+int(n)])
	b = b[k+int(n):]
	cnt, k := binary.Uvarint(b)
	if k <= 0 || cnt > uint64(len(b)) {
		return "", nil, bad
	}
	b = b[k:]
	parts := make([]int32, cnt)
	for i := range parts {
		v, k := binary.Varint(b)
		if k <= 0 || v < 0 || v > 1<<31-1 {
			return "", nil, bad
		}
		parts[i] = int32(v)
		b = b[k:]
	}
	rs, err := fsm.DecodeRecords(b, int(cnt))
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	out := make([]fsm.ProduceRecord, cnt)
	for i := range out {
		out[i] = fsm.ProduceRecord{Partition: parts[i], Record: rs[i]}
	}
	return topic, out, nil
}

// ProduceRPCHandler serves forwarded produce requests. Errors use the REST
// error body, so the caller can restore the write-outcome class.
func ProduceRPCHandler(p LocalProducer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
		if err == nil && len(body) > maxForwardBody {
			err = fmt.Errorf("%w: forwarded request too large", fsm.ErrInvalidArgument)
		}
		var offs []fsm.RecordOffset
		if err == nil {
			var topic string
			var recs []fsm.ProduceRecord
			topic, recs, err = decodeForward(body)
			if err == nil {
				offs, err = p.ProduceLocal(r.Context(), topic, recs)
			}
		}
		if err != nil {
			ae := classify(OpWrite, err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ae.status)
			_ = json.NewEncoder(w).Encode(errorResponse{Error: errorDetail{Code: ae.code, Message: err.Error()}})
			return
		}
		out := binary.AppendUvarint(nil, uint64(len(offs)))
		for _, o := range offs {
			out = binary.AppendVarint(out, int64(o.Partition))
			out = binary.AppendVarint(out, o.Offset)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(out)
	})
}

// PeerForwarder forwards produce requests to the partition leader's peer
// RPC endpoint (it implements partition.Forwarder).
type PeerForwarder struct {
	Client *http.Client
	// Resolve maps a node ID to its peer host:port.
	Resolve func(nodeID string) (string, bool)
}

// ForwardProduce sends recs to nodeID once. Errors wrap fsm.ErrUnavailable
// when the request definitely was not applied (no address, connection
// refused, the leader answered "unavailable") and fsm.ErrOutcomeUnknown when
// it may have been.
func (f *PeerForwarder) ForwardProduce(ctx context.Context, nodeID, topic string, recs []fsm.ProduceRecord) ([]fsm.RecordOffset, error) {
	addr, ok := f.Resolve(nodeID)
	if !ok {
		return nil, fmt.Errorf("%w: no address known for agent %q (partition leader)", fsm.ErrUnavailable, nodeID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+PeerProducePath, bytes.NewReader(encodeForward(topic, recs)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w: agent %q at %s unreachable: %v", fsm.ErrUnavailable, nodeID, addr, err)
		}
		return nil, fmt.Errorf("%w: forwarding to agent %q: %v", fsm.ErrOutcomeUnknown, nodeID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of agent %q: %v", fsm.ErrOutcomeUnknown, nodeID, err)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(body, &er)
		return nil, forwardedError(nodeID, resp.StatusCode, er.Error)
	}
	n, k := binary.Uvarint(body)
	if k <= 0 || n != uint64(len(recs)) {
		return nil, fmt.Errorf("%w: agent %q answered with %d offsets for %d records", fsm.ErrOutcomeUnknown, nodeID, n, len(recs))
	}
	body = body[k:]
	out := make([]fsm.RecordOffset, n)
	for i := range out {
		p, k1 := binary.Varint(body)
		if k1 <= 0 {
			return nil, fmt.Errorf("%w: malformed answer from agent %q", fsm.ErrOutcomeUnknown, nodeID)
		}
		o, k2 := binary.Varint(body[k1:])
		if k2 <= 0 {
			return nil, fmt.Errorf("%w: malformed answer from agent %q", fsm.ErrOutcomeUnknown, nodeID)
		}
		out[i] = fsm.RecordOffset{Partition: int32(p), Offset: o}
		body = body[k1+k2:]
	}
	return out, nil
}

// forwardedError restores the sentinel of an error answered by the leader.
func forwardedError(node string, status int, d errorDetail) error {
	var base error
	switch d.Code {
	case CodeUnavailable:
		base = fsm.ErrUnavailable
	case CodeNotFound:
		base = fsm.ErrTopicNotFound
	case CodeBadRequest:
		base = fsm.ErrInvalidArgument
	case CodeRecordTooLarge:
		base = fsm.ErrRecordTooLarge
	case CodeProducerFenced:
		base = fsm.ErrProducerFenced
	case CodeUnknownProducer:
		base = fsm.ErrUnknownProducer
	case CodeOutOfOrderSequence:
		base = fsm.ErrOutOfOrderSequence
	case CodePermissionDenied: // e.g. a producer id of another API key
		base = ErrPermissionDenied
	default: // outcome_unknown, internal, anything unexpected
		base = fsm.ErrOutcomeUnknown
	}
	return fmt.Errorf("%w: agent %q answered %d: %s", base, node, status, d.Message)
}
