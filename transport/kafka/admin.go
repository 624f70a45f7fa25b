package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// TopicAdmin creates, deletes and alters topics (partition.Admin). Any
// agent serves these "controller" APIs: partition.Admin proposes through
// the Raft leader, forwarding when this agent does not lead.
type TopicAdmin interface {
	CreateTopic(ctx context.Context, name string, partitions int32, cfg fsm.TopicConfig) (fsm.Topic, error)
	DeleteTopic(ctx context.Context, name string) error
	// AlterTopicConfig changes the named keys (Kafka names; a bad key or
	// value is a *fsm.ConfigError).
	AlterTopicConfig(ctx context.Context, name string, set map[string]string) (fsm.Topic, error)
	// CreatePartitions raises the partition count to count (the new total).
	CreatePartitions(ctx context.Context, name string, count int32) (fsm.Topic, error)
}

// registerAdmin registers the topic and config administration APIs.
func (s *Server) registerAdmin(add func(int16, handler)) {
	if s.cfg.Admin == nil {
		return
	}
	add(int16(kmsg.CreateTopics), api(0, 7, s.handleCreateTopics))
	add(int16(kmsg.DeleteTopics), api(0, 6, s.handleDeleteTopics))
	add(int16(kmsg.CreatePartitions), api(0, 3, s.handleCreatePartitions))
	add(int16(kmsg.DescribeConfigs), api(0, 4, s.handleDescribeConfigs))
	add(int16(kmsg.AlterConfigs), api(0, 2, s.handleAlterConfigs))
	add(int16(kmsg.IncrementalAlterConfigs), api(0, 1, s.handleIncrementalAlterConfigs))
}

// adminError is a per-resource refusal with its Kafka code and message.
type adminError struct {
	code *kerr.Error
	msg  string
}

func (e *adminError) Error() string { return e.msg }

func refuse(code *kerr.Error, format string, args ...any) error {
	return &adminError{code: code, msg: fmt.Sprintf(format, args...)}
}

// adminCode maps an error of an admin API to its code and message;
// invalid is the code of fsm.ErrInvalidArgument in this API.
func adminCode(err error, invalid *kerr.Error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	msg := kmsg.StringPtr(err.Error())
	var ae *adminError
	if errors.As(err, &ae) {
		return ae.code.Code, msg
	}
	var ce *fsm.ConfigError
	if !errors.As(err, &ce) && errors.Is(err, fsm.ErrInvalidArgument) {
		return invalid.Code, msg
	}
	return errorCode(err), msg
}

func (s *Server) handleCreateTopics(ctx context.Context, c *Conn, req *kmsg.CreateTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	dup := duplicates(len(req.Topics), func(i int) string { return req.Topics[i].Topic })
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		var t fsm.Topic
		err := s.authorize(c, OpCreate, rt.Topic)
		if err == nil && dup[rt.Topic] {
			err = refuse(kerr.InvalidRequest, "topic %q is named more than once in the request", rt.Topic)
		}
		if err == nil {
			t, err = s.createTopic(ctx, c, &rt, req.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = adminCode(err, kerr.InvalidRequest)
		if err == nil {
			s.describeCreated(&st, t)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// duplicates reports the names that occur more than once.
func duplicates(n int, name func(int) string) map[string]bool {
	seen, dup := map[string]bool{}, map[string]bool{}
	for i := range n {
		if seen[name(i)] {
			dup[name(i)] = true
		}
		seen[name(i)] = true
	}
	return dup
}

// createTopic validates one topic of a CreateTopics request and creates
// it (unless validateOnly). The replication factor is accepted as -1 (the
// broker default) or any positive number and otherwise ignored: records
// are replicated to every agent through the Raft log.
func (s *Server) createTopic(ctx context.Context, c *Conn, rt *kmsg.CreateTopicsRequestTopic, validateOnly bool) (fsm.Topic, error) {
	if err := fsm.ValidateTopicName(rt.Topic); err != nil {
		return fsm.Topic{}, refuse(kerr.InvalidTopicException, "%v", err)
	}
	parts := rt.NumPartitions
	if parts == -1 {
		parts = s.cfg.DefaultPartitions
	}
	if err := fsm.ValidatePartitionCount(parts); err != nil {
		return fsm.Topic{}, refuse(kerr.InvalidPartitions, "%v", err)
	}
	if rt.ReplicationFactor == 0 || rt.ReplicationFactor < -1 {
		return fsm.Topic{}, refuse(kerr.InvalidReplicationFactor, "replication factor %d: use -1 or a positive number (records are replicated to every agent whatever it is)", rt.ReplicationFactor)
	}
	if len(rt.ReplicaAssignment) > 0 {
		return fsm.Topic{}, refuse(kerr.InvalidReplicaAssignment, "manual replica assignment is not supported (partition leaders are placed by the cluster)")
	}
	var entries []fsm.ConfigEntry
	for _, c := range rt.Configs {
		if c.Value != nil {
			entries = append(entries, fsm.ConfigEntry{Key: c.Name, Value: *c.Value})
		}
	}
	cfg, err := fsm.TopicConfig{}.WithUpdates(entries)
	if err != nil {
		return fsm.Topic{}, err
	}
	if validateOnly {
		if _, err := s.cfg.Topics.Topic(rt.Topic); err == nil {
			return fsm.Topic{}, refuse(kerr.TopicAlreadyExists, "topic %q already exists", rt.Topic)
		}
		return fsm.Topic{Name: rt.Topic, Partitions: parts, Config: cfg}, nil
	}
	if err := s.takeMutations(ctx, c, int64(parts)); err != nil {
		return fsm.Topic{}, err
	}
	t, err := s.cfg.Admin.CreateTopic(ctx, rt.Topic, parts, cfg)
	if errors.Is(err, fsm.ErrInvalidArgument) && !isConfigError(err) {
		return t, refuse(kerr.InvalidRequest, "%v", err)
	}
	return t, err
}

func isConfigError(err error) bool {
	var ce *fsm.ConfigError
	return errors.As(err, &ce)
}

// describeCreated fills the v5+ description of a created topic.
func (s *Server) describeCreated(st *kmsg.CreateTopicsResponseTopic, t fsm.Topic) {
	st.TopicID = TopicID(t.ID)
	st.NumPartitions = t.Partitions
	st.ReplicationFactor = int16(max(1, len(s.brokers().brokers)))
	for _, e := range s.topicConfigs(t, nil, false) {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = e.Name, e.Value, e.ReadOnly, int8(e.Source), false
		st.Configs = append(st.Configs, rc)
	}
}

func (s *Server) handleDeleteTopics(ctx context.Context, c *Conn, req *kmsg.DeleteTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	queries := req.Topics
	if req.Version < 6 {
		queries = nil
		for _, n := range req.TopicNames {
			q := kmsg.NewDeleteTopicsRequestTopic()
			q.Topic = kmsg.StringPtr(n)
			queries = append(queries, q)
		}
	}
	for _, q := range queries {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = q.Topic, q.TopicID
		name, err := s.deleteTarget(q)
		if err == nil {
			st.Topic = kmsg.StringPtr(name)
			if err = s.authorize(c, OpDelete, name); err == nil {
				err = s.takeMutations(ctx, c, s.partitionCount(name))
			}
			if err == nil {
				err = s.cfg.Admin.DeleteTopic(ctx, name)
			}
		}
		st.ErrorCode, st.ErrorMessage = adminCode(err, kerr.InvalidRequest)
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// partitionCount is a topic's partition count (1 when unknown): the
// mutations its deletion costs.
func (s *Server) partitionCount(name string) int64 {
	if t, err := s.cfg.Topics.Topic(name); err == nil && t.Partitions > 0 {
		return int64(t.Partitions)
	}
	return 1
}

// deleteTarget is the name of the topic a DeleteTopics entry names (by
// name, or by topic ID from v6).
func (s *Server) deleteTarget(q kmsg.DeleteTopicsRequestTopic) (string, error) {
	if q.Topic != nil && *q.Topic != "" {
		return *q.Topic, nil
	}
	for _, t := range s.cfg.Topics.Topics() {
		if TopicID(t.ID) == q.TopicID {
			return t.Name, nil
		}
	}
	return "", refuse(kerr.UnknownTopicID, "no topic has ID %x", q.TopicID)
}

func (s *Server) handleCreatePartitions(ctx context.Context, c *Conn, req *kmsg.CreatePartitionsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	dup := duplicates(len(req.Topics), func(i int) string { return req.Topics[i].Topic })
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		err := s.authorize(c, OpAlter, rt.Topic)
		if err == nil && dup[rt.Topic] {
			err = refuse(kerr.InvalidRequest, "topic %q is named more than once in the request", rt.Topic)
		}
		if err == nil {
			err = s.createPartitions(ctx, c, rt, req.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = adminCode(err, kerr.InvalidPartitions)
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// createPartitions raises one topic's partition count to rt.Count.
func (s *Server) createPartitions(ctx context.Context, c *Conn, rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) error {
	if len(rt.Assignment) > 0 {
		return refuse(kerr.InvalidReplicaAssignment, "manual replica assignment is not supported (partition leaders are placed by the cluster)")
	}
	t, err := s.cfg.Topics.Topic(rt.Topic)
	if err != nil {
		return err
	}
	if rt.Count <= t.Partitions {
		return refuse(kerr.InvalidPartitions, "topic %q has %d partitions; the new count %d must be larger", rt.Topic, t.Partitions, rt.Count)
	}
	if err := fsm.ValidatePartitionCount(rt.Count); err != nil {
		return refuse(kerr.InvalidPartitions, "%v", err)
	}
	if validateOnly {
		return nil
	}
	if err := s.takeMutations(ctx, c, int64(rt.Count-t.Partitions)); err != nil {
		return err
	}
	_, err = s.cfg.Admin.CreatePartitions(ctx, rt.Topic, rt.Count)
	return err
}
