package client

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
)

// The client must put a keyed record where the agent (fsm.KeyPartition,
// Kafka's murmur2 partitioner) would.
func TestKeyedPartitionMatchesAgent(t *testing.T) {
	for _, n := range []int32{1, 2, 3, 4, 7, 16, 100, 1000} {
		ts := newTopicState(n)
		for i := 0; i < 2000; i++ {
			key := []byte(fmt.Sprintf("key-%d", i*7919))
			rec := Record{Key: key}
			got, err := ts.choose(&rec)
			if err != nil {
				t.Fatal(err)
			}
			if want := fsm.KeyPartition(key, n); got != want {
				t.Fatalf("key %q over %d partitions: client chose %d, agent would choose %d", key, n, got, want)
			}
		}
	}
	// An empty key is a key (hashed), unlike a null key.
	ts := newTopicState(1000)
	rec := Record{Key: []byte{}}
	if got, _ := ts.choose(&rec); got != fsm.KeyPartition([]byte{}, 1000) {
		t.Fatalf("empty key went to %d, not its hash partition", got)
	}
}

// Kafka's own murmur2 test vectors (org.apache.kafka.common.utils.UtilsTest)
// through the client's partitioner: toPositive(murmur2(key)) % n.
func TestKeyedPartitionKafkaVectors(t *testing.T) {
	vectors := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	const n = 1 << 30 // large: the partition is the positive hash itself
	for key, h := range vectors {
		rec := Record{Key: []byte(key)}
		got, err := newTopicState(n).choose(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if want := (h & 0x7fffffff) % n; got != want {
			t.Errorf("key %q: partition %d, want %d", key, got, want)
		}
	}
}

func TestExplicitPartition(t *testing.T) {
	ts := newTopicState(4)
	rec := Record{Key: []byte("k")}.ToPartition(3)
	if !rec.HasExplicitPartition() {
		t.Fatal("ToPartition did not mark the record")
	}
	if p, err := ts.choose(&rec); err != nil || p != 3 {
		t.Fatalf("explicit partition: %d %v", p, err)
	}
	for _, bad := range []int32{-1, 4, 100} {
		rec := Record{}.ToPartition(bad)
		_, err := ts.choose(&rec)
		if Code(err) != codes.InvalidArgument {
			t.Errorf("partition %d: err %v, want InvalidArgument", bad, err)
		}
	}
	// A consumed record's Partition field is not an explicit partition.
	consumed := Record{Partition: 3, Offset: 9}
	if consumed.HasExplicitPartition() {
		t.Fatal("a plain record claims an explicit partition")
	}
}

func TestStickyPartitionRotatesOnBatchClose(t *testing.T) {
	ts := newTopicState(3)
	first := ts.sticky
	rec := Record{Value: []byte("v")}
	for i := 0; i < 5; i++ {
		if p, _ := ts.choose(&rec); p != first {
			t.Fatalf("keyless record %d went to %d, want the sticky %d", i, p, first)
		}
	}
	ts.batchClosed((first + 1) % 3) // another partition's batch: no change
	if ts.sticky != first {
		t.Fatal("closing another partition's batch moved the sticky partition")
	}
	seen := map[int32]bool{}
	for i := 0; i < 3; i++ {
		p, _ := ts.choose(&rec)
		seen[p] = true
		ts.batchClosed(p)
	}
	if len(seen) != 3 {
		t.Fatalf("sticky partitioner visited %v, want all 3 partitions", seen)
	}
}
