package transport

import (
	"bytes"
	"context"
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

// producerOwnerHeader carries fsm.IdempotentBatch.Owner (the caller's API
// key name) of a forwarded idempotent batch. A header rather than a field
// of the body keeps the body's format, so agents of the previous version
// still read it (and ignore the owner, as they always did).
const producerOwnerHeader = "Streamhouse-Producer-Owner"

const (
	// maxForwardBody bounds a forwarded request and a produce's answer.
	maxForwardBody = 256 << 20
	// maxIdempotentAnswer bounds the answer to a forwarded idempotent batch.
	maxIdempotentAnswer = 1 << 20
)

// ProduceRPCHandler serves forwarded produce requests (PeerProducePath).
func ProduceRPCHandler(p LocalProducer) http.Handler {
	return forwardHandler(func(r *http.Request, body []byte) (string, []byte, error) {
		topic, recs, err := decodeForward(body)
		if err != nil {
			return "", nil, err
		}
		offs, err := p.ProduceLocal(r.Context(), topic, recs)
		return "application/octet-stream", encodeOffsets(offs), err
	})
}

// IdempotentRPCHandler serves forwarded idempotent batches
// (PeerIdempotentPath).
func IdempotentRPCHandler(p LocalProducer) http.Handler {
	return forwardHandler(func(r *http.Request, body []byte) (string, []byte, error) {
		b, err := decodeIdempotent(body)
		if err != nil {
			return "", nil, err
		}
		b.Owner = r.Header.Get(producerOwnerHeader)
		res, err := p.ProduceIdempotentLocal(r.Context(), b)
		if err != nil {
			return "", nil, err
		}
		answer, err := json.Marshal(idempotentAnswer{BaseOffset: res.BaseOffset, Count: res.Count, Duplicate: res.Duplicate})
		return "application/json", append(answer, '\n'), err
	})
}

// maxPresizedBody is the largest declared length ReadBody allocates before
// reading: a longer body grows as it arrives.
const maxPresizedBody = 16 << 20

// ReadBody reads a peer request's body, at most limit+1 bytes (more is
// the caller's "too large"). A Content-Length within the limit sizes the
// buffer once instead of growing it from 512 bytes by doubling (a
// forwarded batch of records was allocated and copied about twice over).
// It serves the peer routes (forwards here, the Raft leader's apply in
// cluster), which are authenticated: a declared length is trusted with up
// to maxPresizedBody before the bytes arrive.
func ReadBody(r *http.Request, limit int) ([]byte, error) {
	return readSized(io.LimitReader(r.Body, int64(limit)+1), r.ContentLength, int64(min(limit, maxPresizedBody)))
}

// readSized reads body to its end: into one buffer of the declared length
// when that is known and at most presizeMax, else into a buffer that grows
// with what arrives (a declared length alone never allocates more than
// presizeMax). On an error it returns what was read with it.
func readSized(body io.Reader, declared, presizeMax int64) ([]byte, error) {
	if declared >= 0 && declared <= presizeMax {
		b := make([]byte, declared)
		n, err := io.ReadFull(body, b)
		return b[:n], err
	}
	return io.ReadAll(body)
}

// forwardHandler serves one forwarding route: it reads the request body
// (at most maxForwardBody), lets apply decode and apply it, and writes
// apply's answer, or its error in the REST error body with the REST status
// so the caller can restore the write-outcome class (forwardedError).
func forwardHandler(apply func(r *http.Request, body []byte) (contentType string, answer []byte, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := ReadBody(r, maxForwardBody)
		if err == nil && len(body) > maxForwardBody {
			err = fmt.Errorf("%w: forwarded request too large", fsm.ErrInvalidArgument)
		}
		var contentType string
		var answer []byte
		if err == nil {
			contentType, answer, err = apply(r, body)
		}
		if err != nil {
			ae := classify(OpWrite, err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ae.status)
			_ = json.NewEncoder(w).Encode(errorResponse{Error: errorDetail{Code: ae.code, Message: err.Error()}})
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(answer)
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
	body, err := f.call(ctx, nodeID, PeerProducePath, encodeForward(topic, recs), "", maxForwardBody)
	if err != nil {
		return nil, err
	}
	return decodeOffsets(body, len(recs), nodeID)
}

// ForwardIdempotent sends an idempotent batch to the partition leader once,
// with the same error classes as ForwardProduce.
func (f *PeerForwarder) ForwardIdempotent(ctx context.Context, nodeID string, b fsm.IdempotentBatch) (fsm.IdempotentResult, error) {
	body, err := f.call(ctx, nodeID, PeerIdempotentPath, encodeIdempotent(b), b.Owner, maxIdempotentAnswer)
	if err != nil {
		return fsm.IdempotentResult{}, err
	}
	var a idempotentAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Count != int32(len(b.Records)) {
		return fsm.IdempotentResult{}, malformedAnswer(nodeID)
	}
	return fsm.IdempotentResult{BaseOffset: a.BaseOffset, Count: a.Count, Duplicate: a.Duplicate}, nil
}

// call posts one forwarded request to path on nodeID (owner, when set, in
// producerOwnerHeader) and returns the body of a 200 answer, read up to
// maxAnswer bytes. Its errors carry the write-outcome class: unavailable
// when the request never reached the leader or the leader says it was not
// applied, outcome unknown when it may have been.
func (f *PeerForwarder) call(ctx context.Context, nodeID, path string, body []byte, owner string, maxAnswer int64) ([]byte, error) {
	addr, ok := f.Resolve(nodeID)
	if !ok {
		return nil, fmt.Errorf("%w: no address known for agent %q (partition leader)", fsm.ErrUnavailable, nodeID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fsm.ErrUnavailable, err)
	}
	if owner != "" {
		req.Header.Set(producerOwnerHeader, owner)
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
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of agent %q: %v", fsm.ErrOutcomeUnknown, nodeID, err)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(answer, &er)
		return nil, forwardedError(nodeID, resp.StatusCode, er.Error)
	}
	return answer, nil
}

// forwardedSentinels restore the sentinel of an error the leader answered,
// by its code; any other code (outcome_unknown, internal, anything
// unexpected) leaves the outcome unknown.
var forwardedSentinels = map[string]error{
	CodeUnavailable:        fsm.ErrUnavailable,
	CodeNotFound:           fsm.ErrTopicNotFound,
	CodeBadRequest:         fsm.ErrInvalidArgument,
	CodeRecordTooLarge:     fsm.ErrRecordTooLarge,
	CodeProducerFenced:     fsm.ErrProducerFenced,
	CodeUnknownProducer:    fsm.ErrUnknownProducer,
	CodeOutOfOrderSequence: fsm.ErrOutOfOrderSequence,
	CodePermissionDenied:   ErrPermissionDenied, // e.g. a producer id of another API key
}

// forwardedError restores the sentinel of an error answered by the leader.
func forwardedError(node string, status int, d errorDetail) error {
	base, ok := forwardedSentinels[d.Code]
	if !ok {
		base = fsm.ErrOutcomeUnknown
	}
	return fmt.Errorf("%w: agent %q answered %d: %s", base, node, status, d.Message)
}
