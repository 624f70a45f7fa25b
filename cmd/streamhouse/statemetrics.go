package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
)

// stateCollector exports gauges computed from the replicated state at scrape
// time: per-partition watermarks and unflushed offsets, and per-group lag.
// Every agent holds the same state, so dashboards aggregate with max().
type stateCollector struct {
	fsm *fsm.FSM

	high, low, unflushed, groupLag, groupOffset *prometheus.Desc
}

func newStateCollector(f *fsm.FSM) *stateCollector {
	return &stateCollector{
		fsm: f,
		high: prometheus.NewDesc("streamhouse_partition_high_watermark",
			"The next offset to be written, per partition.", []string{"topic", "partition"}, nil),
		low: prometheus.NewDesc("streamhouse_partition_low_watermark",
			"The first offset still stored, per partition.", []string{"topic", "partition"}, nil),
		unflushed: prometheus.NewDesc("streamhouse_partition_unflushed_offsets",
			"Committed offsets not yet in a segment object (high watermark - flushed offset), per partition.", []string{"topic", "partition"}, nil),
		groupLag: prometheus.NewDesc("streamhouse_consumer_group_lag",
			"High watermark minus the group's committed offset, per group and partition.", []string{"group", "topic", "partition"}, nil),
		groupOffset: prometheus.NewDesc("streamhouse_consumer_group_offset",
			"The group's committed offset (the next offset it reads), per group and partition.", []string{"group", "topic", "partition"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.high
	ch <- c.low
	ch <- c.unflushed
	ch <- c.groupLag
	ch <- c.groupOffset
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	type pk = fsm.PartitionKey
	infos := map[pk]fsm.PartitionInfo{}
	for _, p := range c.fsm.AllPartitions() {
		infos[pk{TopicID: p.TopicID, Partition: p.Partition}] = p
		part := strconv.Itoa(int(p.Partition))
		ch <- prometheus.MustNewConstMetric(c.high, prometheus.GaugeValue, float64(p.NextOffset), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.low, prometheus.GaugeValue, float64(p.LowWatermark), p.Topic, part)
		ch <- prometheus.MustNewConstMetric(c.unflushed, prometheus.GaugeValue, float64(p.NextOffset-p.FlushedOffset), p.Topic, part)
	}
	for _, g := range c.fsm.GroupNames() {
		offs, ok := c.fsm.GroupOffsets(g)
		if !ok {
			continue
		}
		for k, o := range offs {
			p, ok := infos[k]
			if !ok {
				continue
			}
			part := strconv.Itoa(int(k.Partition))
			ch <- prometheus.MustNewConstMetric(c.groupLag, prometheus.GaugeValue, float64(max(p.NextOffset-o.Offset, 0)), g, p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.groupOffset, prometheus.GaugeValue, float64(o.Offset), g, p.Topic, part)
		}
	}
}
