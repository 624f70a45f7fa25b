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

// producerOwnerHeader carries fsm.IdempotentBatch.Owner (the caller's API
// key name) of a forwarded idempotent batch. A header rather than a field
// of the body keeps the body's format, so agents of the previous version
// still read it (and ignore the owner, as they always did).
const producerOwnerHeader = "Streamhouse-Producer-Owner"

// encodeIdempotent writes: uvarint topic length, topic, varint partition,
// uvarint producer id, uvarint epoch, varint base sequence, uvarint n, then
// the fsm.AppendRecords blob of the n records.
func encodeIdempotent(b fsm.IdempotentBatch) []byte {
	out := binary.AppendUvarint(nil, uint64(len(b.Topic)))
	out = append(out, b.Topic...)
	out = binary.AppendVarint(out, int64(b.Partition))
	out = binary.AppendUvarint(out, b.Producer.ID)
	out = binary.AppendUvarint(out, uint64(b.Producer.Epoch))
	out = binary.AppendVarint(out, b.BaseSeq)
	out = binary.AppendUvarint(out, uint64(len(b.Records)))
	return fsm.AppendRecords(out, b.Records)
}

func decodeIdempotent(p []byte) (fsm.IdempotentBatch, error) {
	var b fsm.IdempotentBatch
	bad := fmt.Errorf("%w: malformed forwarded idempotent batch", fsm.ErrInvalidArgument)
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return b, bad
	}
	b.Topic = string(p[k : k+int(n)])
	p = p[k+int(n):]
	part, k := binary.Varint(p)
	if k <= 0 || part < 0 || part > 1<<31-1 {
		return b, bad
	}
	b.Partition = int32(part)
	p = p[k:]
	if b.Producer.ID, k = binary.Uvarint(p); k <= 0 {
		return b, bad
	}
	p = p[k:]
	epoch, k := binary.Uvarint(p)
	if k <= 0 || epoch > 1<<32-1 {
		return b, bad
	}
	b.Producer.Epoch = uint32(epoch)
	p = p[k:]
	if b.BaseSeq, k = binary.Varint(p); k <= 0 {
		return b, bad
	}
	p = p[k:]
	cnt, k := binary.Uvarint(p)
	if k <= 0 || cnt > uint64(len(p)) {
		return b, bad
	}
	recs, err := fsm.DecodeRecords(p[k:], int(cnt))
	if err != nil {
		return b, fmt.Errorf("%w: %v", fsm.ErrInvalidArgument, err)
	}
	b.Records = recs
	return b, nil
}

type idempotentAnswer struct {
	BaseOffset int64 `json:"base_offset"`
	Count      int32 `json:"count"`
	Duplicate  bool  `json:"duplicate"`
}

// IdempotentRPCHandler serves forwarded idempotent batches.
func IdempotentRPCHandler(p LocalProducer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
		if err == nil && len(body) > maxForwardBody {
			err = fmt.Errorf("%w: forwarded request too large", fsm.ErrInvalidArgument)
		}
		var res fsm.IdempotentResult
		if err == nil {
			var b fsm.IdempotentBatch
			if b, err = decodeIdempotent(body); err == nil {
				b.Owner = r.Header.Get(producerOwnerHeader)
				res, err = p.ProduceIdempotentLocal(r.Context(), b)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			ae := classify(OpWrite, err)
			w.WriteHeader(ae.status)
			_ = json.NewEncoder(w).Encode(errorResponse{Error: errorDetail{Code: ae.code, Message: err.Error()}})
			return
		}
		_ = json.NewEncoder(w).Encode(idempotentAnswer{BaseOffset: res.BaseOffset, Count: res.Count, Duplicate: res.Duplicate})
	})
}

// ForwardIdempotent sends an idempotent batch to the partition leader once,
// with the same error classes as ForwardProduce.
func (f *PeerForwarder) ForwardIdempotent(ctx context.Context, nodeID string, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	addr, ok := f.Resolve(nodeID)
	if !ok {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: no address known for agent %q (partition leader)", fsm.ErrUnavailable, nodeID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+PeerIdempotentPath, bytes.NewReader(encodeIdempotent(b)))
	if err != nil {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	}
	if b.Owner != "" {
		req.Header.Set(producerOwnerHeader, b.Owner)
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fsm.IdempotentResult{}, fmt.Errorf("%w: agent %q at %s unreachable: %v", fsm.ErrUnavailable, nodeID, addr, err)
		}
		return fsm.IdempotentResult{}, fmt.Errorf("%w: forwarding to agent %q: %v", fsm.ErrOutcomeUnknown, nodeID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: reading the answer of agent %q: %v", fsm.ErrOutcomeUnknown, nodeID, err)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(body, &er)
		return fsm.IdempotentResult{}, forwardedError(nodeID, resp.StatusCode, er.Error)
	}
	var a idempotentAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Count != int32(len(b.Records)) {
		return fsm.IdempotentResult{}, fmt.Errorf("%w: malformed answer from agent %q", fsm.ErrOutcomeUnknown, nodeID)
	}
	return fsm.IdempotentResult{BaseOffset: a.BaseOffset, Count: a.Count, Duplicate: a.Duplicate}, nil
}
