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
// pools by size class and given back once the response is written
// (releaseResponse). sync.Pool drops idle buffers at garbage collection,
// so an idle agent keeps none.
const (
	minPooledShift = 16 // 64 KiB
	maxPooledShift = 26 // 64 MiB
	// classSteps classes per doubling (64, 80, 96, 112, 128, 160 KiB …):
	// a buffer is at most a quarter larger than asked, so the zeroing of a
	// fresh one costs little more than the bytes it will hold.
	classSteps = 4
)

// smallBuf: below it a buffer is allocated at its size, not taken from the
// smallest class (64 KiB): small answers (ApiVersions, SASL, metadata) and
// small record-set reservations would otherwise pin a class buffer each.
const smallBuf = 32 << 10

var bufPools [(maxPooledShift-minPooledShift)*classSteps + 1]sync.Pool

// classSize is the capacity of the buffers of class c.
func classSize(c int) int {
	shift, step := minPooledShift+c/classSteps, c%classSteps
	return 1<<shift + step<<(shift-2)
}

// getBuf returns an empty buffer with room for at least n bytes, from the
// pool of its class when n is between smallBuf and the largest class.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c < 0 || n < smallBuf {
		return make([]byte, 0, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, classSize(c))
}

// putBuf gives b back to the pool of its class. The caller must hold the
// only reference; a buffer whose capacity is not a class size is left to
// the garbage collector.
func putBuf(b []byte) {
	c := bufClass(cap(b))
	if c < 0 || cap(b) != classSize(c) {
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
	if n <= 1<<minPooledShift {
		return 0
	}
	shift := bits.Len(uint(n-1)) - 1 // 1<<shift < n <= 1<<(shift+1)
	quarter := 1 << (shift - 2)
	step := (n - 1<<shift + quarter - 1) / quarter // 1..4 quarters above 1<<shift
	return (shift-minPooledShift)*classSteps + step
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
