package kafka

import (
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch answers are built in large byte buffers: each partition's record
// set (up to its partition_max_bytes) and the response frame (their sum).
// A fresh buffer of that size is an allocation the runtime zeroes, and a
// buffer grown by appending re-copies itself at every doubling; in the
// agent's CPU profile of a consume both cost more than the partition
// layer's reads. The buffers of an answer are therefore taken from
// power-of-two pools and given back once the response is written
// (releaseResponse). sync.Pool drops idle buffers at garbage collection,
// so an idle agent keeps none.
const (
	minPooledShift = 16 // 64 KiB
	maxPooledShift = 26 // 64 MiB
)

var bufPools [maxPooledShift - minPooledShift + 1]sync.Pool

// getBuf returns an empty buffer with room for at least n bytes, from the
// pool of its class when n is at most the largest class.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<(c+minPooledShift))
}

// putBuf gives b back to the pool of its class. The caller must hold the
// only reference; a buffer whose capacity is not a class size is left to
// the garbage collector.
func putBuf(b []byte) {
	c := bufClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+minPooledShift) {
		return
	}
	b = b[:0]
	bufPools[c].Put(&b)
}

// bufClass is the pool of a buffer for n bytes (the smallest class whose
// size is at least n), or -1 when n is beyond the largest.
func bufClass(n int) int {
	if n > 1<<maxPooledShift {
		return -1
	}
	return max(bits.Len(uint(max(n, 1)-1))-minPooledShift, 0)
}

// releaseResponse gives the pooled buffers of a written response back.
func releaseResponse(resp kmsg.Response) {
	f, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return
	}
	for i := range f.Topics {
		for j := range f.Topics[i].Partitions {
			p := &f.Topics[i].Partitions[j]
			putBuf(p.RecordBatches)
			p.RecordBatches = nil
		}
	}
}

// responseSize estimates the encoded size of resp, so that its frame is
// allocated once: a Fetch answer is mostly its record sets.
func responseSize(resp kmsg.Response) int {
	f, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 256
	}
	n := 1024
	for i := range f.Topics {
		n += 64 + len(f.Topics[i].Topic)
		for j := range f.Topics[i].Partitions {
			p := &f.Topics[i].Partitions[j]
			n += 96 + len(p.RecordBatches) + 32*len(p.AbortedTransactions)
		}
	}
	return n
}
