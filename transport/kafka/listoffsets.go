package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// Offsets answers offset-for-timestamp lookups (partition.Fetcher).
type Offsets interface {
	OffsetForTimestamp(ctx context.Context, topic string, partition int32, ts int64) (fsm.TimestampOffset, error)
}

// Special timestamps of ListOffsets.
const (
	listLatest   = -1
	listEarliest = -2
)

// handleListOffsets answers earliest (-2), latest (-1) and by-timestamp
// lookups, from any agent. Max timestamp (-3, v7+) is not served.
func (s *Server) handleListOffsets(ctx context.Context, c *Conn, req *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	view := s.newTopicView()
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = rt.Topic
		denied := s.authorize(c, OpDescribe, rt.Topic) != nil // once per topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition, p.Timestamp, p.Offset, p.LeaderEpoch = rp.Partition, -1, -1, -1
			if denied {
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else {
				s.listOffset(ctx, view, rt.Topic, rp.Timestamp, &p)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// listOffset answers one partition.
func (s *Server) listOffset(ctx context.Context, view *topicView, topic string, ts int64, p *kmsg.ListOffsetsResponseTopicPartition) {
	info, err := view.partition(topic, p.Partition)
	if err != nil {
		// As Fetch: an agent still catching up answers NOT_LEADER (the
		// client refreshes its metadata and retries).
		p.ErrorCode = fetchCode(err, kerr.UnknownTopicOrPartition.Code)
		return
	}
	switch {
	case ts == listEarliest:
		p.Offset = info.LowWatermark
	case ts == listLatest:
		p.Offset = info.NextOffset
	case ts < 0:
		p.ErrorCode = kerr.InvalidRequest.Code
	default:
		s.offsetForTime(ctx, topic, ts, p)
	}
}

// offsetForTime answers the first offset whose timestamp is at or after ts
// with that record's timestamp, or offset and timestamp -1 when no record
// is that recent (as Kafka does).
func (s *Server) offsetForTime(ctx context.Context, topic string, ts int64, p *kmsg.ListOffsetsResponseTopicPartition) {
	to, err := s.cfg.Offsets.OffsetForTimestamp(ctx, topic, p.Partition, ts)
	if err != nil {
		p.ErrorCode = fetchCode(err, kerr.UnknownTopicOrPartition.Code)
		return
	}
	if to.Offset >= to.HighWatermark {
		return
	}
	p.Offset, p.Timestamp = to.Offset, ts
	res, err := s.cfg.Fetcher.Fetch(ctx, fsm.FetchRequest{Topic: topic, Partition: p.Partition, Offset: to.Offset, MaxRecords: 1})
	if err == nil && len(res.Records) > 0 {
		p.Offset, p.Timestamp = res.Records[0].Offset, res.Records[0].Timestamp
	}
}
