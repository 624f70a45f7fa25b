package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport"
)

// broker is one agent as a Kafka broker.
type broker struct {
	id     int32
	nodeID string
	host   string
	port   int32
}

// brokerView is the cluster as Kafka clients see it: the live agents that
// advertise a Kafka listener, and the controller (the Raft leader).
type brokerView struct {
	brokers    []broker
	byNode     map[string]broker
	controller int32 // -1: no Raft leader known
}

// brokers builds the broker view from the cluster status.
func (s *Server) brokers() brokerView {
	st := s.cfg.Cluster.ClusterStatus()
	v := brokerView{byNode: map[string]broker{}, controller: -1}
	for _, m := range st.Members {
		b, ok := brokerOf(m)
		if !ok || (m.GossipState != "alive" && m.ID != s.cfg.NodeID) {
			continue
		}
		v.brokers = append(v.brokers, b)
		v.byNode[m.ID] = b
		if m.ID == st.Leader {
			v.controller = b.id
		}
	}
	sort.Slice(v.brokers, func(i, j int) bool { return v.brokers[i].id < v.brokers[j].id })
	return v
}

func brokerOf(m transport.ClusterMember) (broker, bool) {
	host, port, err := net.SplitHostPort(m.KafkaAddr)
	if err != nil {
		return broker{}, false
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return broker{}, false
	}
	return broker{id: m.BrokerID, nodeID: m.ID, host: host, port: int32(p)}, true
}

// ClusterID is the cluster ID Metadata reports.
const ClusterID = "streamhouse"

func (s *Server) handleMetadata(_ context.Context, _ *Conn, req *kmsg.MetadataRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	v := s.brokers()
	for _, b := range v.brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.id, b.host, b.port
		resp.Brokers = append(resp.Brokers, mb)
	}
	cid := ClusterID
	resp.ClusterID = &cid
	resp.ControllerID = v.controller
	for _, name := range s.requestedTopics(req) {
		resp.Topics = append(resp.Topics, s.topicMetadata(name, v))
	}
	return resp, nil
}

// requestedTopics: every topic when the request names none (null topics
// from v1, an empty list in v0), else the names asked for.
func (s *Server) requestedTopics(req *kmsg.MetadataRequest) []string {
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		var names []string
		for _, t := range s.cfg.Topics.Topics() {
			names = append(names, t.Name)
		}
		sort.Strings(names)
		return names
	}
	names := make([]string, 0, len(req.Topics))
	for _, t := range req.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		}
	}
	return names
}

// topicMetadata describes one topic; partitions whose leader is not a live
// broker answer LEADER_NOT_AVAILABLE so clients refresh and retry.
func (s *Server) topicMetadata(name string, v brokerView) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr(name)
	t, err := s.cfg.Topics.Topic(name)
	if err != nil {
		mt.ErrorCode = errorCode(err)
		return mt
	}
	mt.TopicID = TopicID(t.ID)
	parts, err := s.cfg.Topics.Partitions(name)
	if err != nil {
		mt.ErrorCode = errorCode(err)
		return mt
	}
	replicas := make([]int32, 0, len(v.brokers))
	for _, b := range v.brokers {
		replicas = append(replicas, b.id)
	}
	for _, p := range parts {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition, mp.Leader, mp.LeaderEpoch = p.Partition, -1, int32(p.LeaderEpoch)
		mp.Replicas, mp.ISR = replicas, replicas
		if b, ok := v.byNode[p.Leader]; ok {
			mp.Leader = b.id
		} else {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// TopicID is the Kafka topic UUID of a topic: its never-reused FSM ID in
// the last 8 bytes.
func TopicID(id uint64) [16]byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[8:], id)
	return u
}

// errorCode maps an agent error to a Kafka error code.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fsm.ErrTopicNotFound), errors.Is(err, fsm.ErrPartitionInvalid):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, fsm.ErrNotLeader), errors.Is(err, fsm.ErrStaleEpoch):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, fsm.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, fsm.ErrRecordTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, fsm.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, fsm.ErrInvalidArgument):
		return kerr.InvalidRequest.Code
	case errors.Is(err, fsm.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, fsm.ErrProducerFenced):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, fsm.ErrUnknownProducer):
		return kerr.UnknownProducerID.Code
	case errors.Is(err, fsm.ErrUnavailable), errors.Is(err, fsm.ErrLimitExceeded):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, fsm.ErrOutcomeUnknown):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}
