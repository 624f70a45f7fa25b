package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport/client"
)

// topicAlterCmd is `topic alter NAME --set key=value ...` with friendly
// flags for the common keys. Every key and value is checked before the
// agent is called (a bad one exits 2).
type topicAlterCmd struct {
	clientFlags     `embed:""`
	Name            string         `arg:"" help:"Topic name."`
	Set             []string       `name:"set" sep:"none" placeholder:"KEY=VALUE" help:"Set a config key (repeatable): retention.ms, retention.bytes, compression.type, max.message.bytes, cleanup.policy (delete only). Keys not named keep their value."`
	Retention       *time.Duration `name:"retention" help:"Retention time (e.g. 1h, 7d is 168h); 0 keeps records forever. Same as --set retention.ms=..."`
	RetentionBytes  *int64         `name:"retention-bytes" help:"Retention size per partition in bytes; -1 or 0: unlimited."`
	Compression     string         `name:"compression" enum:",zstd,lz4,none" default:"" help:"Segment compression: zstd, lz4 or none."`
	MaxMessageBytes *int64         `name:"max-message-bytes" help:"Largest record the topic accepts (0: the agent's MAX_RECORD_BYTES, which it can only lower)."`

	set map[string]string // built by Validate
}

// Validate builds the keys to set from the flags (kong calls it while
// parsing, so an error is a command-line error: exit 2).
func (c *topicAlterCmd) Validate() error {
	c.set = map[string]string{}
	for _, kv := range c.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--set %q: expected KEY=VALUE (e.g. retention.ms=3600000)", kv)
		}
		if err := c.add(k, v); err != nil {
			return err
		}
	}
	if c.Retention != nil {
		if *c.Retention < 0 {
			return fmt.Errorf("--retention %s: must not be negative (0 keeps records forever)", *c.Retention)
		}
		if err := c.add(fsm.ConfigRetentionMs, strconv.FormatInt(c.Retention.Milliseconds(), 10)); err != nil {
			return err
		}
	}
	if c.RetentionBytes != nil {
		if err := c.add(fsm.ConfigRetentionBytes, strconv.FormatInt(*c.RetentionBytes, 10)); err != nil {
			return err
		}
	}
	if c.Compression != "" {
		if err := c.add(fsm.ConfigCompressionType, c.Compression); err != nil {
			return err
		}
	}
	if c.MaxMessageBytes != nil {
		if err := c.add(fsm.ConfigMaxMessageBytes, strconv.FormatInt(*c.MaxMessageBytes, 10)); err != nil {
			return err
		}
	}
	if len(c.set) == 0 {
		return errors.New("nothing to change: give --set KEY=VALUE, --retention, --retention-bytes, --compression or --max-message-bytes")
	}
	_, err := fsm.ConfigEntries(c.set)
	return err
}

// add records key=value, refusing two different values for one key.
func (c *topicAlterCmd) add(k, v string) error {
	if old, ok := c.set[k]; ok && old != v {
		return fmt.Errorf("%s is given twice with different values (%q and %q)", k, old, v)
	}
	c.set[k] = v
	return nil
}

func (c *topicAlterCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		t, err := cl.AlterTopicConfig(ctx, c.Name, c.set)
		if err != nil {
			return cliError(fmt.Sprintf("alter topic %q", c.Name), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, toTopicJSON(t))
		}
		fmt.Printf("altered topic %s\n\n", t.Name)
		printConfigs(os.Stdout, t.Configs)
		return nil
	})
}

// printConfigs prints a topic's configuration as a table.
func printConfigs(out io.Writer, cs []client.ConfigEntry) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CONFIG\tVALUE\tSOURCE")
	for _, c := range cs {
		src := "topic"
		if c.Default {
			src = "default"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", c.Name, c.Value, src)
	}
	_ = w.Flush()
}

// topicAddPartsCmd is `topic add-partitions NAME --count N` (the new
// total, as rpk and kafka-topics take it) or `--add N`.
type topicAddPartsCmd struct {
	clientFlags `embed:""`
	Name        string `arg:"" help:"Topic name."`
	Count       int32  `name:"count" help:"The new total number of partitions (more than the topic has)." xor:"n" required:""`
	Add         int32  `name:"add" help:"How many partitions to add." xor:"n" required:""`
}

// Validate checks the numbers (exit 2 when bad).
func (c *topicAddPartsCmd) Validate() error {
	switch {
	case c.Count < 0 || c.Add < 0:
		return errors.New("--count and --add must be positive")
	case c.Count == 0 && c.Add == 0:
		return errors.New("give --count N (the new total) or --add N (how many more), at least 1")
	case c.Count > fsm.MaxPartitions || c.Add > fsm.MaxPartitions:
		return fmt.Errorf("a topic has at most %d partitions", fsm.MaxPartitions)
	}
	return nil
}

func (c *topicAddPartsCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		what := fmt.Sprintf("add partitions to topic %q", c.Name)
		count := c.Count
		if c.Add > 0 {
			t, _, err := cl.DescribeTopic(ctx, c.Name)
			if err != nil {
				return cliError(what, err)
			}
			count = t.Partitions + c.Add
		}
		t, ps, err := cl.CreatePartitions(ctx, c.Name, count)
		if err != nil {
			return cliError(what, err)
		}
		if c.json() {
			return writeJSON(os.Stdout, topicDetailJSON(t, ps))
		}
		fmt.Printf("topic %s now has %d partitions (keyed records may map to other partitions than before)\n\n", t.Name, t.Partitions)
		printTopic(os.Stdout, t, ps)
		return nil
	})
}
