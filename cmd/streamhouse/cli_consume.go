package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/streamhouse/streamhouse/transport/client"
)

type consumeCmd struct {
	clientFlags `embed:""`
	Topic       string   `arg:"" help:"Topic to read."`
	Partitions  []int32  `name:"partition" short:"P" help:"Read only this partition (repeatable; default: every partition)."`
	From        fromFlag `name:"from" default:"earliest" help:"Where to start in a partition without a committed offset: earliest, latest, an offset, an RFC 3339 time (2026-11-27T10:00:00Z), @unix-ms, or a duration ago (-1h, -15m, -2d)."`
	Follow      bool     `name:"follow" short:"f" help:"Keep waiting for new records until interrupted. Without it, stop at the high watermarks seen at start."`
	Group       string   `name:"group" short:"g" help:"Consumer group: start from its committed offsets and commit the printed records as it goes."`
	Max         int64    `name:"max" short:"n" help:"Stop after this many records (0: no limit)."`
	Format      string   `name:"format" help:"Print each record through this template instead of the table: %t topic, %p partition, %o offset, %k key, %v value, %h headers, %T timestamp (ms), %d timestamp (RFC 3339), %% percent; escapes \\n \\t \\r \\\\ (e.g. '%k %v\\n')."`

	start  fromSpec     // --from, parsed by Validate
	format recordFormat // --format, compiled by Validate (nil: none)
}

// Validate checks the flags while kong parses them, so a bad value is a
// bad command line (exit 2).
func (c *consumeCmd) Validate() error {
	start, err := parseFrom(string(c.From))
	if err != nil {
		return err
	}
	c.start = start
	for _, p := range c.Partitions {
		if p < 0 {
			return fmt.Errorf("--partition %d: want a partition >= 0", p)
		}
	}
	if c.Max < 0 {
		return fmt.Errorf("--max %d: want a count >= 0 (0: no limit)", c.Max)
	}
	if c.Format != "" {
		if c.json() {
			return errors.New("--format and -o json cannot be used together")
		}
		if c.format, err = parseFormat(c.Format); err != nil {
			return err
		}
	}
	return nil
}

// fromFlag is --from's value: a type of its own so that a duration ago
// can follow the flag as a separate word (--from -1h), which kong would
// otherwise take for a flag.
type fromFlag string

// Decode implements kong.MapperValue.
func (f *fromFlag) Decode(ctx *kong.DecodeContext) error {
	if t := ctx.Scan.Peek(); !t.IsValue() {
		if s, ok := t.Value.(string); ok {
			if _, err := parseAgo(s); err == nil {
				ctx.Scan.Pop()
				*f = fromFlag(s)
				return nil
			}
		}
	}
	var s string
	if err := ctx.Scan.PopValueInto("from", &s); err != nil {
		return err
	}
	*f = fromFlag(s)
	return nil
}

// fromSpec is a parsed --from: a start position, or a time before now.
type fromSpec struct {
	pos client.StartPosition
	ago time.Duration // > 0: start at the first record of now - ago
}

// position is where to start when the command runs at now.
func (s fromSpec) position(now time.Time) client.StartPosition {
	if s.ago > 0 {
		return client.AtTimestamp(now.Add(-s.ago).UnixMilli())
	}
	return s.pos
}

const fromForms = "want earliest, latest, an offset >= 0, an RFC 3339 time (2026-11-27T10:00:00Z), @unix-ms, or a duration ago (-1h, -15m, -2d)"

// parseFrom parses --from: earliest (beginning), latest (end), an offset,
// an RFC 3339 time, @ and unix milliseconds, or "-" and a duration ago.
func parseFrom(s string) (fromSpec, error) {
	switch s {
	case "", "earliest", "beginning":
		return fromSpec{pos: client.Earliest}, nil
	case "latest", "end":
		return fromSpec{pos: client.Latest}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return fromSpec{pos: client.AtOffset(n)}, nil
	}
	if ms, ok := strings.CutPrefix(s, "@"); ok {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil && n >= 0 {
			return fromSpec{pos: client.AtTimestamp(n)}, nil
		}
	}
	if strings.HasPrefix(s, "-") {
		if d, err := parseAgo(s); err == nil {
			return fromSpec{ago: d}, nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return fromSpec{pos: client.AtTimestamp(t.UnixMilli())}, nil
	}
	return fromSpec{}, fmt.Errorf("--from %q: %s", s, fromForms)
}

// parseAgo parses "-" and a positive Go duration (1h30m, 15m, 10s) or a
// number of days (2d).
func parseAgo(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(s, "-")
	if !ok {
		return 0, errors.New("no leading -")
	}
	if days, ok := strings.CutSuffix(rest, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 32)
		if err != nil || n <= 0 {
			return 0, errors.New("bad day count")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d <= 0 {
		return 0, errors.New("bad duration")
	}
	return d, nil
}

// consumeMaxWait is how long one Poll waits for records.
const consumeMaxWait = time.Second

func (c *consumeCmd) Run() error {
	s, err := c.openSession()
	if err != nil {
		return err
	}
	defer s.close()
	if c.Group != "" && len(c.Partitions) == 0 {
		return c.runMember(s)
	}
	k, err := s.cl.NewConsumer(s.setup, client.ConsumerConfig{
		Topic: c.Topic, Group: c.Group, Partitions: c.Partitions, Start: c.start.position(time.Now()), MaxRecords: 1000, MaxWait: consumeMaxWait,
	})
	if err != nil {
		return cliError(fmt.Sprintf("consume %q", c.Topic), err)
	}
	defer k.Close()
	if err := c.checkStart(s.setup, s.cl, k); err != nil {
		return err
	}
	return c.read(s, c.newReader(s.cl, k))
}

// read runs the reader r until done and reports.
func (c *consumeCmd) read(s *session, r *reader) error {
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

// checkStart applies the past-the-end rule (CLI.md): a start offset
// beyond a partition's high watermark is an out-of-range error, with or
// without --follow. The consumer's high watermark may be stale, so the
// agent (which confirms with the cluster before calling an offset out of
// range) decides, with a fetch that does not wait.
func (c *consumeCmd) checkStart(ctx context.Context, cl *client.Client, k *client.Consumer) error {
	for _, p := range k.Assignment() {
		pos, _ := k.Position(p)
		high, _ := k.HighWatermark(p)
		if pos <= high {
			continue
		}
		_, err := cl.Fetch(ctx, client.FetchRequest{Topic: c.Topic, Partition: p, Offset: pos, MaxRecords: 1})
		if err != nil {
			return cliError(fmt.Sprintf("consume %q partition %d", c.Topic, p), err)
		}
	}
	return nil
}

// recordSource is what the reader reads: a client.Consumer of fixed
// partitions, or a client.GroupConsumer whose partitions change with the
// group's generations.
type recordSource interface {
	Poll(ctx context.Context) ([]client.Record, error)
	Assignment() []int32
	Position(p int32) (int64, bool)
	HighWatermark(p int32) (int64, bool)
	Pause(ps ...int32)
}

// reader is one run of consume: what was printed and committed per
// partition.
type reader struct {
	*consumeCmd
	cl        *client.Client
	k         recordSource
	member    *client.GroupConsumer // with --group (no --partition): commits as a member
	gen       int32                 // the member's generation the maps below are for
	startHigh map[int32]int64       // member: the topic's high watermarks at start
	parts     []int32
	target    map[int32]int64 // stop here without --follow (the high watermark at start)
	commitPos map[int32]int64 // after the last printed record (or skipped gap)
	committed map[int32]int64 // last committed (or start) position
	done      map[int32]bool
	printed   int64

	out     *bufio.Writer
	printer recordPrinter
}

func (c *consumeCmd) newReader(cl *client.Client, k recordSource) *reader {
	r := &reader{consumeCmd: c, cl: cl, k: k, parts: k.Assignment(),
		target: map[int32]int64{}, commitPos: map[int32]int64{}, committed: map[int32]int64{}, done: map[int32]bool{},
		out: bufio.NewWriterSize(os.Stdout, 256<<10)}
	var maxPart int32
	var maxOffset int64
	for _, p := range r.parts {
		r.target[p], _ = k.HighWatermark(p)
		r.commitPos[p], _ = k.Position(p)
		r.committed[p] = r.commitPos[p]
		maxPart, maxOffset = max(maxPart, p), max(maxOffset, r.target[p])
		if !c.Follow && r.commitPos[p] >= r.target[p] {
			r.done[p] = true
			k.Pause(p)
		}
	}
	r.printer = newRecordPrinter(r.out, c.format, c.json(), consumeColumns(maxPart, maxOffset, c.Follow))
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
		if r.member != nil {
			r.followGeneration()
		} else if r.Follow {
			r.parts = r.k.Assignment() // with partitions added to the topic since (the consumer reads them)
		}
		pctx, cancel := context.WithTimeout(ctx, consumeMaxWait+r.timeout())
		recs, err := r.k.Poll(pctx)
		cancel()
		if r.member != nil {
			r.followGeneration()
		}
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
		if err := r.printer.print(rec); err != nil {
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

func (r *reader) flush() error { return r.out.Flush() }

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
	if r.member != nil {
		return r.commitAsMember(cctx, commits)
	}
	if err := r.cl.CommitOffsets(cctx, r.Group, commits...); err != nil {
		return cliError(fmt.Sprintf("commit the offsets of group %q", r.Group), err)
	}
	for _, cm := range commits {
		r.committed[cm.Partition] = cm.Offset
	}
	return nil
}
