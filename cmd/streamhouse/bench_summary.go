package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/streamhouse/streamhouse/transport/client/loadgen"
)

// `make bench` runs several `streamhouse bench` scenarios; each appends its
// result to one JSON-lines file (--record FILE --label TEXT) and
// `streamhouse bench --summarize FILE` prints them as tables in the
// OpenMessaging Benchmark's shape: one row per run (offered and achieved
// rate, ack p50/p99/p99.9/max), then one latency-vs-throughput table per
// rate sweep. `--compare FILE` puts the rows of several systems side by
// side (make bench-compare).

type recordedBench struct {
	Label string `json:"label"`
	Sweep bool   `json:"sweep,omitempty"` // one point of a --sweep
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
	line, err := json.Marshal(recordedBench{Label: label, Sweep: len(b.Sweep) > 0, Result: r})
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	return err
}

// readRecorded reads the results --record appended to path.
func readRecorded(path string) ([]recordedBench, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []recordedBench
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recordedBench
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, len(out)+1, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no results", path)
	}
	return out, nil
}

// summarizeBench prints the runs of path, then each sweep's curve; with
// chart, it also writes the curves as ASCII charts to that file.
func summarizeBench(w io.Writer, path, chart string) error {
	rows, err := readRecorded(path)
	if err != nil {
		return fmt.Errorf("--summarize: %w", err)
	}
	var runs []recordedBench
	var sweeps [][]recordedBench // by label, in order of appearance
	index := map[string]int{}
	for _, r := range rows {
		if !r.Sweep {
			runs = append(runs, r)
			continue
		}
		i, ok := index[r.Label]
		if !ok {
			i = len(sweeps)
			index[r.Label] = i
			sweeps = append(sweeps, nil)
		}
		sweeps[i] = append(sweeps[i], r)
	}
	if len(runs) > 0 {
		if err := printRuns(w, runs); err != nil {
			return err
		}
	}
	var charts strings.Builder
	for _, s := range sweeps {
		fmt.Fprintf(w, "\nlatency vs throughput: %s (%s, %d partitions, %d B, %d per request, %d connections)\n",
			s[0].Label, s[0].Protocol, s[0].Partitions, s[0].RecordSize, s[0].Batch, s[0].Concurrency)
		if err := printCurve(w, s); err != nil {
			return err
		}
		writeChart(&charts, s)
	}
	if chart != "" && len(sweeps) > 0 {
		return os.WriteFile(chart, []byte(charts.String()), 0o644)
	}
	return nil
}

// dash prints v with format f, or "-" for 0.
func dash(v float64, f string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(f, v)
}

// offered is a run's offered rate ("max" when saturated).
func offered(r loadgen.Result) string {
	if r.TargetRate > 0 {
		return fmt.Sprint(r.TargetRate)
	}
	return "max"
}

// joinMiB prints per-agent sizes as "a/b/c".
func joinMiB(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, "/")
}

// printRuns is the table of single runs.
func printRuns(w io.Writer, runs []recordedBench) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPROTOCOL\tPARTITIONS\tBATCH\tOFFERED rec/s\tACHIEVED rec/s\tACK p50/p99/p99.9/max ms\tE2E p50/p99 ms\tCONSUME rec/s\tPUTs/GiB\tPEAK RSS MiB per agent\tERRORS")
	for _, r := range runs {
		ack, e2e := "-", "-"
		if r.AckP50Ms > 0 {
			ack = fmt.Sprintf("%.1f / %.1f / %.1f / %.1f", r.AckP50Ms, r.AckP99Ms, r.AckP999Ms, r.AckMaxMs)
		}
		if r.E2EP50Ms > 0 {
			e2e = fmt.Sprintf("%.1f / %.1f", r.E2EP50Ms, r.E2EP99Ms)
		}
		rss := joinMiB(r.AgentsPeakRSSMiB)
		if rss == "" {
			rss = dash(r.AgentPeakRSSMiB, "%.0f")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Label, r.Protocol, r.Partitions, r.Batch,
			offered(r.Result), dash(r.RecordsPerSec, "%.0f"), ack, e2e, dash(r.ConsumeRecsSec, "%.0f"),
			dash(r.S3PutsPerGiB, "%.0f"), rss, r.Errors)
	}
	return tw.Flush()
}

// printCurve is one sweep's latency-vs-throughput table.
func printCurve(w io.Writer, points []recordedBench) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OFFERED rec/s\tACHIEVED rec/s\tACK p50 ms\tp99 ms\tp99.9 ms\tmax ms\tPEAK RSS MiB per agent\tSTATE")
	for _, p := range points {
		note := "keeps up"
		if loadgen.Saturated(p.Result) {
			note = "saturated"
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\n", p.TargetRate, p.RecordsPerSec,
			p.AckP50Ms, p.AckP99Ms, p.AckP999Ms, p.AckMaxMs, joinMiB(p.AgentsPeakRSSMiB), note)
	}
	return tw.Flush()
}

// Chart scale: bars are log10(latency) from chartLowMs to chartHighMs.
const (
	chartLowMs  = 0.1
	chartHighMs = 10000.0
	chartWidth  = 50
)

// chartCols is the bar length of ms on the chart's log scale.
func chartCols(ms float64) int {
	if ms <= chartLowMs {
		return 0
	}
	f := math.Log10(ms/chartLowMs) / math.Log10(chartHighMs/chartLowMs)
	return min(chartWidth, int(math.Round(f*chartWidth)))
}

// writeChart draws one sweep as horizontal bars, one per point: '=' up to
// p50, '-' up to p99, '.' up to p99.9, on a log scale.
func writeChart(b *strings.Builder, points []recordedBench) {
	fmt.Fprintf(b, "%s: ack latency vs achieved rate ('=' p50, '-' p99, '.' p99.9; log scale %g ms … %g s)\n",
		points[0].Label, chartLowMs, chartHighMs/1000)
	fmt.Fprintf(b, "%10s %10s |%s|\n", "offered", "achieved", axis())
	for _, p := range points {
		c50, c99, c999 := chartCols(p.AckP50Ms), chartCols(p.AckP99Ms), chartCols(p.AckP999Ms)
		c99, c999 = max(c99, c50), max(c999, c99, c50)
		bar := strings.Repeat("=", c50) + strings.Repeat("-", c99-c50) + strings.Repeat(".", c999-c99)
		fmt.Fprintf(b, "%10d %10.0f |%-*s| p50 %.1f, p99 %.1f, p99.9 %.1f ms\n", p.TargetRate, p.RecordsPerSec,
			chartWidth, bar, p.AckP50Ms, p.AckP99Ms, p.AckP999Ms)
	}
	b.WriteString("\n")
}

// axis marks the decades of the chart's scale.
func axis() string {
	out := []byte(strings.Repeat(" ", chartWidth))
	for _, mark := range []struct {
		ms    float64
		label string
	}{{1, "1ms"}, {10, "10ms"}, {100, "100ms"}, {1000, "1s"}} {
		c := chartCols(mark.ms)
		copy(out[max(0, c-len(mark.label)):c], mark.label)
	}
	return string(out)
}
