package transporttest

import "google.golang.org/grpc/mem"

// RawCodec is a gRPC codec (grpc.ForceCodecV2) that sends a RawMessage's
// pre-encoded bytes as they are, so that a test client can send the same
// large request many times without allocating a copy per call (when the
// test measures the server's allocations, say). It receives into a
// RawMessage too.
type RawCodec struct{}

// RawMessage is an encoded protobuf message.
type RawMessage struct{ B []byte }

// Marshal implements encoding.CodecV2.
func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*RawMessage).B)}, nil
}

// Unmarshal implements encoding.CodecV2.
func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*RawMessage).B = data.Materialize()
	return nil
}

// Name implements encoding.CodecV2: the bytes are protobuf.
func (RawCodec) Name() string { return "proto" }
