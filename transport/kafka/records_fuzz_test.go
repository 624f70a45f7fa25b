package kafka

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/streamhouse/streamhouse/fsm"
)

// FuzzDecodeBatches: any produce payload decodes or is refused with a
// Kafka code; never a panic or an unbounded allocation. Mutations keep a
// valid CRC half of the time so the record decoder is reached.
func FuzzDecodeBatches(f *testing.F) {
	recs := []fsm.FetchedRecord{
		{Offset: 0, Record: fsm.Record{Timestamp: 5, Key: []byte("k"), Value: []byte("v"), Headers: []fsm.Header{{Key: "h", Value: []byte("x")}}}},
		{Offset: 1, Record: fsm.Record{Timestamp: 6}},
	}
	f.Add(appendBatch(nil, recs, -1), false)
	f.Add(appendBatch(nil, recs[:1], -1), true)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC && len(data) >= batchHeaderSize {
			binary.BigEndian.PutUint32(data[17:], crc32.Checksum(data[crcStart:], castagnoli))
		}
		batches, err := decodeBatches(data, 1<<20)
		if err == nil && len(batches) == 0 {
			t.Fatal("no error and no batch")
		}
		if err != nil {
			if _, ok := err.(*batchError); !ok {
				t.Fatalf("error %T %v is not a batchError", err, err)
			}
		}
	})
}
