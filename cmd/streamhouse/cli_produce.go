package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/streamhouse/streamhouse/transport/client"
)

type produceCmd struct {
	clientFlags  `embed:""`
	Topic        string   `arg:"" help:"Topic to produce to."`
	Values       []string `arg:"" optional:"" help:"Record values, one record each. Without values, every line of stdin is a record."`
	Key          *string  `name:"key" short:"k" help:"Key of every record (default: null key: records are spread over the partitions)."`
	KeySeparator string   `name:"key-separator" help:"Split every input line (or value) at the first occurrence of this string into key and value (like Kafka's console producer parse.key/key.separator). A line without it is an error."`
	Partition    *int32   `name:"partition" short:"P" help:"Write every record to this partition (default: by key hash, or spread when there is no key)."`
	Headers      []string `name:"header" short:"H" sep:"none" help:"Header key=value added to every record (repeatable)."`
	Progress     bool     `name:"progress" help:"Show the progress bar on stderr even when stderr is not a terminal (stdin input only)."`

	headers []client.Header // --header, parsed by Validate
}

type pendingAck struct {
	n   int // 1-based record number (the input line for stdin)
	res *client.Result
}

type partStat struct {
	Partition   int32 `json:"partition"`
	Records     int64 `json:"records"`
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
}

type produceSummary struct {
	Topic            string     `json:"topic"`
	Records          int64      `json:"records"`
	Failed           int64      `json:"failed"`
	ElapsedMs        int64      `json:"elapsed_ms"`
	RecordsPerSecond float64    `json:"records_per_second"`
	Partitions       []partStat `json:"partitions"`
	ProducerID       uint64     `json:"producer_id"`
	ProducerEpoch    uint32     `json:"producer_epoch"`
}

func (c *produceCmd) Run() error {
	headers := c.headers
	s, err := c.openSession()
	if err != nil {
		return err
	}
	defer s.close()
	// Fail before reading any input when the topic does not exist.
	if _, err := s.cl.GetMetadata(s.setup, c.Topic); err != nil {
		return cliError(fmt.Sprintf("produce to %q", c.Topic), err)
	}
	p, err := s.cl.NewProducer(s.setup, client.ProducerConfig{RetryTimeout: c.timeout()})
	if err != nil {
		return cliError("start the idempotent producer", err)
	}

	fromStdin := len(c.Values) == 0
	var bar *progressbar.ProgressBar
	if fromStdin && (c.Progress || stderrIsTerminal()) {
		bar = newProgressBar(os.Stderr, "producing to "+c.Topic)
	}
	run, cancelRun := context.WithCancelCause(s.ctx)
	defer cancelRun(nil)
	t := &ackTally{stats: map[int32]*partStat{}, bar: bar, cancel: cancelRun}
	acks := make(chan pendingAck, 8192)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		t.collect(acks)
	}()

	start := time.Now()
	inputErr := c.feed(run, fromStdin, c.sender(run, p, headers, acks))
	// Deliver what was sent, even after an interrupt.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), c.timeout()+5*time.Second)
	defer cancelClose()
	closeErr := p.Close(closeCtx)
	close(acks)
	<-ackDone
	elapsed := time.Since(start)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if err := printProduceSummary(os.Stdout, t.summary(c.Topic, elapsed, p.Identity()), c.json()); err != nil {
		return err
	}
	return c.outcome(t, inputErr, s.ctx.Err() != nil, closeErr)
}

// Validate checks the flags and parses --header while kong parses them,
// so a bad value is a bad command line (exit 2).
func (c *produceCmd) Validate() error {
	if c.Key != nil && c.KeySeparator != "" {
		return errors.New("--key and --key-separator cannot be used together")
	}
	if c.Partition != nil && *c.Partition < 0 {
		return fmt.Errorf("--partition %d: want a partition >= 0", *c.Partition)
	}
	c.headers = nil
	for _, h := range c.Headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return fmt.Errorf("--header %q: want key=value", h)
		}
		c.headers = append(c.headers, client.Header{Key: k, Value: []byte(v)})
	}
	return nil
}

// newProgressBar draws on w the count of acknowledged records and their
// rate; the total is unknown (stdin), so none is shown.
func newProgressBar(w io.Writer, description string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(false),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// ackTally waits for the acknowledgements in send order and counts them
// per partition; the first failure cancels the input.
type ackTally struct {
	stats         map[int32]*partStat
	acked, failed int64
	firstErr      error
	bar           *progressbar.ProgressBar // nil: no progress bar
	cancel        context.CancelCauseFunc
}

func (t *ackTally) collect(acks <-chan pendingAck) {
	for a := range acks {
		part, off, err := a.res.Wait(context.Background()) // bounded by the producer's RetryTimeout
		if err != nil {
			t.failed++
			if t.firstErr == nil {
				t.firstErr = fmt.Errorf("record %d: %s", a.n, cliMessage(err))
				t.cancel(t.firstErr)
			}
			continue
		}
		t.acked++
		s := t.stats[part]
		if s == nil {
			s = &partStat{Partition: part, FirstOffset: off}
			t.stats[part] = s
		}
		s.Records++
		s.FirstOffset = min(s.FirstOffset, off)
		s.LastOffset = max(s.LastOffset, off)
		if t.bar != nil {
			_ = t.bar.Add(1)
		}
	}
}

func (t *ackTally) summary(topic string, elapsed time.Duration, id client.ProducerIdentity) *produceSummary {
	sum := &produceSummary{Topic: topic, Records: t.acked, Failed: t.failed, ElapsedMs: elapsed.Milliseconds(),
		ProducerID: id.ID, ProducerEpoch: id.Epoch}
	if elapsed > 0 {
		sum.RecordsPerSecond = float64(t.acked) / elapsed.Seconds()
	}
	for _, s := range t.stats {
		sum.Partitions = append(sum.Partitions, *s)
	}
	sort.Slice(sum.Partitions, func(i, j int) bool { return sum.Partitions[i].Partition < sum.Partitions[j].Partition })
	return sum
}

// record builds record n (1-based) of the input from line.
func (c *produceCmd) record(n int, line []byte, headers []client.Header) (client.Record, error) {
	rec := client.Record{Value: line, Headers: headers}
	switch {
	case c.KeySeparator != "":
		i := bytes.Index(line, []byte(c.KeySeparator))
		if i < 0 {
			return rec, fmt.Errorf("record %d has no key separator %q", n, c.KeySeparator)
		}
		rec.Key, rec.Value = line[:i], line[i+len(c.KeySeparator):]
	case c.Key != nil:
		rec.Key = []byte(*c.Key)
	}
	if c.Partition != nil {
		rec = rec.ToPartition(*c.Partition)
	}
	return rec, nil
}

// sender returns the function that sends each input line as a record and
// queues its acknowledgement.
func (c *produceCmd) sender(run context.Context, p *client.Producer, headers []client.Header, acks chan<- pendingAck) func([]byte) error {
	n := 0
	return func(line []byte) error {
		n++
		rec, err := c.record(n, line, headers)
		if err != nil {
			return err
		}
		res := p.Send(run, c.Topic, rec)
		select {
		case acks <- pendingAck{n: n, res: res}:
			return nil
		case <-run.Done():
			return context.Cause(run)
		}
	}
}

// feed sends the values of the command line, or every line of stdin.
func (c *produceCmd) feed(run context.Context, fromStdin bool, send func([]byte) error) error {
	if fromStdin {
		return readLines(run, os.Stdin, send)
	}
	for _, v := range c.Values {
		if err := send([]byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// outcome is the command's error: the first failed record, an interrupt,
// bad input, or records left unacknowledged at the timeout.
func (c *produceCmd) outcome(t *ackTally, inputErr error, interrupted bool, closeErr error) error {
	switch {
	case t.firstErr != nil:
		return fmt.Errorf("produce to %q: %w (%d records acknowledged, %d failed)", c.Topic, t.firstErr, t.acked, t.failed)
	case inputErr != nil && interrupted:
		return fmt.Errorf("produce to %q: interrupted after %d acknowledged records", c.Topic, t.acked)
	case inputErr != nil:
		return fmt.Errorf("produce to %q: %w (%d records acknowledged)", c.Topic, inputErr, t.acked)
	case closeErr != nil:
		return fmt.Errorf("produce to %q: records still unacknowledged when the timeout expired: %w", c.Topic, closeErr)
	}
	return nil
}

// readLines calls send with every line of r (without its "\n" or "\r\n").
// Lines are copied: records keep them.
func readLines(ctx context.Context, r io.Reader, send func([]byte) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if serr := send(line); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
	}
}

func printProduceSummary(w io.Writer, s *produceSummary, asJSON bool) error {
	if asJSON {
		if s.Partitions == nil {
			s.Partitions = []partStat{}
		}
		return writeJSON(w, s)
	}
	fmt.Fprintf(w, "produced %d records to %s in %v (%.0f records/s)", s.Records, s.Topic, time.Duration(s.ElapsedMs)*time.Millisecond, s.RecordsPerSecond)
	if s.Failed > 0 {
		fmt.Fprintf(w, ", %d failed", s.Failed)
	}
	fmt.Fprintln(w)
	if len(s.Partitions) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tRECORDS\tFIRST OFFSET\tLAST OFFSET")
	for _, p := range s.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", p.Partition, p.Records, p.FirstOffset, p.LastOffset)
	}
	return tw.Flush()
}
