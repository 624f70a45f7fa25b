package kafka

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// Topic configs are fsm/topicconfig.go's keys (Kafka names). A key the
// topic sets is described with source DYNAMIC_TOPIC_CONFIG, one it does
// not with DEFAULT_CONFIG; synonyms (v1+, when asked) list the topic's
// value then the default, as Kafka does. Broker configs are a small
// read-only set of this agent's settings.

// configTypes are the Kafka types of the supported keys.
var configTypes = map[string]kmsg.ConfigType{
	fsm.ConfigCleanupPolicy:   kmsg.ConfigTypeList,
	fsm.ConfigCompressionType: kmsg.ConfigTypeString,
	fsm.ConfigMaxMessageBytes: kmsg.ConfigTypeInt,
	fsm.ConfigRetentionBytes:  kmsg.ConfigTypeLong,
	fsm.ConfigRetentionMs:     kmsg.ConfigTypeLong,
}

// resetValues are what a DELETE (IncrementalAlterConfigs) or an omitted key
// (AlterConfigs) sets: the value that means "not set".
var resetValues = map[string]string{
	fsm.ConfigCleanupPolicy:   "delete",
	fsm.ConfigCompressionType: fsm.DefaultCompression,
	fsm.ConfigMaxMessageBytes: "0",
	fsm.ConfigRetentionBytes:  "-1",
	fsm.ConfigRetentionMs:     "-1",
}

// topicConfigs describes t's configs (only names, when not nil).
func (s *Server) topicConfigs(t fsm.Topic, names []string, synonyms bool) []kmsg.DescribeConfigsResponseResourceConfig {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	defaults := map[string]string{}
	for _, d := range (fsm.TopicConfig{}).Describe(s.cfg.MaxRecordBytes) {
		defaults[d.Key] = d.Value
	}
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, v := range t.Config.Describe(s.cfg.MaxRecordBytes) {
		if names != nil && !want[v.Key] {
			continue
		}
		rc := kmsg.NewDescribeConfigsResponseResourceConfig()
		rc.Name, rc.Value, rc.IsDefault, rc.ConfigType = v.Key, kmsg.StringPtr(v.Value), v.Default, configTypes[v.Key]
		rc.Source = kmsg.ConfigSourceDynamicTopicConfig
		if v.Default {
			rc.Source = kmsg.ConfigSourceDefaultConfig
		}
		if synonyms {
			if !v.Default {
				rc.ConfigSynonyms = append(rc.ConfigSynonyms, synonym(v.Key, v.Value, kmsg.ConfigSourceDynamicTopicConfig))
			}
			rc.ConfigSynonyms = append(rc.ConfigSynonyms, synonym(v.Key, defaults[v.Key], kmsg.ConfigSourceDefaultConfig))
		}
		out = append(out, rc)
	}
	return out
}

func synonym(name, value string, src kmsg.ConfigSource) kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	sy := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
	sy.Name, sy.Value, sy.Source = name, kmsg.StringPtr(value), src
	return sy
}

// brokerConfigs describes the agent settings Kafka tools commonly read.
func (s *Server) brokerConfigs(names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	all := []struct {
		name, value string
		typ         kmsg.ConfigType
	}{
		{"auto.create.topics.enable", strconv.FormatBool(s.cfg.AutoCreateTopics), kmsg.ConfigTypeBoolean},
		{"message.max.bytes", strconv.FormatInt(s.cfg.MaxRecordBytes, 10), kmsg.ConfigTypeInt},
		{"num.partitions", strconv.Itoa(int(s.cfg.DefaultPartitions)), kmsg.ConfigTypeInt},
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, c := range all {
		if names != nil && !want[c.name] {
			continue
		}
		rc := kmsg.NewDescribeConfigsResponseResourceConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.ConfigType = c.name, kmsg.StringPtr(c.value), true, c.typ
		rc.Source = kmsg.ConfigSourceStaticBrokerConfig
		out = append(out, rc)
	}
	return out
}

func (s *Server) handleDescribeConfigs(_ context.Context, c *Conn, req *kmsg.DescribeConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		var err error
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			var t fsm.Topic
			if err = s.authorize(c, OpDescribe, r.ResourceName); err == nil {
				t, err = s.cfg.Topics.Topic(r.ResourceName)
			}
			if err == nil {
				rr.Configs = s.topicConfigs(t, r.ConfigNames, req.IncludeSynonyms)
			}
		case kmsg.ConfigResourceTypeBroker:
			if err = s.authorize(c, OpDescribe, ""); err == nil {
				rr.Configs = s.brokerConfigs(r.ConfigNames)
			}
		default:
			err = refuse(kerr.InvalidRequest, "config resource type %v is not supported (topics and brokers are)", r.ResourceType)
		}
		rr.ErrorCode, rr.ErrorMessage = adminCode(err, kerr.InvalidRequest)
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}

func (s *Server) handleIncrementalAlterConfigs(ctx context.Context, c *Conn, req *kmsg.IncrementalAlterConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		err := s.alterResource(c, r.ResourceType, r.ResourceName, func() error {
			set, err := incrementalSet(r.Configs)
			if err != nil {
				return err
			}
			return s.alterTopic(ctx, r.ResourceName, set, req.ValidateOnly)
		})
		rr.ErrorCode, rr.ErrorMessage = adminCode(err, kerr.InvalidConfig)
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}

// AlterConfigs (legacy) replaces a topic's whole config: keys it does not
// name go back to their defaults.
func (s *Server) handleAlterConfigs(ctx context.Context, c *Conn, req *kmsg.AlterConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		err := s.alterResource(c, r.ResourceType, r.ResourceName, func() error {
			set := map[string]string{}
			for k, v := range resetValues {
				set[k] = v
			}
			for _, e := range r.Configs {
				if _, ok := resetValues[e.Name]; !ok || e.Value == nil {
					return refuse(kerr.InvalidConfig, "config %q: unknown key or null value (supported: %v)", e.Name, fsm.ConfigKeys)
				}
				set[e.Name] = *e.Value
			}
			return s.alterTopic(ctx, r.ResourceName, set, req.ValidateOnly)
		})
		rr.ErrorCode, rr.ErrorMessage = adminCode(err, kerr.InvalidConfig)
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}

// alterResource authorizes and runs the alteration of one topic resource;
// broker configs cannot be altered (they are agent settings).
func (s *Server) alterResource(c *Conn, typ kmsg.ConfigResourceType, name string, alter func() error) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if err := s.authorize(c, OpAlter, name); err != nil {
			return err
		}
		return alter()
	case kmsg.ConfigResourceTypeBroker:
		if err := s.authorize(c, OpAlter, ""); err != nil {
			return err
		}
		return refuse(kerr.InvalidRequest, "broker configs are read-only: they are agent settings (environment variables)")
	}
	return refuse(kerr.InvalidRequest, "config resource type %v is not supported (topics are)", typ)
}

// incrementalSet turns SET/DELETE operations into the key → value map
// AlterTopicConfig takes (DELETE sets the value that means "not set").
// APPEND and SUBTRACT are refused: no supported key holds a list that can
// have more than one value.
func incrementalSet(cfgs []kmsg.IncrementalAlterConfigsRequestResourceConfig) (map[string]string, error) {
	set := map[string]string{}
	for _, e := range cfgs {
		reset, known := resetValues[e.Name]
		if !known {
			return nil, refuse(kerr.InvalidConfig, "config %q: unknown key (supported: %v)", e.Name, fsm.ConfigKeys)
		}
		switch e.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if e.Value == nil {
				return nil, refuse(kerr.InvalidConfig, "config %q: SET without a value", e.Name)
			}
			set[e.Name] = *e.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			set[e.Name] = reset
		default:
			return nil, refuse(kerr.InvalidConfig, "config %q: operation %v is not supported (SET and DELETE are)", e.Name, e.Op)
		}
	}
	return set, nil
}

// alterTopic validates set and applies it to the topic (unless
// validateOnly). An empty set only checks that the topic exists.
func (s *Server) alterTopic(ctx context.Context, topic string, set map[string]string, validateOnly bool) error {
	if _, err := s.cfg.Topics.Topic(topic); err != nil {
		return err
	}
	if len(set) == 0 {
		return nil
	}
	if _, err := fsm.ConfigEntries(set); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	_, err := s.cfg.Admin.AlterTopicConfig(ctx, topic, set)
	return err
}
