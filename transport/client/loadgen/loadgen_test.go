package loadgen

import (
	"context"
	"errors"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamhouse/streamhouse/transport/client"
)

// memTarget is an in-memory Target: every partition is a list of records.
// failEvery > 0 fails every failEvery-th Send; every Send reports
// retriesPerSend retries.
type memTarget struct {
	failEvery      int
	retriesPerSend int64

	mu      sync.Mutex
	sends   int
	parts   map[int32][]client.Record
	changed chan struct{} // closed and replaced by every Send
}

func newMemTarget() *memTarget {
	return &memTarget{parts: map[int32][]client.Record{}, changed: make(chan struct{})}
}

func (m *memTarget) Send(_ context.Context, _ int, _ string, recs []client.Record) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sends++
	if m.failEvery > 0 && m.sends%m.failEvery == 0 {
		return m.retriesPerSend, errors.New("refused")
	}
	for _, r := range recs {
		m.parts[r.Partition] = append(m.parts[r.Partition], r)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	return m.retriesPerSend, nil
}

// Fetch serves a page; at the end of the log with MaxWait it waits for the
// next Send or the end of ctx.
func (m *memTarget) Fetch(ctx context.Context, req client.FetchRequest) (client.FetchResult, error) {
	for {
		m.mu.Lock()
		recs, changed := m.parts[req.Partition], m.changed
		m.mu.Unlock()
		high := int64(len(recs))
		off := req.Offset
		switch off {
		case client.OffsetEarliest:
			off = 0
		case client.OffsetLatest:
			off = high
		}
		if off < high || req.MaxWait == 0 {
			end := min(high, off+int64(req.MaxRecords))
			return client.FetchResult{Records: recs[off:end], NextOffset: end, HighWatermark: high}, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return client.FetchResult{}, ctx.Err()
		}
	}
}

func (m *memTarget) stored() (total int, partitions int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, recs := range m.parts {
		total += len(recs)
	}
	return total, len(m.parts)
}

func TestProduceSendsTheRecordCountOverEveryPartition(t *testing.T) {
	m := newMemTarget()
	cfg := Config{Topic: "t", Partitions: 4, Records: 1000, RecordSize: 10, Batch: 100, Concurrency: 3}
	res, err := Produce(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	total, parts := m.stored()
	if res.Records != 1000 || total != 1000 || res.Errors != 0 {
		t.Fatalf("result %d records, %d errors; stored %d; want 1000, 0, 1000", res.Records, res.Errors, total)
	}
	if parts != 4 {
		t.Fatalf("records went to %d partitions, want all 4", parts)
	}
	if res.RecordsPerSec <= 0 || res.AckP50Ms < 0 || res.MiBPerSec <= 0 {
		t.Fatalf("rates not filled: %+v", res)
	}
}

func TestProduceCountsFailedBatchesAndRetries(t *testing.T) {
	m := newMemTarget()
	m.failEvery, m.retriesPerSend = 2, 1
	cfg := Config{Topic: "t", Partitions: 2, Records: 1000, Batch: 100, Concurrency: 1}
	res, err := Produce(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 500 || res.Errors != 5 || res.Retries503 != 10 {
		t.Fatalf("records %d errors %d retries %d; want 500, 5, 10", res.Records, res.Errors, res.Retries503)
	}
}

func TestProduceFailsWhenNothingWasAcknowledged(t *testing.T) {
	m := newMemTarget()
	m.failEvery = 1
	cfg := Config{Topic: "t", Partitions: 1, Records: 300, Batch: 100, Concurrency: 2}
	_, err := Produce(context.Background(), cfg, m)
	if err == nil || !strings.Contains(err.Error(), "no produce request succeeded (3 errors)") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadBackReadsEveryPartitionToTheEnd(t *testing.T) {
	m := newMemTarget()
	for p := int32(0); p < 3; p++ {
		recs := make([]client.Record, 10+int(p))
		for i := range recs {
			recs[i] = client.Record{}.ToPartition(p)
		}
		if _, err := m.Send(context.Background(), 0, "t", recs); err != nil {
			t.Fatal(err)
		}
	}
	var res Result
	readBack(context.Background(), Config{Topic: "t", Partitions: 4, ReadRecords: 4, ReadSource: "mem"}, m, &res)
	if res.Records != 33 || res.ConsumeSource != "mem" || res.ConsumeRecsSec <= 0 {
		t.Fatalf("read back %+v; want 33 records from mem", res)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics("# HELP x\nprocess_cpu_seconds_total 1.5\n" +
		`streamhouse_s3_requests_total{backend="s3",operation="put",result="ok"} 7` + "\nbroken\n")
	if m["process_cpu_seconds_total"] != 1.5 || m[putSeries[0]] != 7 || len(m) != 2 {
		t.Fatalf("parsed %v", m)
	}
}

func TestProduceSpreadsABatchOverThePartitions(t *testing.T) {
	m := newMemTarget()
	cfg := Config{Topic: "t", Partitions: 4, Records: 8, Batch: 4, Concurrency: 1, Spread: true}
	if _, err := Produce(context.Background(), cfg, m); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := int32(0); p < 4; p++ {
		if n := len(m.parts[p]); n != 2 {
			t.Fatalf("partition %d holds %d records, want 2 (two batches of 4 over 4 partitions)", p, n)
		}
	}
}

func TestSaturatedIsBelowNinetyFivePercentOfTheOfferedRate(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want bool
	}{
		{Result{TargetRate: 100000, RecordsPerSec: 99990}, false},
		{Result{TargetRate: 100000, RecordsPerSec: 95000}, false},
		{Result{TargetRate: 100000, RecordsPerSec: 94999}, true},
		{Result{RecordsPerSec: 10}, false}, // saturated runs offer no rate
	} {
		if got := Saturated(c.r); got != c.want {
			t.Errorf("Saturated(%+v) = %v", c.r, got)
		}
	}
}

func TestSweepRefusesPointsWithoutALength(t *testing.T) {
	if _, err := Sweep(context.Background(), Config{Topic: "t", Partitions: 1, Batch: 1, Concurrency: 1, Produce: true}, []int64{10}, newMemTarget(), nil); err == nil {
		t.Fatal("a sweep without a duration per point ran")
	}
}

func TestRunWithoutAgentsMeasuresOnlyTheClient(t *testing.T) {
	m := newMemTarget()
	cfg := Config{Protocol: "mem", Topic: "t", Partitions: 2, Records: 200, Batch: 100, Concurrency: 1, Produce: true}
	res, err := Run(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 200 || res.Protocol != "mem" || res.AgentsPeakRSSMiB != nil || res.AckMaxMs < res.AckP50Ms {
		t.Fatalf("result %+v", res)
	}
}

// slowTarget acknowledges every batch after delay.
type slowTarget struct {
	*memTarget
	delay time.Duration
}

func (s *slowTarget) Send(ctx context.Context, w int, topic string, recs []client.Record) (int64, error) {
	if err := sleep(ctx, s.delay); err != nil {
		return 0, err
	}
	return s.memTarget.Send(ctx, w, topic, recs)
}

func TestADurationRunsRateIsOverItsSendWindowNotTheLastAck(t *testing.T) {
	s := &slowTarget{memTarget: newMemTarget(), delay: 200 * time.Millisecond}
	cfg := Config{Topic: "t", Partitions: 1, Duration: 50 * time.Millisecond, Batch: 10, Concurrency: 1}
	res, err := Produce(context.Background(), cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	// one batch, sent at once and acknowledged after the window closed
	if res.Records != 10 || res.Seconds != 0.05 || res.RecordsPerSec != 200 {
		t.Fatalf("records %d over %.3f s = %.0f/s; want 10 over 0.050 s = 200/s", res.Records, res.Seconds, res.RecordsPerSec)
	}
}

func TestAFixedRateRunSendsNoSlotPastItsEnd(t *testing.T) {
	m := newMemTarget()
	// 10 batches of 10 per second for 0.3 s: slots at 0, 0.1 and 0.2 s;
	// eight workers must not send the slots at 0.3, 0.4 … s they claimed
	cfg := Config{Topic: "t", Partitions: 1, Duration: 300 * time.Millisecond, Rate: 100, Batch: 10, Concurrency: 8}
	res, err := Produce(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if total, _ := m.stored(); res.Records != 30 || total != 30 {
		t.Fatalf("sent %d records (stored %d), want the 3 slots inside the run, 30", res.Records, total)
	}
	// the workers finish after the last slot, before the window ends
	if res.Seconds != 0.3 || math.Abs(res.RecordsPerSec-100) > 1e-9 {
		t.Fatalf("%.0f records/s over %.3f s, want the offered 100 over the 0.3 s window", res.RecordsPerSec, res.Seconds)
	}
}

func TestSweepStopsAtTheFirstRateThatFallsBehind(t *testing.T) {
	defer func(p time.Duration) { sweepPause = p }(sweepPause)
	sweepPause = 0
	m := newMemTarget()
	// 20 slots of one record at 100/s, one worker each: kept; a billion
	// records/s: behind; the third rate must not run
	cfg := Config{Topic: "t", Partitions: 1, Duration: 200 * time.Millisecond, Batch: 1, Concurrency: 20, Produce: true}
	var seen []int64
	points, err := Sweep(context.Background(), cfg, []int64{100, 1e9, 2e9}, m, func(r Result) error {
		seen = append(seen, r.TargetRate)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 || len(seen) != 2 || points[0].Records != 20 || Saturated(points[0]) || !Saturated(points[1]) {
		t.Fatalf("points %+v (reported %v); want 100/s kept with 20 records, then 1e9/s behind, then stop", points, seen)
	}
}

func TestAWarmupIsProducedButNotMeasured(t *testing.T) {
	m := newMemTarget()
	// 10 batches of 10 per second: warm-up slots at 0 and 0.1 s, then the
	// measured window's at 0, 0.1 and 0.2 s of its own schedule
	cfg := Config{Topic: "t", Partitions: 1, Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond,
		Rate: 100, Batch: 10, Concurrency: 4, Produce: true}
	res, err := Run(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if total, _ := m.stored(); total != 50 || res.Records != 30 || res.WarmupSeconds != 0.2 {
		t.Fatalf("stored %d, measured %d records after a %.1f s warm-up; want 50 stored, the 30 of the window measured, 0.2 s",
			total, res.Records, res.WarmupSeconds)
	}
	// with the read-back on, the warm-up's records would be read back too
	cfg.Consume = true
	if _, err := Run(context.Background(), cfg, newMemTarget()); err == nil || !strings.Contains(err.Error(), "read-back off") {
		t.Fatalf("warm-up with a read-back: err = %v", err)
	}
	cfg.Consume = false
	// a saturated run (no rate) has no warm-up
	m = newMemTarget()
	cfg.Rate, cfg.Duration, cfg.Records = 0, 0, 20
	if res, err = Run(context.Background(), cfg, m); err != nil {
		t.Fatal(err)
	}
	if total, _ := m.stored(); total != 20 || res.WarmupSeconds != 0 {
		t.Fatalf("saturated: stored %d, warm-up %.1f s; want 20 and none", total, res.WarmupSeconds)
	}
}

// TestTheRSSSampleAsksForOneSeries: the sample is filtered by name (the
// agent's promhttp handler honours name[]), so it does not make the agent
// encode and the load generator parse every series several times a second.
func TestTheRSSSampleAsksForOneSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	rss := prometheus.NewGauge(prometheus.GaugeOpts{Name: rssSeries, Help: "x"})
	rss.Set(123 << 20)
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamhouse_other", Help: "x"})
	reg.MustRegister(rss, other)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	a := Agent{Client: srv.Client(), URL: srv.URL}
	got, err := a.scrape(context.Background(), rssSeries)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[rssSeries] != 123<<20 {
		t.Fatalf("scrape = %v, want only %s", got, rssSeries)
	}
	if all, _ := a.scrape(context.Background()); len(all) != 2 {
		t.Fatalf("unfiltered scrape = %v, want both series", all)
	}
}
