package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// benchCmd is a load generator against a running agent's REST API.
type benchCmd struct {
	Server      string        `name:"server" default:"http://127.0.0.1:8080" help:"Agent REST base URL; comma-separate several agents to spread producers over them."`
	Topic       string        `name:"topic" default:"bench" help:"Topic to use (created if missing)."`
	Partitions  int32         `name:"partitions" default:"8" help:"Partitions of the topic when it is created."`
	Records     int64         `name:"records" default:"200000" help:"Records to produce (ignored with --duration)."`
	Duration    time.Duration `name:"duration" help:"Produce for this long instead of a record count."`
	RecordSize  int           `name:"record-size" default:"100" help:"Value size in bytes."`
	Batch       int           `name:"batch" default:"100" help:"Records per produce request."`
	Concurrency int           `name:"concurrency" default:"16" help:"Concurrent producer connections."`
	Rate        int64         `name:"rate" help:"Fixed produce rate in records/s (0 = as fast as possible). Latency is measured from the intended send time (coordinated omission aware)."`
	Produce     bool          `name:"produce" default:"true" negatable:"" help:"Produce records (--no-produce: only read the topic back, e.g. cold from S3 after an agent restart)."`
	Consume     bool          `name:"consume" default:"true" negatable:"" help:"After producing, read every partition back and report consume throughput."`
	Output      string        `name:"output" short:"o" default:"table" enum:"table,json" help:"table or json."`
	Protocol    string        `name:"protocol" default:"rest" enum:"rest,grpc" help:"rest (JSON over HTTP) or grpc (the Go client: idempotent producer, batches sent to partition leaders)."`
	RecordFile  string        `name:"record" placeholder:"FILE" help:"Append the result as a JSON line to FILE (with --label), for --summarize."`
	Label       string        `name:"label" help:"Scenario name stored with --record."`
	Summarize   string        `name:"summarize" placeholder:"FILE" help:"Print the results recorded in FILE as one table and exit (runs nothing)."`
	GRPCServer  string        `name:"grpc-server" default:"127.0.0.1:9090" help:"Agent gRPC host:port list for --protocol grpc (--server still names the REST URL used for metrics)."`
	securityFlags

	servers []string
}

type benchResult struct {
	Protocol        string  `json:"protocol"`
	Records         int64   `json:"records"`
	RecordSize      int     `json:"record_size"`
	Partitions      int32   `json:"partitions"`
	Concurrency     int     `json:"concurrency"`
	Batch           int     `json:"batch"`
	TargetRate      int64   `json:"target_rate,omitempty"`
	Errors          int64   `json:"errors"`
	Retries503      int64   `json:"retries_503"`
	Seconds         float64 `json:"seconds"`
	RecordsPerSec   float64 `json:"produce_records_per_sec"`
	MiBPerSec       float64 `json:"produce_mib_per_sec"`
	AckP50Ms        float64 `json:"ack_p50_ms"`
	AckP99Ms        float64 `json:"ack_p99_ms"`
	AckP999Ms       float64 `json:"ack_p999_ms"`
	E2EP50Ms        float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99Ms        float64 `json:"e2e_p99_ms,omitempty"`
	ConsumeRecsSec  float64 `json:"consume_records_per_sec,omitempty"`
	ConsumeSource   string  `json:"consume_source,omitempty"`
	AgentCPUSeconds float64 `json:"agent_cpu_seconds"`
	AgentPeakRSSMiB float64 `json:"agent_peak_rss_mib"`
	S3PutsPerGiB    float64 `json:"s3_puts_per_gib"`
	S3GetsPerGiB    float64 `json:"s3_gets_per_gib"`
}

// https reports whether the REST URLs use TLS (then gRPC does too).
func (b *benchCmd) https() bool { return strings.HasPrefix(b.Server, "https://") }

func (b *benchCmd) Run() error {
	if b.Summarize != "" {
		return summarizeBench(os.Stdout, b.Summarize)
	}
	if b.Batch <= 0 || b.Concurrency <= 0 || b.RecordSize < 0 || b.Partitions <= 0 {
		return errors.New("--batch, --concurrency and --partitions must be positive, --record-size not negative")
	}
	for _, u := range strings.Split(b.Server, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			b.servers = append(b.servers, u)
		}
	}
	if len(b.servers) == 0 {
		return errors.New("--server needs at least one URL")
	}
	b.Server = b.servers[0]
	cl, err := b.httpClient(&http.Transport{MaxIdleConnsPerHost: b.Concurrency * 2}, 60*time.Second, b.https())
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := b.ensureTopic(ctx, cl); err != nil {
		return err
	}
	before, err := scrapeMetrics(cl, b.Server)
	if err != nil {
		return fmt.Errorf("read agent metrics: %w", err)
	}
	var peakRSS atomic.Int64
	stopSampler := sampleRSS(cl, b.Server, &peakRSS)
	res := benchResult{RecordSize: b.RecordSize, Partitions: b.Partitions, Concurrency: b.Concurrency, Batch: b.Batch}
	var gc *client.Client
	if b.Protocol == "grpc" {
		if gc, err = b.dialGRPC(ctx); err != nil {
			stopSampler()
			return err
		}
		defer gc.Close()
	}
	if b.Produce {
		if gc != nil {
			res, err = b.produceGRPC(ctx, gc)
		} else {
			res, err = b.produce(ctx, cl)
		}
		if err != nil {
			stopSampler()
			return err
		}
	}
	if b.Consume {
		if gc != nil {
			b.consumeGRPC(ctx, gc, &res)
		} else {
			b.consume(ctx, cl, &res)
		}
	}
	stopSampler()
	after, err := scrapeMetrics(cl, b.Server)
	if err == nil {
		res.AgentCPUSeconds = after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
		gib := float64(res.Records) * float64(b.RecordSize) / (1 << 30)
		if gib > 0 {
			res.S3PutsPerGiB = (after[`streamhouse_s3_requests_total{backend="s3",operation="put",result="ok"}`] - before[`streamhouse_s3_requests_total{backend="s3",operation="put",result="ok"}`] +
				after[`streamhouse_s3_requests_total{backend="local",operation="put",result="ok"}`] - before[`streamhouse_s3_requests_total{backend="local",operation="put",result="ok"}`]) / gib
			res.S3GetsPerGiB = (after[`streamhouse_s3_requests_total{backend="s3",operation="get_range",result="ok"}`] - before[`streamhouse_s3_requests_total{backend="s3",operation="get_range",result="ok"}`] +
				after[`streamhouse_s3_requests_total{backend="local",operation="get_range",result="ok"}`] - before[`streamhouse_s3_requests_total{backend="local",operation="get_range",result="ok"}`]) / gib
		}
	}
	res.AgentPeakRSSMiB = float64(peakRSS.Load()) / (1 << 20)
	res.Protocol = b.Protocol
	if err := b.record(res); err != nil {
		return err
	}
	return b.print(res)
}

func (b *benchCmd) ensureTopic(ctx context.Context, cl *http.Client) error {
	body, _ := json.Marshal(map[string]any{"name": b.Topic, "partitions": b.Partitions})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.Server+"/api/v1/topics", bytes.NewReader(body))
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", b.Server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("create topic %q: %s: %s", b.Topic, resp.Status, msg)
	}
	var t struct {
		Partitions int32 `json:"partitions"`
	}
	r2, err := cl.Get(b.Server + "/api/v1/topics/" + b.Topic)
	if err == nil {
		_ = json.NewDecoder(r2.Body).Decode(&t)
		r2.Body.Close()
		if t.Partitions > 0 {
			b.Partitions = t.Partitions
		}
	}
	return nil
}

func (b *benchCmd) produce(ctx context.Context, cl *http.Client) (benchResult, error) {
	res := benchResult{RecordSize: b.RecordSize, Partitions: b.Partitions, Concurrency: b.Concurrency, Batch: b.Batch, TargetRate: b.Rate}
	value := strings.Repeat("x", b.RecordSize)
	var (
		next     atomic.Int64 // records claimed
		errs     atomic.Int64
		retries  atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		deadline time.Time
	)
	start := time.Now()
	if b.Duration > 0 {
		deadline = start.Add(b.Duration)
	}
	// In fixed-rate mode request k is due at start + k*batch/rate.
	var interval time.Duration
	if b.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(b.Batch) / float64(b.Rate))
	}
	var seq atomic.Int64
	tailCtx, stopTail := context.WithCancel(ctx)
	e2e := make(chan []time.Duration, 1)
	go func() { e2e <- b.tail(tailCtx, cl) }()
	for w := 0; w < b.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var local []time.Duration
			recs := make([]map[string]any, b.Batch)
			for {
				if b.Duration > 0 {
					if time.Now().After(deadline) {
						break
					}
				} else if next.Add(int64(b.Batch)) > b.Records+int64(b.Batch)-1 {
					break
				}
				intended := time.Now()
				if interval > 0 {
					k := seq.Add(1) - 1
					intended = start.Add(time.Duration(k) * interval)
					if d := time.Until(intended); d > 0 {
						time.Sleep(d)
					}
				}
				part := int32((int(seq.Load()) + w) % int(b.Partitions))
				ts := intended.UnixMilli()
				for i := range recs {
					recs[i] = map[string]any{"value": value, "partition": part, "timestamp": ts}
				}
				body, _ := json.Marshal(map[string]any{"topic": b.Topic, "records": recs})
				for {
					resp, err := cl.Post(b.servers[w%len(b.servers)]+"/api/v1/produce/batch", "application/json", bytes.NewReader(body))
					if err != nil {
						errs.Add(1)
						break
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable {
						retries.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if resp.StatusCode != http.StatusOK {
						errs.Add(1)
						break
					}
					local = append(local, time.Since(intended))
					break
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	stopTail()
	tl := <-e2e
	res.E2EP50Ms, res.E2EP99Ms = pct(tl, 0.50), pct(tl, 0.99)
	res.Records = int64(len(lat)) * int64(b.Batch)
	res.Errors, res.Retries503 = errs.Load(), retries.Load()
	res.Seconds = el.Seconds()
	res.RecordsPerSec = float64(res.Records) / el.Seconds()
	res.MiBPerSec = res.RecordsPerSec * float64(b.RecordSize) / (1 << 20)
	res.AckP50Ms, res.AckP99Ms, res.AckP999Ms = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
	if res.Records == 0 {
		return res, fmt.Errorf("no produce request succeeded (%d errors)", res.Errors)
	}
	return res, nil
}

// tail long-polls partition 0 from its end while producers run and returns
// produce→consume latencies (now − record timestamp, which producers set to
// the intended send time).
func (b *benchCmd) tail(ctx context.Context, cl *http.Client) []time.Duration {
	var out []time.Duration
	off := "latest"
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("%s/api/v1/consume?topic=%s&partition=0&offset=%s&max_records=1000&wait_ms=1000", b.Server, b.Topic, off), nil)
		resp, err := cl.Do(req)
		if err != nil {
			return out
		}
		var r struct {
			Records []struct {
				Timestamp int64 `json:"timestamp"`
			} `json:"records"`
			Next int64 `json:"next_offset"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			return out
		}
		now := time.Now()
		for _, rec := range r.Records {
			out = append(out, now.Sub(time.UnixMilli(rec.Timestamp)))
		}
		off = fmt.Sprint(r.Next)
	}
	return out
}

func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q * float64(len(d)-1))
	return float64(d[i].Microseconds()) / 1000
}

// consume reads every partition from its low watermark to the high
// watermark, one reader per partition, and measures throughput.
func (b *benchCmd) consume(ctx context.Context, cl *http.Client, res *benchResult) {
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := int32(0); p < b.Partitions; p++ {
		wg.Add(1)
		go func(p int32) {
			defer wg.Done()
			off := "earliest"
			for {
				resp, err := cl.Get(fmt.Sprintf("%s/api/v1/consume?topic=%s&partition=%d&offset=%s&max_records=1000", b.Server, b.Topic, p, off))
				if err != nil {
					return
				}
				var r struct {
					Records []json.RawMessage `json:"records"`
					Next    int64             `json:"next_offset"`
					High    int64             `json:"high_watermark"`
				}
				err = json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if err != nil || len(r.Records) == 0 {
					return
				}
				total.Add(int64(len(r.Records)))
				if r.Next >= r.High {
					return
				}
				off = fmt.Sprint(r.Next)
			}
		}(p)
	}
	wg.Wait()
	res.ConsumeRecsSec = float64(total.Load()) / time.Since(start).Seconds()
	if res.Records == 0 {
		res.Records = total.Load() // --no-produce: per-GiB figures refer to what was read
	}
	res.ConsumeSource = "earliest→end (segments + WAL)"
}

func scrapeMetrics(cl *http.Client, base string) (map[string]float64, error) {
	resp, err := cl.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
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
	return out, nil
}

// sampleRSS polls the agent's resident memory until the returned stop
// function is called, keeping the peak.
func sampleRSS(cl *http.Client, base string, peak *atomic.Int64) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := scrapeMetrics(cl, base); err == nil {
				if v := int64(m["process_resident_memory_bytes"]); v > peak.Load() {
					peak.Store(v)
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (b *benchCmd) print(r benchResult) error {
	if b.Output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "records\t%d × %d B (%d partitions, %d connections, %d per request, %s)\n", r.Records, r.RecordSize, r.Partitions, r.Concurrency, r.Batch, r.Protocol)
	if r.TargetRate > 0 {
		fmt.Fprintf(w, "target rate\t%d records/s\n", r.TargetRate)
	}
	if r.RecordsPerSec > 0 {
		fmt.Fprintf(w, "produce\t%.0f records/s, %.1f MiB/s over %.1f s\n", r.RecordsPerSec, r.MiBPerSec, r.Seconds)
		fmt.Fprintf(w, "produce ack latency\tp50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n", r.AckP50Ms, r.AckP99Ms, r.AckP999Ms)
	}
	if r.E2EP50Ms > 0 || r.E2EP99Ms > 0 {
		fmt.Fprintf(w, "end-to-end (produce→tail consumer)\tp50 %.1f ms, p99 %.1f ms (ms-resolution timestamps)\n", r.E2EP50Ms, r.E2EP99Ms)
	}
	if r.ConsumeRecsSec > 0 {
		fmt.Fprintf(w, "consume\t%.0f records/s (%s)\n", r.ConsumeRecsSec, r.ConsumeSource)
	}
	fmt.Fprintf(w, "agent (first --server)\t%.1f CPU s, peak RSS %.0f MiB\n", r.AgentCPUSeconds, r.AgentPeakRSSMiB)
	fmt.Fprintf(w, "object store\t%.0f PUTs/GiB, %.0f ranged GETs/GiB\n", r.S3PutsPerGiB, r.S3GetsPerGiB)
	fmt.Fprintf(w, "errors\t%d (503 retries %d)\n", r.Errors, r.Retries503)
	return w.Flush()
}
