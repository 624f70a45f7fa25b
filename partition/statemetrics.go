package partition

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// stateCollector exports gauges computed from the replicated state at scrape
// time. By default they are per topic (and per group and topic), so a
// scrape grows with the number of topics, which MAX_TOPICS bounds, not with
// the number of partitions; METRICS_PARTITION_SERIES adds the per-partition
// series. Every agent holds the same state, so dashboards aggregate with
// max().
type stateCollector struct {
	meta       Metadata
	partitions bool

	topicParts, topicHigh, topicUnflushed, topicBytes, groupTopicLag *prometheus.Desc
	high, low, unflushed, groupLag, groupOffset                      *prometheus.Desc
}

func newStateCollector(meta Metadata, perPartition bool) *stateCollector {
	pl := []string{"topic", "partition"}
	gl := []string{"group", "topic", "partition"}
	return &stateCollector{
		meta: meta, partitions: perPartition,
		topicParts: prometheus.NewDesc("streamhouse_topic_partitions",
			"Partitions of the topic.", []string{"topic"}, nil),
		topicHigh: prometheus.NewDesc("streamhouse_topic_high_watermark_sum",
			"Sum over the topic's partitions of the high watermark (records ever written to the topic).", []string{"topic"}, nil),
		topicUnflushed: prometheus.NewDesc("streamhouse_topic_unflushed_offsets",
			"Sum over the topic's partitions of committed offsets not yet in a segment object.", []string{"topic"}, nil),
		topicBytes: prometheus.NewDesc("streamhouse_topic_segment_bytes",
			"Sum over the topic's partitions of the bytes of their blocks in segment objects (the topic's size in the object store).", []string{"topic"}, nil),
		groupTopicLag: prometheus.NewDesc("streamhouse_consumer_group_topic_lag",
			"Sum over the topic's partitions of the group's lag (high watermark minus committed offset).", []string{"group", "topic"}, nil),
		high: prometheus.NewDesc("streamhouse_partition_high_watermark",
			"The next offset to be written, per partition (METRICS_PARTITION_SERIES).", pl, nil),
		low: prometheus.NewDesc("streamhouse_partition_low_watermark",
			"The first offset still stored, per partition (METRICS_PARTITION_SERIES).", pl, nil),
		unflushed: prometheus.NewDesc("streamhouse_partition_unflushed_offsets",
			"Committed offsets not yet in a segment object (high watermark - flushed offset), per partition (METRICS_PARTITION_SERIES).", pl, nil),
		groupLag: prometheus.NewDesc("streamhouse_consumer_group_lag",
			"High watermark minus the group's committed offset, per group and partition (METRICS_PARTITION_SERIES).", gl, nil),
		groupOffset: prometheus.NewDesc("streamhouse_consumer_group_offset",
			"The group's committed offset (the next offset it reads), per group and partition (METRICS_PARTITION_SERIES).", gl, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.topicParts, c.topicHigh, c.topicUnflushed, c.topicBytes, c.groupTopicLag,
		c.high, c.low, c.unflushed, c.groupLag, c.groupOffset} {
		ch <- d
	}
}

// topicSums accumulates one topic's partitions.
type topicSums struct {
	parts, high, unflushed, bytes int64
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	infos := map[fsm.PartitionKey]fsm.PartitionInfo{}
	topics := map[string]*topicSums{}
	for _, p := range c.meta.AllPartitions() {
		infos[fsm.PartitionKey{TopicID: p.TopicID, Partition: p.Partition}] = p
		s := topics[p.Topic]
		if s == nil {
			s = &topicSums{}
			topics[p.Topic] = s
		}
		s.parts++
		s.high += p.NextOffset
		s.unflushed += p.NextOffset - p.FlushedOffset
		s.bytes += p.SegmentBytes
		if c.partitions {
			part := strconv.Itoa(int(p.Partition))
			gauge(ch, c.high, p.NextOffset, p.Topic, part)
			gauge(ch, c.low, p.LowWatermark, p.Topic, part)
			gauge(ch, c.unflushed, p.NextOffset-p.FlushedOffset, p.Topic, part)
		}
	}
	for name, s := range topics {
		gauge(ch, c.topicParts, s.parts, name)
		gauge(ch, c.topicHigh, s.high, name)
		gauge(ch, c.topicUnflushed, s.unflushed, name)
		gauge(ch, c.topicBytes, s.bytes, name)
	}
	for _, g := range c.meta.GroupNames() {
		c.collectGroup(ch, g, infos)
	}
}

// collectGroup exports one group's lag per topic (and per partition when
// enabled).
func (c *stateCollector) collectGroup(ch chan<- prometheus.Metric, g string, infos map[fsm.PartitionKey]fsm.PartitionInfo) {
	offs, ok := c.meta.GroupOffsets(g)
	if !ok {
		return
	}
	lag := map[string]int64{}
	for k, o := range offs {
		p, ok := infos[k]
		if !ok {
			continue
		}
		l := max(p.NextOffset-o.Offset, 0)
		lag[p.Topic] += l
		if c.partitions {
			part := strconv.Itoa(int(k.Partition))
			gauge(ch, c.groupLag, l, g, p.Topic, part)
			gauge(ch, c.groupOffset, o.Offset, g, p.Topic, part)
		}
	}
	for topic, l := range lag {
		gauge(ch, c.groupTopicLag, l, g, topic)
	}
}
