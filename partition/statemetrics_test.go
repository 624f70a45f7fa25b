package partition

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/fsm"
)

// stateWithGroup is a state with topic "t" (3 partitions, 5 records in
// partition 1) and group "g" at offset 2 of partition 1.
func stateWithGroup(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsm.New(nil)
	idx := uint64(0)
	apply := func(c fsm.Command) *fsm.Result {
		idx++
		r := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: fsm.Encode(c)}).(*fsm.Result)
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	id := apply(&fsm.CreateTopic{Name: "t", Partitions: 3, Leaders: []string{"n1", "n1", "n1"}}).TopicID
	recs := make([]fsm.Record, 5)
	apply(&fsm.AppendBatch{TopicID: id, Partition: 1, LeaderEpoch: 1, Count: 5, Records: fsm.AppendRecords(nil, recs)})
	apply(&fsm.CommitOffsets{Group: "g", Offsets: []fsm.OffsetCommit{{TopicID: id, Partition: 1, Offset: 2}}})
	return f
}

func TestStateCollectorPerTopicByDefault(t *testing.T) {
	f := stateWithGroup(t)
	want := `
# HELP streamhouse_consumer_group_topic_lag Sum over the topic's partitions of the group's lag (high watermark minus committed offset).
# TYPE streamhouse_consumer_group_topic_lag gauge
streamhouse_consumer_group_topic_lag{group="g",topic="t"} 3
# HELP streamhouse_topic_high_watermark_sum Sum over the topic's partitions of the high watermark (records ever written to the topic).
# TYPE streamhouse_topic_high_watermark_sum gauge
streamhouse_topic_high_watermark_sum{topic="t"} 5
# HELP streamhouse_topic_partitions Partitions of the topic.
# TYPE streamhouse_topic_partitions gauge
streamhouse_topic_partitions{topic="t"} 3
# HELP streamhouse_topic_segment_bytes Sum over the topic's partitions of the bytes of their blocks in segment objects (the topic's size in the object store).
# TYPE streamhouse_topic_segment_bytes gauge
streamhouse_topic_segment_bytes{topic="t"} 0
# HELP streamhouse_topic_unflushed_offsets Sum over the topic's partitions of committed offsets not yet in a segment object.
# TYPE streamhouse_topic_unflushed_offsets gauge
streamhouse_topic_unflushed_offsets{topic="t"} 5
`
	if err := testutil.CollectAndCompare(newStateCollector(f, false), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestStateCollectorPerPartitionOptIn(t *testing.T) {
	f := stateWithGroup(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newStateCollector(f, true))
	for name, want := range map[string]int{
		"streamhouse_partition_high_watermark": 3, "streamhouse_partition_low_watermark": 3, "streamhouse_partition_unflushed_offsets": 3,
		"streamhouse_consumer_group_lag": 1, "streamhouse_consumer_group_offset": 1,
		"streamhouse_topic_partitions": 1, "streamhouse_consumer_group_topic_lag": 1,
	} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP streamhouse_consumer_group_lag High watermark minus the group's committed offset, per group and partition (METRICS_PARTITION_SERIES).
# TYPE streamhouse_consumer_group_lag gauge
streamhouse_consumer_group_lag{group="g",partition="1",topic="t"} 3
`), "streamhouse_consumer_group_lag"); err != nil {
		t.Fatal(err)
	}
}
