package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/transport/client"
)

// Kafka is the Target of a franz-go client on the agents' Kafka listeners:
// an idempotent producer (each Send is one partition's batch, awaited as a
// whole, like the Go client's rows), raw Fetch requests for the tail
// reader, and a franz-go consumer for the read-back (ReadTopic), unless
// RawFetch.
type Kafka struct {
	// RawFetch reads the topic back with one Fetch request per partition
	// and page (the Go client's way) instead of a consumer.
	RawFetch bool

	seeds []string
	cl    *kgo.Client
	mu    sync.Mutex
	ids   map[string][16]byte // topic IDs (Fetch v13+ names topics by ID)
}

var _ TopicReader = (*Kafka)(nil)

// NewKafka connects to the Kafka listeners at seeds (host:port).
func NewKafka(seeds []string) (*Kafka, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return nil, err
	}
	return &Kafka{seeds: seeds, cl: cl, ids: map[string][16]byte{}}, nil
}

// Read-back sizing: franz-go's default 1 MiB per partition
// (max.partition.fetch.bytes), close to the Go client's read-back pages of
// 5,000 records (0.6 MiB of 100 B records), and 4 MiB per answer
// (fetch.max.bytes) instead of the default 50 MiB: franz-go reads every
// answer into a fresh buffer of its size, and answers of 33 MiB (one per
// broker, 33 partitions of 1 MiB) came as new pages from the kernel each
// time (about 400 MB of page faults per 2M records, over half of the
// consumer's CPU); answers of a few MiB reuse the heap's memory while it
// is still in cache. The agents read only what an answer keeps
// (transport/kafka readWithin), so smaller answers cost them no more.
// The raw Fetch mode asks 4 MiB per partition like the Go client's byte
// limit.
const (
	readPartitionBytes = 1 << 20
	readFetchBytes     = 4 << 20
)

// readStall ends a read-back that gets no record for this long (a
// partition whose end offset lies past its last record, after a gap).
const readStall = 10 * time.Second

// ReadTopic reads every partition from its start to its end offset as of
// the call, the way a Kafka application does: a franz-go consumer
// assigned every partition, which sends each partition leader one Fetch
// for all the partitions it leads. With RawFetch it reads one partition
// per Fetch request instead (readPartitions).
func (k *Kafka) ReadTopic(ctx context.Context, topic string, partitions int32) (int64, error) {
	if k.RawFetch {
		return readPartitions(ctx, Config{Topic: topic, Partitions: partitions, ReadRecords: 5000, ReadBytes: 4 << 20}, rawFetcher{k}), nil
	}
	todo, err := k.partitionEnds(ctx, topic)
	if err != nil || len(todo) == 0 {
		return 0, err
	}
	from := map[int32]kgo.Offset{}
	for p := range todo {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxPartitionBytes(readPartitionBytes), kgo.FetchMaxBytes(readFetchBytes), kgo.FetchMaxWait(time.Second),
		kgo.WithPools(&recordPool{}))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var n int64
	for len(todo) > 0 {
		pctx, cancel := context.WithTimeout(ctx, readStall)
		fs := cl.PollFetches(pctx)
		cancel()
		if errs := fs.Errors(); len(errs) > 0 {
			if ctx.Err() == nil && errors.Is(errs[0].Err, context.DeadlineExceeded) {
				return n, fmt.Errorf("no record for %v with %d partitions short of their end offset", readStall, len(todo))
			}
			return n, fmt.Errorf("partition %d: %w", errs[0].Partition, errs[0].Err)
		}
		// Records are counted, then recycled: their slices go back to
		// recordPool for the next batches.
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			n += int64(len(p.Records))
			if len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset+1 >= todo[p.Partition] {
				delete(todo, p.Partition)
			}
			for _, r := range p.Records {
				r.Recycle()
			}
		})
	}
	return n, nil
}

// recordPool is a kgo.PoolRecords: franz-go decodes each fetched batch
// into a []kgo.Record taken from it, and puts the slice back once every
// record of the batch is recycled (Record.Recycle). Slices are pooled by
// power-of-two capacity.
type recordPool struct {
	classes [32]sync.Pool
}

func (rp *recordPool) GetRecords(n int) []kgo.Record {
	c := bits.Len(uint(max(n, 1) - 1))
	if c >= len(rp.classes) {
		return make([]kgo.Record, 0, n)
	}
	if s, ok := rp.classes[c].Get().(*[]kgo.Record); ok {
		return (*s)[:0]
	}
	return make([]kgo.Record, 0, 1<<c)
}

func (rp *recordPool) PutRecords(s []kgo.Record) {
	c := bits.Len(uint(cap(s) - 1))
	if cap(s) == 0 || c >= len(rp.classes) || cap(s) != 1<<c {
		return
	}
	s = s[:0]
	rp.classes[c].Put(&s)
}

// partitionEnds returns the end offset of every partition that holds
// records.
func (k *Kafka) partitionEnds(ctx context.Context, topic string) (map[int32]int64, error) {
	adm := kadm.NewClient(k.cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	todo := map[int32]int64{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		switch {
		case o.Err != nil:
			ferr = o.Err
		case s.Err != nil:
			ferr = s.Err
		case o.Offset > s.Offset:
			todo[o.Partition] = o.Offset
		}
	})
	return todo, ferr
}

// rawFetcher reads through Kafka.Fetch (a Target that is no TopicReader).
type rawFetcher struct{ k *Kafka }

func (r rawFetcher) Send(ctx context.Context, w int, topic string, recs []client.Record) (int64, error) {
	return r.k.Send(ctx, w, topic, recs)
}

func (r rawFetcher) Fetch(ctx context.Context, req client.FetchRequest) (client.FetchResult, error) {
	return r.k.Fetch(ctx, req)
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
