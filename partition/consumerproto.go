package partition

import (
	"encoding/binary"
	"errors"

	"github.com/streamhouse/streamhouse/fsm"
)

// errAssignmentFormat: bytes that are not a ConsumerMemberAssignment.
var errAssignmentFormat = errors.New("not a consumer member assignment")

// DecodeConsumerAssignment reads the topics and partitions of a Kafka
// ConsumerMemberAssignment (any version: int16 version, then an array of
// topic name + int32 partitions; the user data after them is not read).
// The coordinator decodes assignments only to check and describe them, so
// it needs no client library.
func DecodeConsumerAssignment(b []byte) ([]fsm.TopicPartitions, error) {
	r := kreader{b: b, ok: true}
	if v := r.i16(); v < 0 {
		return nil, errAssignmentFormat
	}
	n := r.i32()
	if n < 0 || int(n) > len(r.b)/6 {
		return nil, errAssignmentFormat
	}
	out := make([]fsm.TopicPartitions, 0, n)
	for i := int32(0); i < n && r.ok; i++ {
		tp := fsm.TopicPartitions{Topic: r.str()}
		np := r.i32()
		if np < 0 || int(np) > len(r.b)/4 {
			return nil, errAssignmentFormat
		}
		for k := int32(0); k < np; k++ {
			tp.Partitions = append(tp.Partitions, r.i32())
		}
		out = append(out, tp)
	}
	if !r.ok {
		return nil, errAssignmentFormat
	}
	return out, nil
}

// kreader reads Kafka's big-endian non-flexible encoding.
type kreader struct {
	b  []byte
	ok bool
}

func (r *kreader) take(n int) []byte {
	if !r.ok || n < 0 || len(r.b) < n {
		r.ok = false
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *kreader) i16() int16 {
	p := r.take(2)
	if p == nil {
		return -1
	}
	return int16(binary.BigEndian.Uint16(p))
}

func (r *kreader) i32() int32 {
	p := r.take(4)
	if p == nil {
		return -1
	}
	return int32(binary.BigEndian.Uint32(p))
}

func (r *kreader) str() string {
	n := r.i16()
	return string(r.take(int(n)))
}
