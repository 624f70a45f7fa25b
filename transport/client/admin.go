package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// GetMetadata returns the cluster's agents and the partition leaders of the
// named topics (none: every topic), and refreshes the client's cache.
func (c *Client) GetMetadata(ctx context.Context, topics ...string) (Metadata, error) {
	return c.getMetadata(ctx, topics)
}

// CreateTopic creates a topic with partitions partitions (>= 1).
func (c *Client) CreateTopic(ctx context.Context, name string, partitions int32, cfg TopicConfig) (Topic, error) {
	var out Topic
	err := c.call(ctx, "CreateTopic", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.CreateTopic(ctx, &pb.CreateTopicRequest{
			Name: name, Partitions: &partitions, RetentionMs: cfg.RetentionMs, RetentionBytes: cfg.RetentionBytes, Compression: cfg.Compression,
		})
		if err == nil {
			out = topicFromPB(resp.GetTopic())
		}
		return err
	})
	if err == nil {
		c.forgetTopic(name) // a cached entry of a deleted namesake is stale
	}
	return out, err
}

// ListTopics lists every topic, ordered by name.
func (c *Client) ListTopics(ctx context.Context) ([]Topic, error) {
	var out []Topic
	err := c.call(ctx, "ListTopics", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.ListTopics(ctx, &pb.ListTopicsRequest{})
		if err == nil {
			out = make([]Topic, len(resp.GetTopics()))
			for i, t := range resp.GetTopics() {
				out[i] = topicFromPB(t)
			}
		}
		return err
	})
	return out, err
}

// DescribeTopic returns a topic (with its Configs) and the state of its
// partitions.
func (c *Client) DescribeTopic(ctx context.Context, name string) (Topic, []PartitionInfo, error) {
	var (
		t  Topic
		ps []PartitionInfo
	)
	err := c.call(ctx, "DescribeTopic", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: name})
		if err != nil {
			return err
		}
		t = topicFromPB(resp.GetTopic())
		t.Configs = configsFromPB(resp.GetConfigs())
		ps = partitionsFromPB(resp.GetPartitions())
		return nil
	})
	return t, ps, err
}

func partitionsFromPB(in []*pb.PartitionInfo) []PartitionInfo {
	ps := make([]PartitionInfo, len(in))
	for i, p := range in {
		ps[i] = PartitionInfo{
			Partition: p.GetPartition(), Leader: p.GetLeader(), LeaderEpoch: p.GetLeaderEpoch(),
			LowWatermark: p.GetLowWatermark(), HighWatermark: p.GetHighWatermark(),
			FlushedOffset: p.GetFlushedOffset(), SegmentCount: p.GetSegmentCount(),
		}
	}
	return ps
}

// AlterTopicConfig sets the named config keys of a topic (Kafka names:
// retention.ms, retention.bytes, compression.type, max.message.bytes,
// cleanup.policy; string values); the others keep their value. It returns
// the topic with its Configs after the change. An unknown key or a bad
// value is codes.InvalidArgument and changes nothing.
func (c *Client) AlterTopicConfig(ctx context.Context, name string, set map[string]string) (Topic, error) {
	var out Topic
	err := c.call(ctx, "AlterTopicConfig", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.AlterTopicConfig(ctx, &pb.AlterTopicConfigRequest{Name: name, Configs: set})
		if err == nil {
			out = topicFromPB(resp.GetTopic())
			out.Configs = configsFromPB(resp.GetConfigs())
		}
		return err
	})
	return out, err
}

// CreatePartitions raises a topic's partition count to count (the new
// total; never lower). Keyed records hash over the new count from then
// on, so a key may map to another partition than before (as in Kafka).
// The client's cached metadata of the topic is refreshed.
func (c *Client) CreatePartitions(ctx context.Context, name string, count int32) (Topic, []PartitionInfo, error) {
	var (
		t  Topic
		ps []PartitionInfo
	)
	err := c.call(ctx, "CreatePartitions", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.CreatePartitions(ctx, &pb.CreatePartitionsRequest{Name: name, Count: count})
		if err == nil {
			t, ps = topicFromPB(resp.GetTopic()), partitionsFromPB(resp.GetPartitions())
		}
		return err
	})
	c.forgetTopic(name)
	return t, ps, err
}

// DeleteTopic deletes a topic.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	err := c.call(ctx, "DeleteTopic", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: name})
		return err
	})
	c.forgetTopic(name)
	return err
}

// InitProducer issues a new idempotent producer id (id 0) or bumps the
// epoch of an existing one, fencing the session that used the older epoch.
// Producers call it themselves; it is exported for tools and tests.
func (c *Client) InitProducer(ctx context.Context, id uint64) (ProducerIdentity, error) {
	var out ProducerIdentity
	err := c.call(ctx, "InitProducer", func(ctx context.Context, sc pb.StreamHouseClient) error {
		req := &pb.InitProducerRequest{}
		if id != 0 {
			req.ProducerId = &id
		}
		resp, err := sc.InitProducer(ctx, req)
		if err == nil {
			out = ProducerIdentity{ID: resp.GetProducerId(), Epoch: resp.GetProducerEpoch()}
		}
		return err
	})
	return out, err
}

// Fetch reads records of one partition (one Fetch RPC, sent to the
// partition's leader when known).
func (c *Client) Fetch(ctx context.Context, req FetchRequest) (FetchResult, error) {
	cc, addr, err := c.leaderConn(req.Topic, req.Partition, 0)
	if err != nil {
		return FetchResult{}, err
	}
	resp, err := pb.NewStreamHouseClient(cc).Fetch(ctx, &pb.FetchRequest{
		Topic: req.Topic, Partition: req.Partition, Offset: req.Offset, MaxRecords: req.MaxRecords,
		MaxBytes: req.MaxBytes, MaxWaitMs: req.MaxWait.Milliseconds(),
	})
	if err != nil {
		if Code(err) == codes.Unavailable {
			// Another agent can serve the read.
			var res FetchResult
			err2 := c.call(ctx, "Fetch", func(ctx context.Context, sc pb.StreamHouseClient) error {
				r, err := sc.Fetch(ctx, &pb.FetchRequest{
					Topic: req.Topic, Partition: req.Partition, Offset: req.Offset, MaxRecords: req.MaxRecords,
					MaxBytes: req.MaxBytes, MaxWaitMs: req.MaxWait.Milliseconds(),
				})
				if err == nil {
					res = fetchResultFromPB(req.Topic, r.GetRecords(), r.GetNextOffset(), r.GetHighWatermark(), r.GetLowWatermark())
				}
				return err
			})
			return res, err2
		}
		return FetchResult{}, wrapErr("Fetch", err)
	}
	c.answered(addr)
	return fetchResultFromPB(req.Topic, resp.GetRecords(), resp.GetNextOffset(), resp.GetHighWatermark(), resp.GetLowWatermark()), nil
}

func fetchResultFromPB(topic string, recs []*pb.FetchedRecord, next, high, low int64) FetchResult {
	return FetchResult{Records: recordsFromPB(topic, recs), NextOffset: next, HighWatermark: high, LowWatermark: low}
}

// Subscribe streams the records of one partition from req.Offset and calls
// fn with every non-empty batch, until ctx is done (it returns ctx.Err()),
// fn returns an error (returned as is) or the stream fails.
func (c *Client) Subscribe(ctx context.Context, req SubscribeRequest, fn func(FetchResult) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cc, _, err := c.leaderConn(req.Topic, req.Partition, 0)
	if err != nil {
		return err
	}
	stream, err := pb.NewStreamHouseClient(cc).Subscribe(ctx, &pb.SubscribeRequest{
		Topic: req.Topic, Partition: req.Partition, Offset: req.Offset, MaxRecords: req.MaxRecords,
		MaxBytes: req.MaxBytes, MaxWaitMs: req.MaxWait.Milliseconds(),
	})
	if err != nil {
		return wrapErr("Subscribe", err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return wrapErr("Subscribe", err)
		}
		if err := fn(fetchResultFromPB(req.Topic, msg.GetRecords(), msg.GetNextOffset(), msg.GetHighWatermark(), msg.GetLowWatermark())); err != nil {
			return err
		}
	}
}

// CommitOffsets commits a group's offsets, all or nothing. Each offset is
// the next record the group will consume (at most the high watermark).
func (c *Client) CommitOffsets(ctx context.Context, group string, offsets ...OffsetCommit) error {
	req := &pb.CommitOffsetsRequest{Group: group, Offsets: make([]*pb.OffsetCommit, len(offsets))}
	for i, o := range offsets {
		req.Offsets[i] = &pb.OffsetCommit{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Metadata: o.Metadata}
	}
	return c.call(ctx, "CommitOffsets", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.CommitOffsets(ctx, req)
		return err
	})
}

// FetchOffsets returns a group's committed offsets (of topic, or of every
// topic when topic is "").
func (c *Client) FetchOffsets(ctx context.Context, group, topic string) ([]CommittedOffset, error) {
	var out []CommittedOffset
	err := c.call(ctx, "FetchOffsets", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: group, Topic: topic})
		if err == nil {
			out = make([]CommittedOffset, len(resp.GetOffsets()))
			for i, o := range resp.GetOffsets() {
				out[i] = CommittedOffset{Topic: o.GetTopic(), Partition: o.GetPartition(), Offset: o.GetOffset(),
					Metadata: o.GetMetadata(), CommittedAtMs: o.GetCommittedAtMs()}
			}
		}
		return err
	})
	return out, err
}

// ListGroups lists every consumer group with its total lag.
func (c *Client) ListGroups(ctx context.Context) ([]GroupSummary, error) {
	var out []GroupSummary
	err := c.call(ctx, "ListGroups", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.ListGroups(ctx, &pb.ListGroupsRequest{})
		if err == nil {
			out = make([]GroupSummary, len(resp.GetGroups()))
			for i, g := range resp.GetGroups() {
				out[i] = GroupSummary{Group: g.GetGroup(), Topics: g.GetTopics(), Partitions: int(g.GetPartitionCount()), TotalLag: g.GetTotalLag()}
			}
		}
		return err
	})
	return out, err
}

// DescribeGroup returns a group's committed offsets and lag per partition.
func (c *Client) DescribeGroup(ctx context.Context, group string) (GroupDescription, error) {
	var out GroupDescription
	err := c.call(ctx, "DescribeGroup", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: group})
		if err == nil {
			out = groupFromPB(resp.GetGroup())
		}
		return err
	})
	return out, err
}

// DeleteGroup deletes a group and its committed offsets.
func (c *Client) DeleteGroup(ctx context.Context, group string) error {
	return c.call(ctx, "DeleteGroup", func(ctx context.Context, sc pb.StreamHouseClient) error {
		_, err := sc.DeleteGroup(ctx, &pb.DeleteGroupRequest{Group: group})
		return err
	})
}

var resetStrategies = map[string]pb.ResetStrategy{
	ResetEarliest:  pb.ResetStrategy_RESET_STRATEGY_EARLIEST,
	ResetLatest:    pb.ResetStrategy_RESET_STRATEGY_LATEST,
	ResetOffset:    pb.ResetStrategy_RESET_STRATEGY_OFFSET,
	ResetTimestamp: pb.ResetStrategy_RESET_STRATEGY_TIMESTAMP,
}

// ResetGroup moves a group's offsets for r.Topic (every partition, or
// r.Partitions) to the earliest or latest offset, r.Offset or the first
// record at or after r.TimestampMs, and returns the group afterwards.
func (c *Client) ResetGroup(ctx context.Context, group string, r GroupReset) (GroupDescription, error) {
	strategy, ok := resetStrategies[r.Strategy]
	if !ok && r.Strategy != "" {
		return GroupDescription{}, newError("ResetGroup", codes.InvalidArgument, KindBadRequest,
			"unknown reset strategy %q (want %s, %s, %s or %s)", r.Strategy, ResetEarliest, ResetLatest, ResetOffset, ResetTimestamp)
	}
	var out GroupDescription
	err := c.call(ctx, "ResetGroup", func(ctx context.Context, sc pb.StreamHouseClient) error {
		resp, err := sc.ResetGroup(ctx, &pb.ResetGroupRequest{
			Group: group, Strategy: strategy, Topic: r.Topic, Partitions: r.Partitions, Offset: r.Offset, TimestampMs: r.TimestampMs,
		})
		if err == nil {
			out = groupFromPB(resp.GetGroup())
		}
		return err
	})
	return out, err
}

// sleepCtx waits d or until ctx is done (then it returns ctx.Err()).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
