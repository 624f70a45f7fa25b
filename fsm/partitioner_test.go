package fsm

import "testing"

// Expected values are from Kafka's own test suite
// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2).
func TestMurmur2MatchesKafka(t *testing.T) {
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
	}
	for in, want := range cases {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
	b := []byte{'a', 'b', 'c'}
	if got := murmur2(b); got != 479470107 {
		t.Errorf("murmur2(abc) = %d, want 479470107", got)
	}
}

func TestKeyPartitionInRange(t *testing.T) {
	for _, n := range []int32{1, 3, 7, 64} {
		for i := 0; i < 1000; i++ {
			p := KeyPartition([]byte{byte(i), byte(i >> 8)}, n)
			if p < 0 || p >= n {
				t.Fatalf("partition %d of %d", p, n)
			}
		}
	}
}

func BenchmarkKeyPartition(b *testing.B) {
	key := []byte("user-1234567890")
	for i := 0; i < b.N; i++ {
		KeyPartition(key, 64)
	}
}
