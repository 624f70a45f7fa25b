package kafka

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Fetch answer is mostly its record sets, and kmsg's AppendTo copies
// each into the frame: in the agent's CPU profile of a consume that copy
// (into a fresh multi-MiB frame) cost as much as encoding the records.
// writeFetch sends the record sets from their own buffers instead: kmsg
// encodes the response with every record set replaced by a marker, and
// the frame is written as a vector — the encoding between markers, each
// record set's length prefix, the record set itself. The bytes on the
// wire are exactly AppendTo's (TestWriteFetchMatchesAppendTo).

// markerSecret makes the markers unguessable, so that no topic name or
// error message of the response can contain one.
var markerSecret = func() (b [12]byte) {
	_, _ = rand.Read(b[:])
	return b
}()

const markerLen = 16

// spliceMin is the record bytes from which a Fetch answer is written as a
// vector; smaller answers are copied, which is cheaper than the splice.
const spliceMin = 64 << 10

// fetchRecordBytes sums the record sets of a Fetch answer.
func fetchRecordBytes(f *kmsg.FetchResponse) int {
	n := 0
	for i := range f.Topics {
		for j := range f.Topics[i].Partitions {
			n += len(f.Topics[i].Partitions[j].RecordBatches)
		}
	}
	return n
}

// errSplice means a marker was not found where it must be (it cannot
// happen unless kmsg changes how it encodes bytes); the caller then writes
// the response the ordinary way.
var errSplice = errors.New("fetch response splice failed")

// writeFetch writes f framed with hdr's correlation ID to w (the
// connection; bw is flushed first), sending the record sets without
// copying them.
func writeFetch(bw *bufio.Writer, w io.Writer, hdr requestHeader, f *kmsg.FetchResponse) error {
	parts, sets := swapInMarkers(f)
	head := make([]byte, 8, 1024+128*len(sets))
	binary.BigEndian.PutUint32(head[4:], uint32(hdr.correlationID))
	if f.IsFlexible() {
		head = append(head, 0)
	}
	head = f.AppendTo(head)
	for i, p := range parts {
		p.RecordBatches = sets[i]
	}
	vec, err := spliceRecordSets(head, sets, f.IsFlexible())
	if err != nil {
		return writeResponse(bw, hdr, f)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = vec.WriteTo(w)
	return err
}

// swapInMarkers replaces every non-empty record set of f by a marker and
// returns those partitions and their record sets, in encoding order.
func swapInMarkers(f *kmsg.FetchResponse) ([]*kmsg.FetchResponseTopicPartition, [][]byte) {
	var (
		parts []*kmsg.FetchResponseTopicPartition
		sets  [][]byte
	)
	for i := range f.Topics {
		for j := range f.Topics[i].Partitions {
			p := &f.Topics[i].Partitions[j]
			if len(p.RecordBatches) == 0 {
				continue
			}
			parts, sets = append(parts, p), append(sets, p.RecordBatches)
			p.RecordBatches = marker(len(sets) - 1)
		}
	}
	return parts, sets
}

// marker is the placeholder of the i-th record set.
func marker(i int) []byte {
	m := make([]byte, markerLen)
	copy(m, markerSecret[:])
	binary.BigEndian.PutUint32(m[12:], uint32(i))
	return m
}

// spliceRecordSets turns head (a framed encoding whose record sets are
// markers) into the vector to write: each marker and its length prefix
// become the record set's length prefix and the record set, and the frame
// size covers the real lengths.
func spliceRecordSets(head []byte, sets [][]byte, flexible bool) (net.Buffers, error) {
	prefixLen, vec, size := 4, make(net.Buffers, 0, 3*len(sets)+1), len(head)-4
	if flexible {
		prefixLen = 1 // uvarint(16+1)
	}
	from := 0
	for i, set := range sets {
		at := bytes.Index(head[from:], marker(i))
		if at < prefixLen {
			return nil, errSplice
		}
		at += from
		if !markerPrefixOK(head[at-prefixLen:at], flexible) {
			return nil, errSplice
		}
		prefix := lengthPrefix(len(set), flexible)
		vec = append(vec, head[from:at-prefixLen], prefix, set)
		size += len(prefix) + len(set) - prefixLen - markerLen
		from = at + markerLen
	}
	vec = append(vec, head[from:])
	binary.BigEndian.PutUint32(head[0:], uint32(size))
	return vec, nil
}

// markerPrefixOK checks the length prefix kmsg wrote for a marker.
func markerPrefixOK(p []byte, flexible bool) bool {
	if flexible {
		return p[0] == markerLen+1
	}
	return binary.BigEndian.Uint32(p) == markerLen
}

// lengthPrefix is the prefix of a record set of n bytes: nullable bytes
// (int32 length) or, in flexible versions, compact nullable bytes
// (uvarint of length+1).
func lengthPrefix(n int, flexible bool) []byte {
	if flexible {
		return binary.AppendUvarint(nil, uint64(n)+1)
	}
	return binary.BigEndian.AppendUint32(nil, uint32(n))
}
