package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Agent is the agent whose /metrics a run samples: CPU seconds and
// object-store requests before and after, resident memory every
// rssEvery.
type Agent struct {
	Client *http.Client
	URL    string // REST base URL
}

// Object-store request series summed over both backends (S3, local directory).
var (
	putSeries = []string{
		`streamhouse_s3_requests_total{backend="s3",operation="put",result="ok"}`,
		`streamhouse_s3_requests_total{backend="local",operation="put",result="ok"}`,
	}
	getSeries = []string{
		`streamhouse_s3_requests_total{backend="s3",operation="get_range",result="ok"}`,
		`streamhouse_s3_requests_total{backend="local",operation="get_range",result="ok"}`,
	}
)

// rssEvery is how often a run samples each agent's resident memory. The
// sample asks for that one series (name[] filter), yet the agent still
// gathers every collector: sampling three agents every 250 ms put a
// 15-40 ms latency spike on every tick of a 20,000 records/s run.
const rssEvery = time.Second

// rssSeries is the sampled series.
const rssSeries = "process_resident_memory_bytes"

// scrape reads the agent's metrics, keyed by series (name and labels);
// names, when given, are the only metrics asked for.
func (a Agent) scrape(ctx context.Context, names ...string) (map[string]float64, error) {
	u := a.URL + "/metrics"
	if len(names) > 0 {
		u += "?" + url.Values{"name[]": names}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(data)), nil
}

// parseMetrics reads the Prometheus text format's samples.
func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscanf(line[i+1:], "%g", &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// addUsage fills the agent's CPU seconds and object-store requests per GiB
// of records since before (left zero when the agent cannot be read).
func (a Agent) addUsage(ctx context.Context, before map[string]float64, recordSize int, res *Result) {
	after, err := a.scrape(ctx)
	if err != nil {
		return
	}
	delta := func(series ...string) float64 {
		var d float64
		for _, s := range series {
			d += after[s] - before[s]
		}
		return d
	}
	res.AgentCPUSeconds = delta("process_cpu_seconds_total")
	if gib := float64(res.Records) * float64(recordSize) / (1 << 30); gib > 0 {
		res.S3PutsPerGiB = delta(putSeries...) / gib
		res.S3GetsPerGiB = delta(getSeries...) / gib
	}
}

// samplePeakRSS polls the agent's resident memory, at the start, every
// rssEvery and once more at the end, until the returned function is
// called, which returns the peak in bytes.
func (a Agent) samplePeakRSS(ctx context.Context) (stop func() int64) {
	var peak atomic.Int64
	sample := func() {
		if m, err := a.scrape(ctx, rssSeries); err == nil {
			if v := int64(m[rssSeries]); v > peak.Load() {
				peak.Store(v)
			}
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		sample()
		for {
			select {
			case <-done:
				sample() // the run's last second
				return
			case <-ctx.Done():
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() int64 { close(done); <-stopped; return peak.Load() }
}
