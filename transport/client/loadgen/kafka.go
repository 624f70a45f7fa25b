package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/transport/client"
)

// Kafka is the Target of a franz-go client on the agents' Kafka listeners:
// an idempotent producer (each Send is one partition's batch, awaited as a
// whole, like the Go client's rows) and raw Fetch requests for the reads.
type Kafka struct {
	cl  *kgo.Client
	mu  sync.Mutex
	ids map[string][16]byte // topic IDs (Fetch v13+ names topics by ID)
}

// NewKafka connects to the Kafka listeners at seeds (host:port).
func NewKafka(seeds []string) (*Kafka, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return nil, err
	}
	return &Kafka{cl: cl, ids: map[string][16]byte{}}, nil
}

// Send produces recs and waits for every acknowledgement; the client
// retries by itself, so retries is always 0.
func (k *Kafka) Send(ctx context.Context, _ int, topic string, recs []client.Record) (int64, error) {
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
	}
	return 0, k.cl.ProduceSync(ctx, krs...).FirstErr()
}

// Fetch reads one partition with one Fetch request (any agent serves it).
func (k *Kafka) Fetch(ctx context.Context, req client.FetchRequest) (client.FetchResult, error) {
	id, err := k.topicID(ctx, req.Topic)
	if err != nil {
		return client.FetchResult{}, err
	}
	if req.Offset < 0 {
		if req.Offset, err = k.listOffset(ctx, req.Topic, req.Partition, req.Offset); err != nil {
			return client.FetchResult{}, err
		}
	}
	f := kmsg.NewPtrFetchRequest()
	f.MaxWaitMillis, f.MinBytes, f.MaxBytes = int32(req.MaxWait/time.Millisecond), 1, 64<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = req.Topic, id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = req.Partition, req.Offset, max(req.MaxBytes, 4<<20)
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	resp, err := f.RequestWith(ctx, k.cl)
	if err != nil {
		return client.FetchResult{}, err
	}
	rp := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
		return client.FetchResult{}, err
	}
	out := client.FetchResult{NextOffset: req.Offset, HighWatermark: rp.HighWatermark, LowWatermark: rp.LogStartOffset}
	fp2, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: req.Topic, Partition: req.Partition, Offset: req.Offset}, &rp, kgo.DefaultDecompressor(), nil)
	if fp2.Err != nil {
		return out, fp2.Err
	}
	for _, r := range fp2.Records {
		out.Records = append(out.Records, client.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value})
		out.NextOffset = r.Offset + 1
	}
	return out, nil
}

func (k *Kafka) topicID(ctx context.Context, topic string) ([16]byte, error) {
	k.mu.Lock()
	id, ok := k.ids[topic]
	k.mu.Unlock()
	if ok {
		return id, nil
	}
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	resp, err := md.RequestWith(ctx, k.cl)
	if err != nil {
		return id, err
	}
	for _, t := range resp.Topics {
		if t.Topic != nil && *t.Topic == topic && t.ErrorCode == 0 {
			k.mu.Lock()
			k.ids[topic] = t.TopicID
			k.mu.Unlock()
			return t.TopicID, nil
		}
	}
	return id, fmt.Errorf("topic %q not in metadata", topic)
}

// listOffset resolves client.OffsetEarliest/OffsetLatest (-2/-1, Kafka's
// own special timestamps).
func (k *Kafka) listOffset(ctx context.Context, topic string, partition int32, which int64) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, which
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, k.cl)
	if err != nil {
		return 0, err
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, err
	}
	return p.Offset, nil
}

// Close closes the client.
func (k *Kafka) Close() error {
	k.cl.Close()
	return nil
}
