package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// The bodies of the forwarding routes (PEER.md). Agents of one version
// forward to each other: these formats never change shape.

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

// encodeOffsets writes the answer of a forwarded produce: uvarint n, then
// n pairs of varint partition, varint offset.
func encodeOffsets(offs []fsm.RecordOffset) []byte {
	out := binary.AppendUvarint(nil, uint64(len(offs)))
	for _, o := range offs {
		out = binary.AppendVarint(out, int64(o.Partition))
		out = binary.AppendVarint(out, o.Offset)
	}
	return out
}

// decodeOffsets reads node's answer to a forwarded produce of want
// records. A malformed answer leaves the outcome unknown.
func decodeOffsets(body []byte, want int, node string) ([]fsm.RecordOffset, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n != uint64(want) {
		return nil, fmt.Errorf("%w: agent %q answered with %d offsets for %d records", fsm.ErrOutcomeUnknown, node, n, want)
	}
	body = body[k:]
	out := make([]fsm.RecordOffset, n)
	for i := range out {
		p, k1 := binary.Varint(body)
		if k1 <= 0 {
			return nil, malformedAnswer(node)
		}
		o, k2 := binary.Varint(body[k1:])
		if k2 <= 0 {
			return nil, malformedAnswer(node)
		}
		out[i] = fsm.RecordOffset{Partition: int32(p), Offset: o}
		body = body[k1+k2:]
	}
	return out, nil
}

func malformedAnswer(node string) error {
	return fmt.Errorf("%w: malformed answer from agent %q", fsm.ErrOutcomeUnknown, node)
}

// encodeIdempotent writes: uvarint topic length, topic, varint partition,
// uvarint producer id, uvarint epoch, varint base sequence, uvarint n, then
// the fsm.AppendRecords blob of the n records. The batch's Owner travels in
// producerOwnerHeader.
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

// idempotentAnswer is the (JSON) answer of a forwarded idempotent batch.
type idempotentAnswer struct {
	BaseOffset int64 `json:"base_offset"`
	Count      int32 `json:"count"`
	Duplicate  bool  `json:"duplicate"`
}
