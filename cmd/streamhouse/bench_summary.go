package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// `make bench` runs several `streamhouse bench` scenarios; each appends its
// result to one JSON-lines file (--record FILE --label TEXT) and
// `streamhouse bench --summarize FILE` prints them as one table.

type recordedBench struct {
	Label string `json:"label"`
	loadgen.Result
}

func (b *benchCmd) record(r loadgen.Result) error {
	if b.RecordFile == "" {
		return nil
	}
	f, err := os.OpenFile(b.RecordFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--record: %w", err)
	}
	defer f.Close()
	label := b.Label
	if label == "" {
		label = fmt.Sprintf("%s %s", b.Protocol, b.Topic)
	}
	line, err := json.Marshal(recordedBench{Label: label, Result: r})
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	return err
}

func summarizeBench(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--summarize: %w", err)
	}
	defer f.Close()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPROTOCOL\tPARTITIONS\tRATE\tPRODUCE rec/s\tACK p50/p99 ms\tE2E p50/p99 ms\tCONSUME rec/s\tPUTs/GiB\tPEAK RSS MiB\tERRORS")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var r recordedBench
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("--summarize %s: line %d: %w", path, n+1, err)
		}
		n++
		rate := "max"
		if r.TargetRate > 0 {
			rate = fmt.Sprint(r.TargetRate)
		}
		dash := func(v float64, f string) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf(f, v)
		}
		ack := "-"
		if r.AckP50Ms > 0 {
			ack = fmt.Sprintf("%.1f / %.1f", r.AckP50Ms, r.AckP99Ms)
		}
		e2e := "-"
		if r.E2EP50Ms > 0 {
			e2e = fmt.Sprintf("%.1f / %.1f", r.E2EP50Ms, r.E2EP99Ms)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Label, r.Protocol, r.Partitions, rate,
			dash(r.RecordsPerSec, "%.0f"), ack, e2e, dash(r.ConsumeRecsSec, "%.0f"), dash(r.S3PutsPerGiB, "%.0f"),
			dash(r.AgentPeakRSSMiB, "%.0f"), r.Errors)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("--summarize: %s holds no results", path)
	}
	return tw.Flush()
}
