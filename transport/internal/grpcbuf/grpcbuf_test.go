package grpcbuf

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers gRPC's own codec, the baseline
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

func TestPoolClasses(t *testing.T) {
	p := &Pool{}
	for _, tc := range []struct{ n, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {130_000, 131_072}, {1 << 20, 1 << 20}, {1<<24 - 1, 1 << 24},
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.n, len(*b), cap(*b), tc.cap)
		}
		p.Put(b)
	}
	if b := p.Get(1<<24 + 1); len(*b) != 1<<24+1 {
		t.Errorf("Get above the largest class: len %d", len(*b))
	}
	// A buffer of an odd capacity goes to the class below it, and comes
	// back for any length that class serves.
	odd := make([]byte, 10, 700)
	p.Put(&odd)
	for range 100 { // sync.Pool may drop it; it must never hand out less
		b := p.Get(512)
		if len(*b) != 512 || cap(*b) < 512 {
			t.Fatalf("Get(512) after Put(cap 700): len %d cap %d", len(*b), cap(*b))
		}
	}
	for _, c := range []int{0, 255, 2 << 24} {
		if classOf(c) != -1 {
			t.Errorf("classOf(%d) = %d, want dropped", c, classOf(c))
		}
	}
}

func produceRequest(records, size int) *pb.ProduceRequest {
	req := &pb.ProduceRequest{Topic: "t", ProducerId: proto.Uint64(7), BaseSequence: 3}
	for i := range records {
		req.Records = append(req.Records, &pb.ProduceRecord{
			Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{byte(i)}, size),
		})
	}
	return req
}

// TestCodecRoundTrip: messages below and above the pooling threshold, and
// data split over several buffers (as gRPC hands over a message read
// in several frames), decode to what was encoded, and the encoding is
// gRPC's own codec's byte for byte. A pooled buffer that still holds an
// earlier, longer message must not leak into a later one.
func TestCodecRoundTrip(t *testing.T) {
	std := encoding.GetCodecV2("proto")
	for _, req := range []*pb.ProduceRequest{produceRequest(1, 10), produceRequest(1000, 100), produceRequest(3, 100_000), produceRequest(1000, 90)} {
		data, err := Codec{}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := std.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data.Materialize(), want.Materialize()) {
			t.Fatalf("%d records: the encoding differs from gRPC's codec", len(req.Records))
		}
		flat := data.Materialize()
		data.Free()
		want.Free()
		var split mem.BufferSlice
		for rest := flat; len(rest) > 0; {
			n := min(len(rest), 16<<10)
			split = append(split, mem.SliceBuffer(rest[:n]))
			rest = rest[n:]
		}
		for _, in := range []mem.BufferSlice{{mem.SliceBuffer(flat)}, split} {
			got := &pb.ProduceRequest{}
			if err := (Codec{}).Unmarshal(in, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, req) {
				t.Fatalf("%d records in %d buffers: decoded message differs", len(req.Records), len(in))
			}
		}
	}
	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, &pb.ProduceRequest{}); err == nil {
		t.Error("Unmarshal of garbage: no error")
	}
}

// BenchmarkCodecMarshal compares this codec with gRPC's on a produce
// request of 1,000 records of 100 bytes (about 130 KiB, the saturated
// benchmark's request).
func BenchmarkCodecMarshal(b *testing.B) {
	req := produceRequest(1000, 100)
	for _, c := range []encoding.CodecV2{encoding.GetCodecV2("proto"), Codec{}} {
		b.Run(fmt.Sprintf("%T", c), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
