// Package grpcbuf holds the buffer pool and the proto codec that the gRPC
// server (transport/grpcapi) and the Go client (transport/client) use in
// place of gRPC's defaults, through per-server and per-connection options
// (nothing in the process is re-registered).
//
// gRPC's default pool has five size classes (256 B, 4 KiB, 16 KiB, 32 KiB,
// 1 MiB) and clears every buffer it hands out again. A produce request of
// 1,000 records of 100 bytes (about 130 KiB) takes a 1 MiB buffer, and
// clearing it was 6.5 % of the load generator's CPU and 2.3 % of an agent's
// at saturation (transport/GRPC.md, "Buffers"). This pool has a class for
// every power of two from 256 B to 16 MiB and does not clear: every buffer
// gRPC v1.85 or this codec takes from it is written in full before it is
// read — a data frame read from the socket, frames merged or a message
// combined by copying exactly their bytes, a decompression trimmed to what
// it read, a marshal kept at the length it wrote.
package grpcbuf

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

const (
	minShift = 8  // 256 B, the smallest class
	maxShift = 24 // 16 MiB, the largest class
)

// Pool is a mem.BufferPool of power-of-two size classes whose buffers are
// not cleared when they are handed out again. Safe for concurrent use.
type Pool struct {
	classes [maxShift - minShift + 1]sync.Pool
}

var _ mem.BufferPool = (*Pool)(nil)

// Default is the pool the server and the client share.
var Default = &Pool{}

// Get returns a buffer of length n, from the smallest class that holds n;
// one longer than the largest class is allocated and never pooled.
func (p *Pool) Get(n int) *[]byte {
	c := classFor(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<(c+minShift))
	return &b
}

// Put returns b to the largest class its capacity fills; a buffer smaller
// than the smallest class or larger than twice the largest is dropped.
func (p *Pool) Put(b *[]byte) {
	c := classOf(cap(*b))
	if c < 0 {
		return
	}
	p.classes[c].Put(b)
}

// classFor is the index of the smallest class of at least n bytes, or -1
// when n is larger than the largest.
func classFor(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(n - 1)) // 2^shift >= n
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// classOf is the index of the largest class of at most c bytes, or -1.
func classOf(c int) int {
	if c < 1<<minShift || c >= 2<<maxShift {
		return -1
	}
	shift := min(bits.Len(uint(c))-1, maxShift) // 2^shift <= c
	return shift - minShift
}

// Codec is gRPC's proto codec with its buffers taken from Default, for
// grpc.ForceServerCodecV2 and grpc.ForceCodecV2 (gRPC's own codec always
// uses the process-wide default pool, which a library must not replace).
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is the content subtype, the same as gRPC's proto codec's.
func (Codec) Name() string { return "proto" }

// Marshal encodes v; a message above gRPC's pooling threshold goes into a
// pooled buffer of exactly its size.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, errNotProto(v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // Size above computed it
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := Default.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		Default.Put(buf)
		return nil, err
	}
	if cap(out) != cap(*buf) {
		// Longer than Size said (the message changed meanwhile): the
		// marshal moved to a new array, and the pool gets its buffer back.
		Default.Put(buf)
		return mem.BufferSlice{mem.SliceBuffer(out)}, nil
	}
	*buf = out // the message, however long, in the pooled array
	return mem.BufferSlice{mem.NewBuffer(buf, Default)}, nil
}

// Unmarshal decodes data into v; data made of several buffers is first
// copied into one pooled buffer. proto.Unmarshal copies what it keeps, so
// the buffer goes back to the pool afterwards.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return errNotProto(v)
	}
	buf := data.MaterializeToBuffer(Default)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// messageOf is v as a proto message (an older API's message adapted), or
// nil, as gRPC's own codec takes it.
func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	case protoadapt.MessageV2:
		return v
	}
	return nil
}

func errNotProto(v any) error {
	return fmt.Errorf("grpcbuf: message is %T, want proto.Message", v)
}
