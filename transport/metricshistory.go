package transport

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metrics history is a small in-memory ring of samples of the agent's
// own Prometheus registry, taken every historyInterval, from which
// GET /api/v1/metrics/history answers rates and latency percentiles over
// the last minutes: the console draws its throughput charts without a
// Prometheus server. One sample is a handful of numbers; the ring holds
// historySamples of them.

const (
	historyInterval = 2 * time.Second
	historySamples  = 300 // 10 minutes
)

// metricsSample is one reading of the registry.
type metricsSample struct {
	at       time.Time
	produced float64 // streamhouse_messages_produced_total
	consumed float64 // streamhouse_messages_consumed_total
	flushed  float64 // streamhouse_segment_bytes_total
	putBytes float64 // streamhouse_s3_bytes_total{operation=put}
	puts     float64 // streamhouse_s3_requests_total{operation=put}
	// latency is streamhouse_produce_latency_seconds's cumulative buckets.
	latency []bucket
}

type bucket struct {
	le    float64
	count float64
}

// metricsHistory is the ring; safe for concurrent use.
type metricsHistory struct {
	g     prometheus.Gatherer
	mu    sync.Mutex
	ring  []metricsSample
	next  int
	count int
}

func newMetricsHistory(g prometheus.Gatherer) *metricsHistory {
	return &metricsHistory{g: g, ring: make([]metricsSample, historySamples)}
}

// run samples until ctx ends; the HTTP server owns it (Start/Shutdown).
func (h *metricsHistory) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	h.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.sample(now)
		}
	}
}

func (h *metricsHistory) sample(now time.Time) {
	s := readSample(h.g, now)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	h.count = min(h.count+1, len(h.ring))
}

// samples returns the ring oldest first.
func (h *metricsHistory) samples() []metricsSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]metricsSample, 0, h.count)
	start := (h.next - h.count + len(h.ring)) % len(h.ring)
	for i := 0; i < h.count; i++ {
		out = append(out, h.ring[(start+i)%len(h.ring)])
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func readSample(g prometheus.Gatherer, now time.Time) metricsSample {
	s := metricsSample{at: now}
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "streamhouse_messages_produced_total":
				s.produced += m.GetCounter().GetValue()
			case "streamhouse_messages_consumed_total":
				s.consumed += m.GetCounter().GetValue()
			case "streamhouse_segment_bytes_total":
				s.flushed += m.GetCounter().GetValue()
			case "streamhouse_s3_bytes_total":
				if labelValue(m, "operation") == "put" {
					s.putBytes += m.GetCounter().GetValue()
				}
			case "streamhouse_s3_requests_total":
				if labelValue(m, "operation") == "put" {
					s.puts += m.GetCounter().GetValue()
				}
			case "streamhouse_produce_latency_seconds":
				s.latency = addBuckets(s.latency, m.GetHistogram())
			}
		}
	}
	return s
}

// addBuckets adds h's cumulative buckets (and +Inf) into acc.
func addBuckets(acc []bucket, h *dto.Histogram) []bucket {
	bs := h.GetBucket()
	if acc == nil {
		acc = make([]bucket, len(bs)+1)
		for i, b := range bs {
			acc[i].le = b.GetUpperBound()
		}
		acc[len(bs)].le = math.Inf(1)
	}
	if len(acc) != len(bs)+1 {
		return acc // differently bucketed series: ignored
	}
	for i, b := range bs {
		acc[i].count += float64(b.GetCumulativeCount())
	}
	acc[len(bs)].count += float64(h.GetSampleCount())
	return acc
}

// HistoryPoint is one interval of GET /api/v1/metrics/history.
type HistoryPoint struct {
	T              int64   `json:"t"` // unix ms, end of the interval
	ProduceRate    float64 `json:"produce_records_per_sec"`
	ConsumeRate    float64 `json:"consume_records_per_sec"`
	FlushByteRate  float64 `json:"flush_bytes_per_sec"`
	UploadByteRate float64 `json:"s3_put_bytes_per_sec"`
	PutRate        float64 `json:"s3_puts_per_sec"`
	// Ack latency percentiles (ms) of the produces acknowledged in the
	// interval; null when there were none.
	AckP50 *float64 `json:"ack_p50_ms"`
	AckP99 *float64 `json:"ack_p99_ms"`
}

// HistoryResponse is the body of GET /api/v1/metrics/history.
type HistoryResponse struct {
	NodeID     string         `json:"node_id"`
	IntervalMs int64          `json:"interval_ms"`
	Points     []HistoryPoint `json:"points"`
}

// points turns consecutive samples into per-interval rates.
func points(ss []metricsSample) []HistoryPoint {
	out := []HistoryPoint{}
	for i := 1; i < len(ss); i++ {
		a, b := ss[i-1], ss[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		rate := func(x, y float64) float64 { return max(y-x, 0) / dt }
		p := HistoryPoint{T: b.at.UnixMilli(),
			ProduceRate: rate(a.produced, b.produced), ConsumeRate: rate(a.consumed, b.consumed),
			FlushByteRate: rate(a.flushed, b.flushed), UploadByteRate: rate(a.putBytes, b.putBytes),
			PutRate: rate(a.puts, b.puts)}
		d := deltaBuckets(a.latency, b.latency)
		p.AckP50, p.AckP99 = quantileMs(d, 0.5), quantileMs(d, 0.99)
		out = append(out, p)
	}
	return out
}

func deltaBuckets(a, b []bucket) []bucket {
	if len(b) == 0 {
		return nil
	}
	d := make([]bucket, len(b))
	for i := range b {
		d[i] = b[i]
		if len(a) == len(b) {
			d[i].count = max(b[i].count-a[i].count, 0)
		}
	}
	return d
}

// quantileMs is Prometheus's histogram_quantile over cumulative buckets
// (linear within a bucket; the +Inf bucket answers its lower bound), in ms.
func quantileMs(bs []bucket, q float64) *float64 {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return nil
	}
	rank := q * bs[len(bs)-1].count
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			v := lower
			if !math.IsInf(b.le, 1) && b.count > below {
				v = lower + (b.le-lower)*(rank-below)/(b.count-below)
			}
			v *= 1000
			return &v
		}
		lower, below = b.le, b.count
	}
	return nil
}

// handleMetricsHistory serves GET /api/v1/metrics/history[?node=ID].
func (s *HTTPServer) handleMetricsHistory(w http.ResponseWriter, r *http.Request) error {
	if node := r.URL.Query().Get("node"); node != "" && node != s.nodeID() {
		var h HistoryResponse
		if err := s.readPeer(r, node, PeerMetricsHistoryPath, &h); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, h)
		return nil
	}
	writeJSON(w, http.StatusOK, s.localHistory())
	return nil
}

// localHistory is this agent's metrics history.
func (s *HTTPServer) localHistory() HistoryResponse {
	return HistoryResponse{NodeID: s.nodeID(), IntervalMs: s.historyEvery.Milliseconds(),
		Points: points(s.history.samples())}
}

// nodeID is this agent's ID as the cluster status reports it ("" without).
func (s *HTTPServer) nodeID() string {
	if s.cfg.Cluster == nil {
		return ""
	}
	return s.cfg.Cluster.ClusterStatus().NodeID
}
