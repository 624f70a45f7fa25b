package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

type consumeCmd struct {
	clientFlags `embed:""`
	Topic       string  `arg:"" help:"Topic to read."`
	Partitions  []int32 `name:"partition" short:"P" help:"Read only this partition (repeatable; default: every partition)."`
	From        string  `name:"from" default:"earliest" help:"Where to start in a partition without a committed offset: earliest, latest or an offset."`
	Follow      bool    `name:"follow" short:"f" help:"Keep waiting for new records until interrupted. Without it, stop at the high watermarks seen at start."`
	Group       string  `name:"group" short:"g" help:"Consumer group: start from its committed offsets and commit the printed records as it goes."`
	Max         int64   `name:"max" short:"n" help:"Stop after this many records (0: no limit)."`
}

// recordJSON is one consumed record in JSON output (one object per line).
type recordJSON struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         string       `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []headerJSON `json:"headers,omitempty"`
}

type headerJSON struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

func parseFrom(s string) (client.StartPosition, error) {
	switch s {
	case "", "earliest", "beginning":
		return client.Earliest, nil
	case "latest", "end":
		return client.Latest, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return client.StartPosition{}, fmt.Errorf("--from %q: want earliest, latest or an offset >= 0", s)
	}
	return client.AtOffset(n), nil
}

func (c *consumeCmd) Run() error {
	start, err := parseFrom(c.From)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	setup, cancelSetup := context.WithTimeout(ctx, c.timeout())
	defer cancelSetup()
	maxWait := time.Second
	k, err := cl.NewConsumer(setup, client.ConsumerConfig{
		Topic: c.Topic, Group: c.Group, Partitions: c.Partitions, Start: start, MaxRecords: 1000, MaxWait: maxWait,
	})
	if err != nil {
		return cliError(fmt.Sprintf("consume %q", c.Topic), err)
	}
	defer k.Close()

	parts := k.Assignment()
	target := map[int32]int64{}    // stop here without --follow (the high watermark at start)
	commitPos := map[int32]int64{} // after the last printed record (or skipped gap)
	committed := map[int32]int64{} // last committed (or start) position
	done := map[int32]bool{}
	for _, p := range parts {
		target[p], _ = k.HighWatermark(p)
		commitPos[p], _ = k.Position(p)
		committed[p] = commitPos[p]
		if !c.Follow && commitPos[p] >= target[p] {
			done[p] = true
			k.Pause(p)
		}
	}

	out := bufio.NewWriterSize(os.Stdout, 256<<10)
	defer out.Flush()
	var tw *tabwriter.Writer
	if !c.json() {
		tw = tabwriter.NewWriter(out, 10, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tOFFSET\tTIMESTAMP\tKEY\tVALUE")
	}
	enc := json.NewEncoder(out)
	var printed int64
	lastOK := time.Now()
	interrupted := false

	for {
		if !c.Follow && len(done) == len(parts) {
			break
		}
		if c.Max > 0 && printed >= c.Max {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, maxWait+c.timeout())
		recs, err := k.Poll(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				interrupted = true
				break
			}
			if client.IsRetriable(err) && time.Since(lastOK) < c.timeout() {
				continue // Poll waited before returning it
			}
			c.flush(out, tw)
			return cliError(fmt.Sprintf("consume %q", c.Topic), err)
		}
		lastOK = time.Now()
		cut := map[int32]bool{} // partitions whose records of this batch were not all printed
		for i := range recs {
			r := &recs[i]
			p := r.Partition
			if cut[p] {
				continue
			}
			if !c.Follow && r.Offset >= target[p] {
				cut[p] = true
				commitPos[p] = max(commitPos[p], target[p])
				continue
			}
			if c.Max > 0 && printed >= c.Max {
				cut[p] = true
				continue
			}
			if err := c.print(tw, enc, r); err != nil {
				return err
			}
			printed++
			commitPos[p] = r.Offset + 1
		}
		for _, p := range parts {
			if !cut[p] {
				pos, _ := k.Position(p)
				if !c.Follow {
					pos = min(pos, target[p])
				}
				commitPos[p] = max(commitPos[p], pos)
			}
			if !c.Follow && !done[p] && commitPos[p] >= target[p] {
				done[p] = true
				k.Pause(p)
			}
		}
		if err := c.flush(out, tw); err != nil {
			return err
		}
		if err := c.commit(ctx, cl, parts, commitPos, committed); err != nil {
			return err
		}
	}
	if err := c.flush(out, tw); err != nil {
		return err
	}
	if interrupted && c.Group != "" {
		// Commit what was printed before the interrupt.
		cctx, cancel := context.WithTimeout(context.Background(), c.timeout())
		defer cancel()
		if err := c.commit(cctx, cl, parts, commitPos, committed); err != nil {
			return err
		}
	}
	if !c.json() {
		fmt.Fprintf(os.Stderr, "consumed %d record(s) from %s\n", printed, c.Topic)
	}
	return nil
}

func (c *consumeCmd) flush(out *bufio.Writer, tw *tabwriter.Writer) error {
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return out.Flush()
}

// commit commits the positions that changed (with --group).
func (c *consumeCmd) commit(ctx context.Context, cl *client.Client, parts []int32, pos, committed map[int32]int64) error {
	if c.Group == "" {
		return nil
	}
	var commits []client.OffsetCommit
	for _, p := range parts {
		if pos[p] != committed[p] {
			commits = append(commits, client.OffsetCommit{Topic: c.Topic, Partition: p, Offset: pos[p]})
		}
	}
	if len(commits) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := cl.CommitOffsets(cctx, c.Group, commits...); err != nil {
		return cliError(fmt.Sprintf("commit the offsets of group %q", c.Group), err)
	}
	for _, cm := range commits {
		committed[cm.Partition] = cm.Offset
	}
	return nil
}

func (c *consumeCmd) print(tw *tabwriter.Writer, enc *json.Encoder, r *client.Record) error {
	if tw != nil {
		key := "(null)"
		if r.Key != nil {
			key = bytesText(r.Key)
		}
		_, err := fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", r.Partition, r.Offset, msTime(r.Timestamp), key, bytesText(r.Value))
		return err
	}
	j := recordJSON{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
	if r.Key != nil {
		k, e := bytesJSON(r.Key)
		j.Key, j.KeyEncoding = &k, e
	}
	j.Value, j.ValueEncoding = bytesJSON(r.Value)
	for _, h := range r.Headers {
		v, e := bytesJSON(h.Value)
		j.Headers = append(j.Headers, headerJSON{Key: h.Key, Value: v, Encoding: e})
	}
	return enc.Encode(j)
}
