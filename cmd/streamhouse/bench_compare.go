package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// compareBench prints the rows of path that name a system (--system) as
// one table: rows of the same scenario (label and offered rate) side by
// side, each with two ratios to StreamHouse's row of that scenario, both
// above 1 when StreamHouse does better: its throughput over this row's, and
// this row's ack p99 over StreamHouse's.
func compareBench(w io.Writer, path string) error {
	rows, err := readRecorded(path)
	if err != nil {
		return fmt.Errorf("--compare: %w", err)
	}
	type key struct {
		label string
		rate  int64
	}
	var order []key
	groups := map[key][]recordedBench{}
	for _, r := range rows {
		if r.System == "" {
			continue
		}
		k := key{r.Label, r.TargetRate}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	if len(order) == 0 {
		return fmt.Errorf("--compare: %s holds no rows recorded with --system", path)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSYSTEM\tOFFERED rec/s\tACHIEVED rec/s\tACK p50/p99/p99.9/max ms\tERRORS\tTHROUGHPUT StreamHouse ÷ this\tp99 this ÷ StreamHouse")
	for _, k := range order {
		var base *recordedBench
		for i, r := range groups[k] {
			if r.System == "streamhouse" {
				base = &groups[k][i]
				break
			}
		}
		for _, r := range groups[k] {
			tput, p99 := "-", "-"
			if base != nil && r.RecordsPerSec > 0 && base.AckP99Ms > 0 {
				tput = fmt.Sprintf("%.2f×", base.RecordsPerSec/r.RecordsPerSec)
				p99 = fmt.Sprintf("%.2f×", r.AckP99Ms/base.AckP99Ms)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.1f / %.1f / %.1f / %.1f\t%d\t%s\t%s\n", r.Label, r.System, offered(r.Result),
				r.RecordsPerSec, r.AckP50Ms, r.AckP99Ms, r.AckP999Ms, r.AckMaxMs, r.Errors, tput, p99)
		}
	}
	return tw.Flush()
}
