package cluster

import "hash/fnv"

// BrokerID is the Kafka broker ID of the agent nodeID: a stable
// non-negative int32 derived from the node ID.
func BrokerID(nodeID string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeID))
	return int32(h.Sum32() & 0x7fffffff)
}
