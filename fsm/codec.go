package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrDecode is returned (wrapped) when a command, record batch or snapshot
// cannot be decoded.
var ErrDecode = errors.New("fsm: decode error")

// enc is a tiny append-only binary encoder. Integers are varints, byte
// slices and strings are length-prefixed. It never fails.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)     { e.b = append(e.b, v) }
func (e *enc) uv(v uint64)    { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) iv(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)   { e.uv(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte) { e.uv(uint64(len(p))); e.b = append(e.b, p...) }

// nbytes encodes a byte slice that may be nil (nil and empty stay distinct).
func (e *enc) nbytes(p []byte) {
	if p == nil {
		e.uv(0)
		return
	}
	e.uv(uint64(len(p)) + 1)
	e.b = append(e.b, p...)
}

// dec decodes what enc wrote. The first error sticks; later reads return
// zero values, so callers check err once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrDecode, what)
	}
}

func (d *dec) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uv() uint64 { return readVarint(d, binary.Uvarint, "uvarint") }
func (d *dec) iv() int64  { return readVarint(d, binary.Varint, "varint") }

// readVarint reads one varint with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *dec, read func([]byte) (T, int), what string) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i32() int32 {
	v := d.iv()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("int32")
		return 0
	}
	return int32(v)
}

func (d *dec) u32() uint32 {
	v := d.uv()
	if v > math.MaxUint32 {
		d.fail("uint32")
		return 0
	}
	return uint32(v)
}

func (d *dec) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.take(d.uv(), "string")) }

// bytes returns a copy-free sub-slice of the input.
func (d *dec) bytes() []byte {
	p := d.take(d.uv(), "bytes")
	if p == nil && d.err == nil {
		return []byte{}
	}
	return p
}

func (d *dec) nbytes() []byte {
	n := d.uv()
	if d.err != nil || n == 0 {
		return nil
	}
	p := d.take(n-1, "bytes")
	if p == nil && d.err == nil {
		return []byte{}
	}
	return p
}

// count reads a collection length and bounds it by the remaining input, so a
// corrupt length can never cause a huge allocation.
func (d *dec) count(minElemSize int) int {
	n := d.uv()
	if d.err != nil {
		return 0
	}
	if minElemSize < 1 {
		minElemSize = 1
	}
	if n > uint64(len(d.b)/minElemSize) {
		d.fail("count")
		return 0
	}
	return int(n)
}

// each reads a collection length (see count) and calls read once per
// element, stopping at the first error.
func (d *dec) each(minElemSize int, read func()) {
	n := d.count(minElemSize)
	for i := 0; i < n && d.err == nil; i++ {
		read()
	}
}

// decodeSlice reads a collection length (see count) and then its elements
// into a new slice with read; nil when the collection is empty.
func decodeSlice[T any](d *dec, minElemSize int, read func(*T)) []T {
	n := d.count(minElemSize)
	if n == 0 {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		read(&out[i])
	}
	return out
}

func (d *dec) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return nil
}
