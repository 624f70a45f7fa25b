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
		if !ok || m.BrokerID <= 0 || (m.GossipState != "alive" && m.ID != s.cfg.NodeID) {
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

func (s *Server) handleMetadata(ctx context.Context, c *Conn, req *kmsg.MetadataRequest) (kmsg.Response, error) {
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
	if req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = s.clusterOperations(c)
	}
	for _, q := range s.requestedTopics(c, req) {
		mt := s.topicMetadata(ctx, c, req, q, v)
		if req.IncludeTopicAuthorizedOperations && mt.ErrorCode == 0 {
			mt.AuthorizedOperations = s.topicOperations(c, *mt.Topic)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp, nil
}

// clusterOperations is the Kafka authorized-operations bit set of c on the
// cluster.
func (s *Server) clusterOperations(c *Conn) int32 {
	var bits int32
	if s.authorize(c, OpDescribe, "") == nil {
		bits |= 1<<aclDescribe | 1<<aclDescribeConfigs
	}
	if s.authorize(c, OpAlter, "") == nil {
		bits |= 1<<aclCreate | 1<<aclAlter | 1<<aclAlterConfigs
	}
	return bits
}

// topicQuery is one topic a Metadata request asks about: by name, or by
// topic ID (v10+, name nil).
type topicQuery struct {
	name string
	id   [16]byte
	byID bool
	// listed: the request named no topics (all topics the caller may
	// describe are listed; never auto-created).
	listed bool
}

// requestedTopics: every topic the caller may describe when the request
// names none (null topics from v1, an empty list in v0), else the topics
// asked for.
func (s *Server) requestedTopics(c *Conn, req *kmsg.MetadataRequest) []topicQuery {
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		var names []string
		for _, t := range s.cfg.Topics.Topics() {
			if s.authorize(c, OpDescribe, t.Name) == nil {
				names = append(names, t.Name)
			}
		}
		sort.Strings(names)
		out := make([]topicQuery, len(names))
		for i, n := range names {
			out[i] = topicQuery{name: n, listed: true}
		}
		return out
	}
	out := make([]topicQuery, 0, len(req.Topics))
	for _, t := range req.Topics {
		switch {
		case t.Topic != nil:
			out = append(out, topicQuery{name: *t.Topic})
		case t.TopicID != [16]byte{}:
			out = append(out, topicQuery{id: t.TopicID, byID: true})
		}
	}
	return out
}

// resolveTopic finds the topic a query names; for a query by ID the name
// is filled in. Auto-creation happens here when configured, allowed by the
// request and the caller's key.
func (s *Server) resolveTopic(ctx context.Context, c *Conn, req *kmsg.MetadataRequest, q *topicQuery) (fsm.Topic, int16) {
	if q.byID {
		for _, t := range s.cfg.Topics.Topics() {
			if TopicID(t.ID) == q.id {
				q.name = t.Name
				return t, 0
			}
		}
		return fsm.Topic{}, kerr.UnknownTopicID.Code
	}
	t, err := s.cfg.Topics.Topic(q.name)
	if !errors.Is(err, fsm.ErrTopicNotFound) || q.listed || !s.autoCreate(req) {
		return t, errorCode(err)
	}
	if fsm.ValidateTopicName(q.name) != nil {
		return t, kerr.InvalidTopicException.Code
	}
	if s.authorize(c, OpCreate, q.name) != nil {
		return t, kerr.UnknownTopicOrPartition.Code
	}
	t, err = s.cfg.Admin.CreateTopic(ctx, q.name, s.cfg.DefaultPartitions, fsm.TopicConfig{})
	if errors.Is(err, fsm.ErrTopicExists) {
		t, err = s.cfg.Topics.Topic(q.name)
	}
	if err != nil {
		s.cfg.Logger.Warn("kafka topic auto-creation failed", "topic", q.name, "err", err)
		return t, kerr.LeaderNotAvailable.Code // retriable: clients ask again
	}
	s.cfg.Logger.Info("kafka topic auto-created", "topic", q.name, "partitions", s.cfg.DefaultPartitions, "client_id", c.ClientID)
	return t, 0
}

// autoCreate: the agent allows auto-creation and the request asks for it
// (always before v4).
func (s *Server) autoCreate(req *kmsg.MetadataRequest) bool {
	return s.cfg.AutoCreateTopics && s.cfg.Admin != nil && (req.Version < 4 || req.AllowAutoTopicCreation)
}

// topicMetadata describes one topic; partitions whose leader is not a live
// broker answer LEADER_NOT_AVAILABLE so clients refresh and retry. A topic
// the caller may not describe answers TOPIC_AUTHORIZATION_FAILED whether
// it exists or not.
func (s *Server) topicMetadata(ctx context.Context, c *Conn, req *kmsg.MetadataRequest, q topicQuery, v brokerView) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	if !q.byID {
		mt.Topic = kmsg.StringPtr(q.name)
		if s.authorize(c, OpDescribe, q.name) != nil {
			mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			return mt
		}
	}
	t, code := s.resolveTopic(ctx, c, req, &q)
	if code == 0 && q.byID && s.authorize(c, OpDescribe, q.name) != nil {
		code = kerr.TopicAuthorizationFailed.Code // the name is not revealed
	} else if code == 0 {
		mt.Topic = kmsg.StringPtr(q.name)
	}
	if code != 0 {
		mt.ErrorCode, mt.TopicID = code, q.id
		return mt
	}
	mt.TopicID = TopicID(t.ID)
	parts, err := s.cfg.Topics.PartitionsForRouting(t.Name) // leaders only: no read barrier
	if err != nil {
		mt.ErrorCode = errorCode(err)
		return mt
	}
	mt.Partitions = partitionMetadata(parts, v)
	return mt
}

// partitionMetadata lists the partitions with their leaders and epochs.
func partitionMetadata(parts []fsm.PartitionInfo, v brokerView) []kmsg.MetadataResponseTopicPartition {
	replicas := make([]int32, 0, len(v.brokers))
	for _, b := range v.brokers {
		replicas = append(replicas, b.id)
	}
	out := make([]kmsg.MetadataResponseTopicPartition, 0, len(parts))
	for _, p := range parts {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition, mp.Leader, mp.LeaderEpoch = p.Partition, -1, int32(p.LeaderEpoch)
		mp.Replicas, mp.ISR = replicas, replicas
		if b, ok := v.byNode[p.Leader]; ok {
			mp.Leader = b.id
		} else {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		out = append(out, mp)
	}
	return out
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
	var ae *authError
	var ce *fsm.ConfigError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ae):
		return ae.code.Code
	case errors.As(err, &ce):
		return kerr.InvalidConfig.Code
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
	case errors.Is(err, fsm.ErrLimitExceeded):
		return kerr.PolicyViolation.Code
	case errors.Is(err, fsm.ErrUnavailable):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, fsm.ErrOutcomeUnknown):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}
