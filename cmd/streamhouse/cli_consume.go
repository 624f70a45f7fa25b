package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
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

// consumeMaxWait is how long one Poll waits for records.
const consumeMaxWait = time.Second

func (c *consumeCmd) Run() error {
	start, err := parseFrom(c.From)
	if err != nil {
		return err
	}
	s, err := c.openSession()
	if err != nil {
		return err
	}
	defer s.close()
	k, err := s.cl.NewConsumer(s.setup, client.ConsumerConfig{
		Topic: c.Topic, Group: c.Group, Partitions: c.Partitions, Start: start, MaxRecords: 1000, MaxWait: consumeMaxWait,
	})
	if err != nil {
		return cliError(fmt.Sprintf("consume %q", c.Topic), err)
	}
	defer k.Close()

	r := c.newReader(s.cl, k)
	defer r.out.Flush()
	interrupted, err := r.loop(s.ctx)
	if err != nil {
		return err
	}
	if err := r.flush(); err != nil {
		return err
	}
	if interrupted && c.Group != "" {
		// Commit what was printed before the interrupt.
		cctx, cancel := context.WithTimeout(context.Background(), c.timeout())
		defer cancel()
		if err := r.commit(cctx); err != nil {
			return err
		}
	}
	if !c.json() {
		fmt.Fprintf(os.Stderr, "consumed %d record(s) from %s\n", r.printed, c.Topic)
	}
	return nil
}

// reader is one run of consume: what was printed and committed per
// partition.
type reader struct {
	*consumeCmd
	cl        *client.Client
	k         *client.Consumer
	parts     []int32
	target    map[int32]int64 // stop here without --follow (the high watermark at start)
	commitPos map[int32]int64 // after the last printed record (or skipped gap)
	committed map[int32]int64 // last committed (or start) position
	done      map[int32]bool
	printed   int64

	out *bufio.Writer
	tw  *tabwriter.Writer // nil: JSON output
	enc *json.Encoder
}

func (c *consumeCmd) newReader(cl *client.Client, k *client.Consumer) *reader {
	r := &reader{consumeCmd: c, cl: cl, k: k, parts: k.Assignment(),
		target: map[int32]int64{}, commitPos: map[int32]int64{}, committed: map[int32]int64{}, done: map[int32]bool{},
		out: bufio.NewWriterSize(os.Stdout, 256<<10)}
	for _, p := range r.parts {
		r.target[p], _ = k.HighWatermark(p)
		r.commitPos[p], _ = k.Position(p)
		r.committed[p] = r.commitPos[p]
		if !c.Follow && r.commitPos[p] >= r.target[p] {
			r.done[p] = true
			k.Pause(p)
		}
	}
	if !c.json() {
		r.tw = tabwriter.NewWriter(r.out, 10, 4, 2, ' ', 0)
		fmt.Fprintln(r.tw, "PARTITION\tOFFSET\tTIMESTAMP\tKEY\tVALUE")
	}
	r.enc = json.NewEncoder(r.out)
	return r
}

// finished reports whether every partition reached its target (without
// --follow) or --max records were printed.
func (r *reader) finished() bool {
	return (!r.Follow && len(r.done) == len(r.parts)) || (r.Max > 0 && r.printed >= r.Max)
}

// loop polls and prints until finished, an interrupt (interrupted) or an
// error; retriable errors are retried for --timeout.
func (r *reader) loop(ctx context.Context) (interrupted bool, err error) {
	lastOK := time.Now()
	for !r.finished() {
		if r.Follow {
			r.parts = r.k.Assignment() // with partitions added to the topic since (the consumer reads them)
		}
		pctx, cancel := context.WithTimeout(ctx, consumeMaxWait+r.timeout())
		recs, err := r.k.Poll(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			if client.IsRetriable(err) && time.Since(lastOK) < r.timeout() {
				continue // Poll waited before returning it
			}
			_ = r.flush()
			return false, cliError(fmt.Sprintf("consume %q", r.Topic), err)
		}
		lastOK = time.Now()
		cut, err := r.printBatch(recs)
		if err != nil {
			return false, err
		}
		r.advance(cut)
		if err := r.flush(); err != nil {
			return false, err
		}
		if err := r.commit(ctx); err != nil {
			return false, err
		}
	}
	return false, nil
}

// printBatch prints the records up to each partition's target and --max;
// cut holds the partitions whose records were not all printed.
func (r *reader) printBatch(recs []client.Record) (cut map[int32]bool, err error) {
	cut = map[int32]bool{}
	for i := range recs {
		rec := &recs[i]
		p := rec.Partition
		if cut[p] {
			continue
		}
		if !r.Follow && rec.Offset >= r.target[p] {
			cut[p] = true
			r.commitPos[p] = max(r.commitPos[p], r.target[p])
			continue
		}
		if r.Max > 0 && r.printed >= r.Max {
			cut[p] = true
			continue
		}
		if err := r.print(r.tw, r.enc, rec); err != nil {
			return nil, err
		}
		r.printed++
		r.commitPos[p] = rec.Offset + 1
	}
	return cut, nil
}

// advance moves the commit position of every partition printed in full to
// the consumer's position (past gaps), and pauses partitions that reached
// their target.
func (r *reader) advance(cut map[int32]bool) {
	for _, p := range r.parts {
		if !cut[p] {
			pos, _ := r.k.Position(p)
			if !r.Follow {
				pos = min(pos, r.target[p])
			}
			r.commitPos[p] = max(r.commitPos[p], pos)
		}
		if !r.Follow && !r.done[p] && r.commitPos[p] >= r.target[p] {
			r.done[p] = true
			r.k.Pause(p)
		}
	}
}

func (r *reader) flush() error {
	if r.tw != nil {
		if err := r.tw.Flush(); err != nil {
			return err
		}
	}
	return r.out.Flush()
}

// commit commits the positions that changed (with --group).
func (r *reader) commit(ctx context.Context) error {
	if r.Group == "" {
		return nil
	}
	var commits []client.OffsetCommit
	for _, p := range r.parts {
		if r.commitPos[p] != r.committed[p] {
			commits = append(commits, client.OffsetCommit{Topic: r.Topic, Partition: p, Offset: r.commitPos[p]})
		}
	}
	if len(commits) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	if err := r.cl.CommitOffsets(cctx, r.Group, commits...); err != nil {
		return cliError(fmt.Sprintf("commit the offsets of group %q", r.Group), err)
	}
	for _, cm := range commits {
		r.committed[cm.Partition] = cm.Offset
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
