package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// The fake agent's admin side (partition.Admin in the agent).

func (f *fakeAgent) CreateTopic(_ context.Context, name string, parts int32, cfg fsm.TopicConfig) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[name]; ok {
		return fsm.Topic{}, fsm.ErrTopicExists
	}
	if parts > 100 {
		return fsm.Topic{}, fmt.Errorf("%w: max partitions", fsm.ErrLimitExceeded)
	}
	t := fsm.Topic{ID: uint64(len(f.topics) + 10), Name: name, Partitions: parts, Config: cfg}
	f.topics[name] = t
	return t, nil
}

func (f *fakeAgent) DeleteTopic(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[name]; !ok {
		return fsm.ErrTopicNotFound
	}
	delete(f.topics, name)
	return nil
}

func (f *fakeAgent) AlterTopicConfig(_ context.Context, name string, set map[string]string) (fsm.Topic, error) {
	entries, err := fsm.ConfigEntries(set)
	if err != nil {
		return fsm.Topic{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fsm.ErrTopicNotFound
	}
	if t.Config, err = t.Config.WithUpdates(entries); err != nil {
		return fsm.Topic{}, err
	}
	f.topics[name] = t
	return t, nil
}

func (f *fakeAgent) CreatePartitions(_ context.Context, name string, count int32) (fsm.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return fsm.Topic{}, fsm.ErrTopicNotFound
	}
	t.Partitions = count
	f.topics[name] = t
	return t, nil
}

func withAdmin(c *Config) { c.Admin = c.Topics.(*fakeAgent) }

func TestCreateAndDeleteTopics(t *testing.T) {
	e := newEnv(t, withAdmin)
	adm := kadm.NewClient(e.client(t))
	ctx := ctxT(t)
	res, err := adm.CreateTopics(ctx, 3, -1, map[string]*string{"retention.ms": kmsg.StringPtr("60000")}, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Sorted() {
		if r.Err != nil || r.NumPartitions != 3 || r.ID == (kadm.TopicID{}) {
			t.Fatalf("create %s: %+v", r.Topic, r)
		}
	}
	if got := e.agent.topics["a"].Config.RetentionMs; got != 60000 {
		t.Fatalf("retention.ms = %d", got)
	}
	cases := []struct {
		name  string
		parts int32
		rf    int16
		cfg   map[string]*string
		want  error
	}{
		{"a", 1, -1, nil, kerr.TopicAlreadyExists},
		{"bad/name", 1, -1, nil, kerr.InvalidTopicException},
		{"zero", 0, -1, nil, kerr.InvalidPartitions},
		{"rf", 1, 0, nil, kerr.InvalidReplicationFactor},
		{"cfg", 1, 3, map[string]*string{"segment.ms": kmsg.StringPtr("1")}, kerr.InvalidConfig},
		{"cfg2", 1, 3, map[string]*string{"compression.type": kmsg.StringPtr("brotli")}, kerr.InvalidConfig},
		{"huge", 200, -1, nil, kerr.PolicyViolation},
	}
	for _, c := range cases {
		r, err := adm.CreateTopic(ctx, c.parts, c.rf, c.cfg, c.name)
		if err == nil {
			err = r.Err
		}
		if !errors.Is(err, c.want) || r.ErrMessage == "" {
			t.Errorf("create %s: %v (%q), want %v with a message", c.name, err, r.ErrMessage, c.want)
		}
	}
	// validate_only creates nothing.
	if _, err := adm.ValidateCreateTopics(ctx, 2, -1, nil, "dry"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.agent.topics["dry"]; ok {
		t.Fatal("validate_only created the topic")
	}

	del, err := adm.DeleteTopics(ctx, "b", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if del["b"].Err != nil || !errors.Is(del["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete: b %v, missing %v", del["b"].Err, del["missing"].Err)
	}
	// By topic ID (DeleteTopics v6).
	id := TopicID(e.agent.topics["a"].ID)
	req := kmsg.NewPtrDeleteTopicsRequest()
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.TopicID = id
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, e.client(t))
	if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || *resp.Topics[0].Topic != "a" {
		t.Fatalf("delete by ID: %+v %v", resp, err)
	}
	if len(e.agent.topics) != 0 {
		t.Fatalf("topics left: %v", e.agent.topics)
	}
}

func TestCreatePartitions(t *testing.T) {
	e := newEnv(t, withAdmin)
	e.agent.addTopic("t", 2)
	adm := kadm.NewClient(e.client(t))
	ctx := ctxT(t)
	if r, err := adm.ValidateCreatePartitions(ctx, 3, "t"); err != nil || r["t"].Err != nil {
		t.Fatalf("validate: %v %+v", err, r)
	}
	if e.agent.topics["t"].Partitions != 2 {
		t.Fatal("validate_only added partitions")
	}
	if r, err := adm.UpdatePartitions(ctx, 5, "t"); err != nil || r["t"].Err != nil {
		t.Fatalf("update: %v %+v", err, r)
	}
	if e.agent.topics["t"].Partitions != 5 {
		t.Fatalf("partitions %d", e.agent.topics["t"].Partitions)
	}
	r, err := adm.UpdatePartitions(ctx, 4, "t", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r["t"].Err, kerr.InvalidPartitions) || !errors.Is(r["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("shrink %v, missing %v", r["t"].Err, r["missing"].Err)
	}
}

func TestDescribeAndAlterConfigs(t *testing.T) {
	e := newEnv(t, withAdmin, func(c *Config) { c.MaxRecordBytes = 1 << 20 })
	e.agent.addTopic("t", 1)
	adm := kadm.NewClient(e.client(t))
	ctx := ctxT(t)
	alter := []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kmsg.StringPtr("1000")},
		{Op: kadm.SetConfig, Name: "compression.type", Value: kmsg.StringPtr("lz4")},
	}
	if r, err := adm.AlterTopicConfigs(ctx, alter, "t"); err != nil || r[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, r)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("t", nil)
	if err != nil || rc.Err != nil {
		t.Fatal(err, rc.Err)
	}
	got := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		got[c.Key] = c
	}
	if c := got["retention.ms"]; c.MaybeValue() != "1000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig || len(c.Synonyms) != 2 {
		t.Fatalf("retention.ms: %+v", c)
	}
	if c := got["max.message.bytes"]; c.MaybeValue() != "1048576" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("max.message.bytes: %+v", c)
	}
	if len(got) != len(fsm.ConfigKeys) {
		t.Fatalf("described %d keys, want %d", len(got), len(fsm.ConfigKeys))
	}
	// DELETE goes back to the default.
	del := []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "retention.ms"}}
	if r, err := adm.AlterTopicConfigs(ctx, del, "t"); err != nil || r[0].Err != nil {
		t.Fatalf("delete: %v %+v", err, r)
	}
	if c := e.agent.topics["t"].Config; c.RetentionMs != 0 || c.Compression != "lz4" {
		t.Fatalf("config after delete: %+v", c)
	}
	for _, bad := range [][]kadm.AlterConfig{
		{{Op: kadm.SetConfig, Name: "segment.bytes", Value: kmsg.StringPtr("1")}},
		{{Op: kadm.SetConfig, Name: "retention.ms", Value: kmsg.StringPtr("soon")}},
		{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kmsg.StringPtr("compact")}},
	} {
		r, err := adm.AlterTopicConfigs(ctx, bad, "t")
		if err != nil || !errors.Is(r[0].Err, kerr.InvalidConfig) || r[0].ErrMessage == "" {
			t.Errorf("alter %+v: %v %+v, want INVALID_CONFIG", bad[0], err, r)
		}
	}
	// Legacy AlterConfigs replaces the whole config.
	if r, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: kmsg.StringPtr("5000")}}, "t"); err != nil || r[0].Err != nil {
		t.Fatalf("alter state: %v %+v", err, r)
	}
	if c := e.agent.topics["t"].Config; c.RetentionBytes != 5000 || c.Compression != "zstd" {
		t.Fatalf("config after AlterConfigs: %+v", c)
	}
	// Broker configs: a small read-only set.
	brs, err := adm.DescribeBrokerConfigs(ctx, 7)
	if err != nil || len(brs) != 1 || brs[0].Err != nil || len(brs[0].Configs) == 0 {
		t.Fatalf("broker configs: %v %+v", err, brs)
	}
}

func TestMetadataByTopicIDAndAutoCreate(t *testing.T) {
	e := newEnv(t, withAdmin, func(c *Config) { c.AutoCreateTopics, c.DefaultPartitions = true, 2 })
	e.agent.addTopic("known", 1)
	cl := e.client(t)
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.TopicID = TopicID(e.agent.topics["known"].ID)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil || len(resp.Topics) != 1 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "known" || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("by ID: %+v %v", resp, err)
	}
	if resp.Topics[0].AuthorizedOperations != -2147483648 {
		t.Fatalf("authorized operations not asked, got %d", resp.Topics[0].AuthorizedOperations)
	}
	req = kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	rt = kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("fresh")
	req.Topics = append(req.Topics, rt)
	resp, err = req.RequestWith(ctxT(t), cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != 2 {
		t.Fatalf("auto-create: %v %+v", err, resp)
	}
	// A request that does not allow auto-creation (kadm's) gets
	// UNKNOWN_TOPIC_OR_PARTITION.
	req = kmsg.NewPtrMetadataRequest()
	rt = kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("other")
	req.Topics = append(req.Topics, rt)
	resp, err = req.RequestWith(ctxT(t), cl)
	if err != nil || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("no auto-create: %+v %v", resp, err)
	}
}

func TestAutoCreateIsOffByDefault(t *testing.T) {
	e := newEnv(t, withAdmin)
	md, err := kadm.NewClient(e.client(t)).Metadata(ctxT(t), "fresh")
	if err != nil || !errors.Is(md.Topics["fresh"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("%v %+v", err, md.Topics["fresh"])
	}
	if len(e.agent.topics) != 0 {
		t.Fatal("topic created")
	}
}
