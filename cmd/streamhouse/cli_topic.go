package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/streamhouse/streamhouse/transport/client"
)

type topicCmd struct {
	Create   topicCreateCmd   `cmd:"" help:"Create a topic."`
	List     topicListCmd     `cmd:"" help:"List the topics."`
	Describe topicDescribeCmd `cmd:"" help:"Show a topic and the state of its partitions."`
	Delete   topicDeleteCmd   `cmd:"" help:"Delete a topic and its data."`
	Alter    topicAlterCmd    `cmd:"" help:"Change a topic's configuration (retention, compression, max record size)."`
	AddParts topicAddPartsCmd `cmd:"" name:"add-partitions" help:"Raise a topic's partition count (keyed records may then map to other partitions)."`
}

// topicJSON is a topic in JSON output.
type topicJSON struct {
	Name           string `json:"name"`
	ID             uint64 `json:"id"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
	Compression    string `json:"compression"`
	CreatedAtMs    int64  `json:"created_at_ms"`
	// Configs (Kafka names) where the agent described them: describe,
	// alter and add-partitions.
	Configs  map[string]string `json:"configs,omitempty"`
	Defaults []string          `json:"config_defaults,omitempty"`
}

func toTopicJSON(t client.Topic) topicJSON {
	out := topicJSON{Name: t.Name, ID: t.ID, Partitions: t.Partitions, RetentionMs: t.RetentionMs,
		RetentionBytes: t.RetentionBytes, Compression: t.Compression, CreatedAtMs: t.CreatedAtMs}
	if len(t.Configs) > 0 {
		out.Configs, out.Defaults = map[string]string{}, []string{}
		for _, c := range t.Configs {
			out.Configs[c.Name] = c.Value
			if c.Default {
				out.Defaults = append(out.Defaults, c.Name)
			}
		}
	}
	return out
}

type partitionJSON struct {
	Partition     int32  `json:"partition"`
	Leader        string `json:"leader"`
	LeaderEpoch   uint64 `json:"leader_epoch"`
	LowWatermark  int64  `json:"low_watermark"`
	HighWatermark int64  `json:"high_watermark"`
	FlushedOffset int64  `json:"flushed_offset"`
	SegmentCount  int32  `json:"segment_count"`
}

// withClient runs fn with a connected client and a context bounded by
// --timeout (admin commands).
func withClient(f *clientFlags, fn func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout())
	defer cancel()
	c, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}

type topicCreateCmd struct {
	clientFlags    `embed:""`
	Name           string `arg:"" help:"Topic name: 1-249 characters from [a-zA-Z0-9._-]."`
	Partitions     int32  `name:"partitions" short:"p" default:"1" help:"Number of partitions."`
	RetentionMs    int64  `name:"retention-ms" help:"Retention time in milliseconds (0: keep forever)."`
	RetentionBytes int64  `name:"retention-bytes" help:"Retention size per partition in bytes (0: unlimited)."`
	Compression    string `name:"compression" enum:"zstd,lz4,none" default:"zstd" help:"Segment compression: zstd, lz4 or none."`
}

func (c *topicCreateCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		t, err := cl.CreateTopic(ctx, c.Name, c.Partitions, client.TopicConfig{
			RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes, Compression: c.Compression,
		})
		if err != nil {
			return cliError(fmt.Sprintf("create topic %q", c.Name), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, toTopicJSON(t))
		}
		fmt.Printf("created topic %s (%d partitions, id %d, compression %s, retention %s)\n",
			t.Name, t.Partitions, t.ID, t.Compression, retentionText(t))
		return nil
	})
}

func retentionText(t client.Topic) string {
	s := "forever"
	if t.RetentionMs > 0 {
		s = fmt.Sprintf("%d ms", t.RetentionMs)
	}
	if t.RetentionBytes > 0 {
		s += fmt.Sprintf(", %d bytes/partition", t.RetentionBytes)
	}
	return s
}

type topicListCmd struct {
	clientFlags `embed:""`
}

func (c *topicListCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		ts, err := cl.ListTopics(ctx)
		if err != nil {
			return cliError("list topics", err)
		}
		if c.json() {
			out := make([]topicJSON, len(ts))
			for i, t := range ts {
				out[i] = toTopicJSON(t)
			}
			return writeJSON(os.Stdout, out)
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tPARTITIONS\tRETENTION\tCOMPRESSION\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", t.Name, t.Partitions, retentionText(t), t.Compression, msTime(t.CreatedAtMs))
		}
		return w.Flush()
	})
}

type topicDescribeCmd struct {
	clientFlags `embed:""`
	Name        string `arg:"" help:"Topic name."`
}

func (c *topicDescribeCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		t, ps, err := cl.DescribeTopic(ctx, c.Name)
		if err != nil {
			return cliError(fmt.Sprintf("describe topic %q", c.Name), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, topicDetailJSON(t, ps))
		}
		printTopic(os.Stdout, t, ps)
		return nil
	})
}

// topicDetail is a topic with its partitions in JSON output (describe,
// add-partitions).
type topicDetail struct {
	Topic      topicJSON       `json:"topic"`
	Partitions []partitionJSON `json:"partitions"`
}

func topicDetailJSON(t client.Topic, ps []client.PartitionInfo) topicDetail {
	out := topicDetail{Topic: toTopicJSON(t), Partitions: make([]partitionJSON, len(ps))}
	for i, p := range ps {
		out.Partitions[i] = partitionJSON{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
			LowWatermark: p.LowWatermark, HighWatermark: p.HighWatermark, FlushedOffset: p.FlushedOffset, SegmentCount: p.SegmentCount}
	}
	return out
}

func printTopic(out io.Writer, t client.Topic, ps []client.PartitionInfo) {
	fmt.Fprintf(out, "topic %s (id %d): %d partitions, compression %s, retention %s, created %s\n\n",
		t.Name, t.ID, t.Partitions, t.Compression, retentionText(t), msTime(t.CreatedAtMs))
	if len(t.Configs) > 0 {
		printConfigs(out, t.Configs)
		fmt.Fprintln(out)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tLEADER\tEPOCH\tLOW\tHIGH\tRECORDS\tFLUSHED\tSEGMENTS")
	var total int64
	for _, p := range ps {
		total += p.HighWatermark - p.LowWatermark
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Partition, orDash(p.Leader), p.LeaderEpoch,
			p.LowWatermark, p.HighWatermark, p.HighWatermark-p.LowWatermark, p.FlushedOffset, p.SegmentCount)
	}
	_ = w.Flush()
	fmt.Fprintf(out, "\noffsets stored (high - low, gaps included): %d\n", total)
}

type topicDeleteCmd struct {
	clientFlags `embed:""`
	Name        string `arg:"" help:"Topic name."`
}

func (c *topicDeleteCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		if err := cl.DeleteTopic(ctx, c.Name); err != nil {
			return cliError(fmt.Sprintf("delete topic %q", c.Name), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, map[string]string{"deleted": c.Name})
		}
		fmt.Printf("deleted topic %s\n", c.Name)
		return nil
	})
}
