package loadgen

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// Target is the protocol the load goes through.
type Target interface {
	// Send produces one batch of records (each carries its partition) and
	// says how many times it was resent because an agent was overloaded.
	// worker numbers the calling worker, 0 to Concurrency-1.
	Send(ctx context.Context, worker int, topic string, recs []client.Record) (retries int64, err error)
	// Fetch reads one partition.
	Fetch(ctx context.Context, req client.FetchRequest) (client.FetchResult, error)
}

// Config is one benchmark run.
type Config struct {
	Protocol    string // stored in Result.Protocol
	Topic       string
	Partitions  int32
	Records     int64         // records to produce; ignored when Duration > 0
	Duration    time.Duration // produce for this long instead of a record count
	RecordSize  int
	Batch       int   // records per Send
	Concurrency int   // workers calling Send
	Rate        int64 // records/s; 0 = as fast as possible
	Produce     bool
	Consume     bool // read every partition back after producing

	// The read-back reads pages of ReadRecords records and ReadBytes bytes
	// (0: the agent's default) and reports itself as ReadSource.
	ReadRecords int32
	ReadBytes   int32
	ReadSource  string
}

// Result is what a run measured; it is also the JSON line `bench --record`
// appends.
type Result struct {
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

// Run produces (when cfg.Produce), reads back (when cfg.Consume) and
// measures the agent around both.
func Run(ctx context.Context, cfg Config, t Target, agent Agent) (Result, error) {
	before, err := agent.scrape(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("read agent metrics: %w", err)
	}
	stopSampler := agent.samplePeakRSS(ctx)
	res := Result{RecordSize: cfg.RecordSize, Partitions: cfg.Partitions, Concurrency: cfg.Concurrency, Batch: cfg.Batch}
	if cfg.Produce {
		if res, err = Produce(ctx, cfg, t); err != nil {
			stopSampler()
			return res, err
		}
	}
	if cfg.Consume {
		readBack(ctx, cfg, t, &res)
	}
	peakRSS := stopSampler()
	agent.addUsage(ctx, before, cfg.RecordSize, &res)
	res.AgentPeakRSSMiB = float64(peakRSS) / (1 << 20)
	res.Protocol = cfg.Protocol
	return res, nil
}

// Produce runs cfg.Concurrency workers that send batches of cfg.Batch
// records until cfg.Records were claimed or cfg.Duration passed, while a
// tail reader measures produce→consume latency on partition 0.
func Produce(ctx context.Context, cfg Config, t Target) (Result, error) {
	g := newLoad(cfg, t)
	tailCtx, stopTail := context.WithCancel(ctx)
	e2e := make(chan []time.Duration, 1)
	go func() { e2e <- tail(tailCtx, cfg.Topic, t) }()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.work(ctx, w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(g.start)
	stopTail()
	return g.result(elapsed, <-e2e)
}

// load is the state the workers of one Produce share.
type load struct {
	cfg      Config
	t        Target
	value    []byte
	start    time.Time
	deadline time.Time     // zero: stop after cfg.Records
	interval time.Duration // fixed rate: batch k is due at start + k*interval

	claimed atomic.Int64 // records claimed (record-count mode)
	seq     atomic.Int64 // batches started
	errs    atomic.Int64
	retries atomic.Int64

	mu  sync.Mutex
	lat []time.Duration // ack latency of every acknowledged batch
}

func newLoad(cfg Config, t Target) *load {
	g := &load{cfg: cfg, t: t, value: []byte(strings.Repeat("x", cfg.RecordSize)), start: time.Now()}
	if cfg.Duration > 0 {
		g.deadline = g.start.Add(cfg.Duration)
	}
	if cfg.Rate > 0 {
		g.interval = time.Duration(float64(time.Second) * float64(cfg.Batch) / float64(cfg.Rate))
	}
	return g
}

// work is one worker: claim a batch, wait for its slot, send it, record its
// latency. Batches rotate over the partitions.
func (g *load) work(ctx context.Context, w int) {
	var local []time.Duration
	recs := make([]client.Record, g.cfg.Batch)
	for g.claim() {
		k := g.seq.Add(1) - 1
		intended, ok := g.due(ctx, k)
		if !ok {
			break
		}
		part := int32((k + int64(w)) % int64(g.cfg.Partitions))
		for i := range recs {
			recs[i] = client.Record{Value: g.value, Timestamp: intended.UnixMilli()}.ToPartition(part)
		}
		retries, err := g.t.Send(ctx, w, g.cfg.Topic, recs)
		g.retries.Add(retries)
		if err != nil {
			g.errs.Add(1)
			continue
		}
		local = append(local, time.Since(intended))
	}
	g.mu.Lock()
	g.lat = append(g.lat, local...)
	g.mu.Unlock()
}

// claim reports whether another batch is to be sent.
func (g *load) claim() bool {
	if !g.deadline.IsZero() {
		return !time.Now().After(g.deadline)
	}
	batch := int64(g.cfg.Batch)
	return g.claimed.Add(batch) <= g.cfg.Records+batch-1
}

// due returns the intended send time of batch k: now when saturating, its
// slot in the fixed-rate schedule otherwise (waiting for it, so latency is
// measured from the schedule: coordinated omission aware). ok is false when
// ctx ended first.
func (g *load) due(ctx context.Context, k int64) (intended time.Time, ok bool) {
	if g.interval == 0 {
		return time.Now(), true
	}
	intended = g.start.Add(time.Duration(k) * g.interval)
	d := time.Until(intended)
	if d <= 0 {
		return intended, true
	}
	timer := time.NewTimer(d) // the fixed-rate schedule, not synchronisation
	defer timer.Stop()
	select {
	case <-timer.C:
		return intended, true
	case <-ctx.Done():
		return intended, false
	}
}

func (g *load) result(elapsed time.Duration, e2e []time.Duration) (Result, error) {
	c := g.cfg
	res := Result{RecordSize: c.RecordSize, Partitions: c.Partitions, Concurrency: c.Concurrency, Batch: c.Batch, TargetRate: c.Rate}
	res.E2EP50Ms, res.E2EP99Ms = pct(e2e, 0.50), pct(e2e, 0.99)
	res.Records = int64(len(g.lat)) * int64(c.Batch)
	res.Errors, res.Retries503 = g.errs.Load(), g.retries.Load()
	res.Seconds = elapsed.Seconds()
	res.RecordsPerSec = float64(res.Records) / elapsed.Seconds()
	res.MiBPerSec = res.RecordsPerSec * float64(c.RecordSize) / (1 << 20)
	res.AckP50Ms, res.AckP99Ms, res.AckP999Ms = pct(g.lat, 0.50), pct(g.lat, 0.99), pct(g.lat, 0.999)
	if res.Records == 0 {
		return res, fmt.Errorf("no produce request succeeded (%d errors)", res.Errors)
	}
	return res, nil
}

// tail long-polls partition 0 from its end until ctx ends and returns
// produce→consume latencies (now − record timestamp, which the workers set
// to the intended send time).
func tail(ctx context.Context, topic string, t Target) []time.Duration {
	var out []time.Duration
	off := client.OffsetLatest
	for ctx.Err() == nil {
		r, err := t.Fetch(ctx, client.FetchRequest{Topic: topic, Partition: 0, Offset: off, MaxRecords: 1000, MaxWait: time.Second})
		if err != nil {
			return out
		}
		now := time.Now()
		for _, rec := range r.Records {
			out = append(out, now.Sub(time.UnixMilli(rec.Timestamp)))
		}
		off = r.NextOffset
	}
	return out
}

// readBack reads every partition from its low to its high watermark, one
// reader per partition, and reports the throughput.
func readBack(ctx context.Context, cfg Config, t Target, res *Result) {
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := int32(0); p < cfg.Partitions; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(readPartition(ctx, cfg, t, p))
		}()
	}
	wg.Wait()
	res.ConsumeRecsSec = float64(total.Load()) / time.Since(start).Seconds()
	if res.Records == 0 {
		res.Records = total.Load() // nothing produced: per-GiB figures refer to what was read
	}
	res.ConsumeSource = cfg.ReadSource
}

// readPartition reads partition p to the high watermark (or the first
// error, or a page that neither holds records nor moves on) and returns
// the records read.
func readPartition(ctx context.Context, cfg Config, t Target, p int32) int64 {
	var n int64
	off := client.OffsetEarliest
	for {
		r, err := t.Fetch(ctx, client.FetchRequest{Topic: cfg.Topic, Partition: p, Offset: off, MaxRecords: cfg.ReadRecords, MaxBytes: cfg.ReadBytes})
		if err != nil || (len(r.Records) == 0 && (r.NextOffset >= r.HighWatermark || r.NextOffset == off)) {
			return n
		}
		n += int64(len(r.Records))
		if r.NextOffset >= r.HighWatermark {
			return n
		}
		off = r.NextOffset
	}
}

// pct is the q-quantile of d in milliseconds (d is sorted in place).
func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q * float64(len(d)-1))
	return float64(d[i].Microseconds()) / 1000
}
