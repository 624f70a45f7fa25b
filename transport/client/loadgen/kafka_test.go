package loadgen

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordPool hands out empty slices with room for the batch, of its
// power-of-two class whether pooled or new; a slice of another capacity
// (franz-go may grow one) is refused without harm.
func TestRecordPoolClasses(t *testing.T) {
	var rp recordPool
	for _, n := range []int{0, 1, 3, 1000, 1024, 1025} {
		s := rp.GetRecords(n)
		if len(s) != 0 || cap(s) < n {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(s), cap(s))
		}
		rp.PutRecords(s[:cap(s)])
	}
	rp.PutRecords(make([]kgo.Record, 1000)) // not a class size: dropped
	for range 100 {
		if s := rp.GetRecords(1000); cap(s) != 1024 {
			t.Fatalf("GetRecords(1000): cap %d, want the 1024 class", cap(s))
		}
	}
}
