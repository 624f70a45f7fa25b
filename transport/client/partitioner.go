package client

import (
	"math/rand/v2"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/fsm"
)

// topicState is the producer's partitioning state of one topic.
type topicState struct {
	partitions int32
	sticky     int32 // partition of keyless records until its batch closes
}

func newTopicState(partitions int32) *topicState {
	return &topicState{partitions: partitions, sticky: rand.Int32N(partitions)}
}

// choose returns the partition of rec: the explicit one (ToPartition), else
// Kafka's murmur2 partition of a non-nil key (the agent's own rule, so a
// record lands where the agent would put it), else the sticky partition.
func (ts *topicState) choose(rec *Record) (int32, error) {
	switch {
	case rec.explicit:
		if rec.Partition < 0 || rec.Partition >= ts.partitions {
			return 0, newError("Send", codes.InvalidArgument, KindBadRequest,
				"partition %d does not exist (the topic has %d partitions)", rec.Partition, ts.partitions)
		}
		return rec.Partition, nil
	case rec.Key != nil:
		return fsm.KeyPartition(rec.Key, ts.partitions), nil
	default:
		return ts.sticky, nil
	}
}

// batchClosed moves keyless records on to the next partition when the
// batch of the sticky partition closes (Kafka's sticky partitioner: keyless
// records fill one batch at a time, round robin over the partitions).
func (ts *topicState) batchClosed(partition int32) {
	if partition == ts.sticky {
		ts.sticky = (ts.sticky + 1) % ts.partitions
	}
}
