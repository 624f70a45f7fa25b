package loadgen

import (
	"context"
	"errors"
	"fmt"
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

// TopicReader is a Target that reads a whole topic back its own way, as
// its users would (a Kafka consumer polls every partition of a broker in
// one request); readBack uses it instead of a Fetch loop per partition.
type TopicReader interface {
	// ReadTopic reads every partition of topic from its low to its high
	// watermark (as of the call) and returns the records read.
	ReadTopic(ctx context.Context, topic string, partitions int32) (int64, error)
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
	// Warmup, with a fixed Rate, first produces at that rate for this
	// long and measures nothing of it (the OpenMessaging Benchmark's
	// warm-up phase): connections, partition leaders and the agents'
	// heaps are in their steady state when the measured window starts.
	Warmup  time.Duration
	Produce bool
	Consume bool // read every partition back after producing
	// Spread sends the records of one batch to consecutive partitions
	// instead of all to one (batches rotate over the partitions either way).
	Spread bool

	// The read-back reads pages of ReadRecords records and ReadBytes bytes
	// (0: the agent's default) and reports itself as ReadSource.
	ReadRecords int32
	ReadBytes   int32
	ReadSource  string
}

// Result is what a run measured; it is also the JSON line `bench --record`
// appends.
type Result struct {
	System          string  `json:"system,omitempty"` // what was measured: "streamhouse" (default) or "nats ..."
	Protocol        string  `json:"protocol"`
	Records         int64   `json:"records"`
	RecordSize      int     `json:"record_size"`
	Partitions      int32   `json:"partitions"`
	Concurrency     int     `json:"concurrency"`
	Batch           int     `json:"batch"`
	TargetRate      int64   `json:"target_rate,omitempty"`
	WarmupSeconds   float64 `json:"warmup_seconds,omitempty"`    // produced at TargetRate before the measured window, which excludes it
	WarmupAckP99Ms  float64 `json:"warmup_ack_p99_ms,omitempty"` // the warm-up's own ack p99, for reference
	Errors          int64   `json:"errors"`
	Retries503      int64   `json:"retries_503"`
	Seconds         float64 `json:"seconds"`                 // the duration when one was set, else until the last ack
	RecordsPerSec   float64 `json:"produce_records_per_sec"` // acknowledged records / Seconds
	MiBPerSec       float64 `json:"produce_mib_per_sec"`
	AckP50Ms        float64 `json:"ack_p50_ms"`
	AckP99Ms        float64 `json:"ack_p99_ms"`
	AckP999Ms       float64 `json:"ack_p999_ms"`
	AckMaxMs        float64 `json:"ack_max_ms"`
	E2EP50Ms        float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99Ms        float64 `json:"e2e_p99_ms,omitempty"`
	ConsumeRecsSec  float64 `json:"consume_records_per_sec,omitempty"`
	ConsumedRecords int64   `json:"consumed_records,omitempty"` // what the read-back read
	ConsumeSource   string  `json:"consume_source,omitempty"`
	AgentCPUSeconds float64 `json:"agent_cpu_seconds"`
	AgentPeakRSSMiB float64 `json:"agent_peak_rss_mib"` // the first agent's

	// AgentsPeakRSSMiB is every sampled agent's peak, in the order given.
	AgentsPeakRSSMiB []float64 `json:"agents_peak_rss_mib,omitempty"`
	S3PutsPerGiB     float64   `json:"s3_puts_per_gib"`
	S3GetsPerGiB     float64   `json:"s3_gets_per_gib"`
}

// Run produces (when cfg.Produce), reads back (when cfg.Consume) and
// measures the agents around both: CPU and object-store requests of the
// first, peak RSS of each. Without agents (another system under load) only
// the client side is measured.
func Run(ctx context.Context, cfg Config, t Target, agents ...Agent) (Result, error) {
	warm, err := warmUp(ctx, cfg, t)
	if err != nil {
		return Result{}, err
	}
	var before map[string]float64
	if len(agents) > 0 {
		var err error
		if before, err = agents[0].scrape(ctx); err != nil {
			return Result{}, fmt.Errorf("read agent metrics: %w", err)
		}
	}
	stops := make([]func() int64, len(agents))
	for i, a := range agents {
		stops[i] = a.samplePeakRSS(ctx)
	}
	res, err := runLoad(ctx, cfg, t)
	if warm != nil {
		res.WarmupSeconds, res.WarmupAckP99Ms = warm.Seconds, warm.AckP99Ms
	}
	for i, stop := range stops {
		res.AgentsPeakRSSMiB = append(res.AgentsPeakRSSMiB, float64(stop())/(1<<20))
		if i == 0 {
			res.AgentPeakRSSMiB = res.AgentsPeakRSSMiB[0]
		}
	}
	if err != nil {
		return res, err
	}
	if len(agents) > 0 {
		agents[0].addUsage(ctx, before, cfg.RecordSize, &res)
	}
	res.Protocol = cfg.Protocol
	return res, nil
}

// warmUp runs cfg's warm-up, its fixed rate for cfg.Warmup, and returns
// what it measured (nil without a warm-up, a fixed rate or a produce
// phase); none of it counts in the run's result but its ack p99.
func warmUp(ctx context.Context, cfg Config, t Target) (*Result, error) {
	if cfg.Warmup <= 0 || cfg.Rate <= 0 || !cfg.Produce {
		return nil, nil
	}
	if cfg.Consume {
		return nil, errors.New("a warm-up needs the read-back off: it reads the topic from its start and would count the warm-up's records")
	}
	w := cfg
	w.Duration, w.Consume = cfg.Warmup, false
	res, err := Produce(ctx, w, t)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return &res, nil
}

// runLoad is Run's produce and read-back.
func runLoad(ctx context.Context, cfg Config, t Target) (Result, error) {
	res := Result{RecordSize: cfg.RecordSize, Partitions: cfg.Partitions, Concurrency: cfg.Concurrency, Batch: cfg.Batch}
	if cfg.Produce {
		var err error
		if res, err = Produce(ctx, cfg, t); err != nil {
			return res, err
		}
	}
	if cfg.Consume {
		readBack(ctx, cfg, t, &res)
	}
	return res, nil
}

// Produce runs cfg.Concurrency workers that send batches of cfg.Batch
// records until cfg.Records were claimed or cfg.Duration passed, while a
// tail reader measures produce→consume latency on partition 0.
func Produce(ctx context.Context, cfg Config, t Target) (Result, error) {
	g := newLoad(cfg, t)
	tailCtx, stopTail := context.WithCancel(ctx)
	e2e := make(chan *Histogram, 1)
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
	if g.cfg.Duration > 0 && ctx.Err() == nil {
		// The send window: acks of the last requests arrive after it, and
		// counting their wait as lost throughput would make a run that
		// kept its schedule with a long tail look as if it fell behind;
		// at a fixed rate the workers may also finish just before it.
		elapsed = g.cfg.Duration
	}
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
	lat Histogram // ack latency of every acknowledged batch
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
	var local Histogram
	recs := make([]client.Record, g.cfg.Batch)
	for g.claim() {
		k := g.seq.Add(1) - 1
		intended, ok := g.due(ctx, k)
		if !ok {
			break
		}
		for i := range recs {
			recs[i] = client.Record{Value: g.value, Timestamp: intended.UnixMilli()}.ToPartition(g.partition(k, i))
		}
		retries, err := g.t.Send(ctx, w, g.cfg.Topic, recs)
		g.retries.Add(retries)
		if err != nil {
			g.errs.Add(1)
			continue
		}
		local.Record(time.Since(intended))
	}
	g.mu.Lock()
	g.lat.Merge(&local)
	g.mu.Unlock()
}

// partition is where record i of batch k goes: batch after batch round
// the partitions, whichever worker sends it.
func (g *load) partition(k int64, i int) int32 {
	n := int64(g.cfg.Partitions)
	if g.cfg.Spread {
		return int32((k*int64(g.cfg.Batch) + int64(i)) % n)
	}
	return int32(k % n)
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
// ctx ended first or the slot lies after the end of a duration run.
func (g *load) due(ctx context.Context, k int64) (intended time.Time, ok bool) {
	if g.interval == 0 {
		return time.Now(), true
	}
	intended = g.start.Add(time.Duration(k) * g.interval)
	if !g.deadline.IsZero() && !intended.Before(g.deadline) {
		return intended, false // the slot is past the run: not part of the offered load
	}
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

func (g *load) result(elapsed time.Duration, e2e *Histogram) (Result, error) {
	c := g.cfg
	res := Result{RecordSize: c.RecordSize, Partitions: c.Partitions, Concurrency: c.Concurrency, Batch: c.Batch, TargetRate: c.Rate}
	res.E2EP50Ms, res.E2EP99Ms = e2e.QuantileMs(0.50), e2e.QuantileMs(0.99)
	res.Records = g.lat.Count() * int64(c.Batch)
	res.Errors, res.Retries503 = g.errs.Load(), g.retries.Load()
	res.Seconds = elapsed.Seconds()
	res.RecordsPerSec = float64(res.Records) / elapsed.Seconds()
	res.MiBPerSec = res.RecordsPerSec * float64(c.RecordSize) / (1 << 20)
	res.AckP50Ms, res.AckP99Ms, res.AckP999Ms = g.lat.QuantileMs(0.50), g.lat.QuantileMs(0.99), g.lat.QuantileMs(0.999)
	res.AckMaxMs = g.lat.MaxMs()
	if res.Records == 0 {
		return res, fmt.Errorf("no produce request succeeded (%d errors)", res.Errors)
	}
	return res, nil
}

// tail long-polls partition 0 from its end until ctx ends and returns
// produce→consume latencies (now − record timestamp, which the workers set
// to the intended send time).
func tail(ctx context.Context, topic string, t Target) *Histogram {
	out := &Histogram{}
	off := client.OffsetLatest
	for ctx.Err() == nil {
		r, err := t.Fetch(ctx, client.FetchRequest{Topic: topic, Partition: 0, Offset: off, MaxRecords: 1000, MaxWait: time.Second})
		if err != nil {
			return out
		}
		now := time.Now()
		for _, rec := range r.Records {
			out.Record(now.Sub(time.UnixMilli(rec.Timestamp)))
		}
		off = r.NextOffset
	}
	return out
}

// readBack reads every partition from its low to its high watermark, with
// the Target's own TopicReader or else one reader per partition, and
// reports the throughput.
func readBack(ctx context.Context, cfg Config, t Target, res *Result) {
	start := time.Now()
	var total int64
	if tr, ok := t.(TopicReader); ok {
		total, _ = tr.ReadTopic(ctx, cfg.Topic, cfg.Partitions) // an error ends the read; what was read counts
	} else {
		total = readPartitions(ctx, cfg, t)
	}
	res.ConsumeRecsSec = float64(total) / time.Since(start).Seconds()
	res.ConsumedRecords = total
	if res.Records == 0 {
		res.Records = total // nothing produced: per-GiB figures refer to what was read
	}
	res.ConsumeSource = cfg.ReadSource
}

// readPartitions reads every partition with its own reader and returns the
// records read.
func readPartitions(ctx context.Context, cfg Config, t Target) int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	for p := int32(0); p < cfg.Partitions; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(readPartition(ctx, cfg, t, p))
		}()
	}
	wg.Wait()
	return total.Load()
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
