package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

type fakeDurability struct{ st DurabilityStatus }

func (d fakeDurability) Durability() DurabilityStatus { return d.st }

func (d fakeDurability) PartitionStorage(topic string, from, count int32) ([]PartitionStorage, error) {
	if topic != "t" {
		return nil, fmt.Errorf("%w: %q", fsm.ErrTopicNotFound, topic)
	}
	var out []PartitionStorage
	for i := from; i < from+count && i < 3; i++ {
		out = append(out, PartitionStorage{Partition: i, HighWatermark: 10, FlushedOffset: 7, UnflushedRecords: 3})
	}
	return out, nil
}

type fakeHealth struct{ cp CheckpointStatus }

func (h fakeHealth) LocalHealth() LocalHealthStatus { return LocalHealthStatus{Checkpoint: h.cp} }

func getJSON(t *testing.T, h http.Handler, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if out != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
	}
	return rec.Code
}

// TestDurabilityAcrossAgents: /api/v1/durability answers this agent's
// status with its registry's counters and checkpoint, asks the other live
// admitted agents over the peer channel, and names the dead one it did not
// ask.
func TestDurabilityAcrossAgents(t *testing.T) {
	f := newFakeAgent()
	peer := NewHTTPServer(HTTPConfig{Cluster: staticCluster{NodeID: "b"},
		Durability: fakeDurability{DurabilityStatus{NodeID: "b", ClusterUnflushedRecords: 5, OldestUnflushedMs: 1000, NowMs: 4000}}}, f, f, f, f)
	pm := startPeerMux(t, nil)
	pm.HandleRPC(peer.PeerReadHandler())

	reg := prometheus.NewRegistry()
	writes := prometheus.NewCounter(prometheus.CounterOpts{Name: "streamhouse_segment_writes_total"})
	fails := prometheus.NewCounter(prometheus.CounterOpts{Name: "streamhouse_checkpoint_failures_total"})
	reg.MustRegister(writes, fails)
	writes.Add(7)
	fails.Add(2)
	taken := time.UnixMilli(1_700_000_000_000)
	s := NewHTTPServer(HTTPConfig{Gatherer: reg,
		Cluster: staticCluster{NodeID: "a", Members: []ClusterMember{
			{ID: "a", GossipState: "alive", Suffrage: "voter"}, {ID: "b", GossipState: "alive", Suffrage: "voter", PeerAddr: pm.Addr()},
			{ID: "c", GossipState: "dead", Suffrage: "voter", PeerAddr: "127.0.0.1:1"}}},
		PeerRPC:     startPeerMux(t, nil).RPCClient(),
		Durability:  fakeDurability{DurabilityStatus{NodeID: "a", ClusterUnflushedRecords: 4}},
		LocalHealth: fakeHealth{CheckpointStatus{Configured: true, Connected: true, Leader: true, LastRaftIndex: 42, LastTakenAt: taken, Lag: 3 * time.Second}},
	}, f, f, f, f)
	var got DurabilityResponse
	if code := getJSON(t, s.Handler(), "/api/v1/durability", &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if len(got.Agents) != 3 || got.Agents[0].ID != "a" || got.Agents[1].ID != "b" || got.Agents[2].ID != "c" {
		t.Fatalf("agents %+v", got.Agents)
	}
	a, b, c := got.Agents[0], got.Agents[1], got.Agents[2]
	if a.SegmentsWritten != 7 || a.Checkpoint == nil || a.Checkpoint.LastRaftIndex != 42 || a.Checkpoint.FailuresTotal != 2 ||
		a.Checkpoint.LastAt != taken.UnixMilli() || a.Checkpoint.LagMs != 3000 {
		t.Errorf("local agent %+v %+v", a.DurabilityStatus, a.Checkpoint)
	}
	if b.DurabilityStatus == nil || b.OldestUnflushedAgeMs != 3000 || b.Checkpoint != nil {
		t.Errorf("peer agent %+v (error %q)", b.DurabilityStatus, b.Error)
	}
	if c.DurabilityStatus != nil || !strings.Contains(c.Error, "dead") {
		t.Errorf("dead agent %+v", c)
	}
	if got.RecoveryPoint.RecordsAtRisk != 5 || got.RecoveryPoint.WindowMs != 3000 || !strings.Contains(got.RecoveryPoint.RestoreCommand, "streamhouse restore") {
		t.Errorf("recovery point %+v", got.RecoveryPoint)
	}
	if code := getJSON(t, s.Handler(), "/api/v1/durability?scpe=local", nil); code != http.StatusBadRequest {
		t.Errorf("misspelt query parameter: %d", code)
	}
	if code := getJSON(t, NewHTTPServer(HTTPConfig{}, f, f, f, f).Handler(), "/api/v1/durability", nil); code != http.StatusNotFound {
		t.Errorf("without Durability: %d", code)
	}
}

func TestPartitionStorageEndpoint(t *testing.T) {
	f := newFakeAgent()
	f.addTopic("t", 3)
	s := NewHTTPServer(HTTPConfig{Durability: fakeDurability{}}, f, f, f, f)
	var got StorageResponse
	if code := getJSON(t, s.Handler(), "/api/v1/topics/t/storage?from=1&count=5", &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got.Topic.Name != "t" || got.Topic.Partitions != 3 || got.From != 1 || len(got.Partitions) != 2 || got.Partitions[0].Partition != 1 {
		t.Fatalf("body %+v", got)
	}
	for path, want := range map[string]int{
		"/api/v1/topics/t/storage?count=201":  http.StatusBadRequest,
		"/api/v1/topics/t/storage?from=-1":    http.StatusBadRequest,
		"/api/v1/topics/t/storage?from=x":     http.StatusBadRequest,
		"/api/v1/topics/t/storage?offset=1":   http.StatusBadRequest,
		"/api/v1/topics/nope/storage":         http.StatusNotFound,
		"/api/v1/topics/t/storage?count=0":    http.StatusOK,
		"/api/v1/topics/t/storage?from=99999": http.StatusOK,
	} {
		if code := getJSON(t, s.Handler(), path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// TestMetricsHistoryRates: two samples of the registry become one point
// with per-second rates and the latency percentiles of the interval.
func TestMetricsHistoryRates(t *testing.T) {
	reg := prometheus.NewRegistry()
	produced := prometheus.NewCounter(prometheus.CounterOpts{Name: "streamhouse_messages_produced_total"})
	puts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "streamhouse_s3_requests_total"}, []string{"operation", "result"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "streamhouse_produce_latency_seconds", Buckets: []float64{0.001, 0.01, 0.1}})
	reg.MustRegister(produced, puts, lat)
	lat.Observe(0.0005) // before the first sample: not in the interval
	h := newMetricsHistory(reg)
	t0 := time.UnixMilli(1_000_000)
	h.sample(t0)
	produced.Add(100)
	puts.WithLabelValues("put", "ok").Add(4)
	puts.WithLabelValues("get", "ok").Add(50)
	for i := 0; i < 100; i++ {
		lat.Observe(0.005) // all in (1 ms, 10 ms]
	}
	h.sample(t0.Add(2 * time.Second))
	ps := points(h.samples())
	if len(ps) != 1 {
		t.Fatalf("points %+v", ps)
	}
	p := ps[0]
	if p.ProduceRate != 50 || p.PutRate != 2 || p.T != t0.Add(2*time.Second).UnixMilli() {
		t.Errorf("rates %+v", p)
	}
	if p.AckP50 == nil || math.Abs(*p.AckP50-5.5) > 1e-9 || p.AckP99 == nil || math.Abs(*p.AckP99-9.91) > 1e-9 {
		t.Errorf("percentiles p50=%v p99=%v, want 5.5 and 9.91 (linear in the 1-10 ms bucket)", deref(p.AckP50), deref(p.AckP99))
	}
	// The ring keeps the newest historySamples.
	for i := 0; i < historySamples+5; i++ {
		h.sample(t0.Add(time.Duration(i+3) * time.Second))
	}
	if ss := h.samples(); len(ss) != historySamples || !ss[len(ss)-1].at.Equal(t0.Add(time.Duration(historySamples+7)*time.Second)) {
		t.Errorf("ring holds %d samples, newest %v", len(ss), ss[len(ss)-1].at)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestQuantileEdges(t *testing.T) {
	if quantileMs(nil, 0.5) != nil || quantileMs([]bucket{{le: 1}, {le: math.Inf(1)}}, 0.5) != nil {
		t.Error("no observations should give no percentile")
	}
	// Everything above the last finite bucket: the answer is its bound.
	v := quantileMs([]bucket{{le: 0.1, count: 0}, {le: math.Inf(1), count: 3}}, 0.99)
	if v == nil || *v != 100 {
		t.Errorf("+Inf bucket: %v", deref(v))
	}
}

// TestMetricsHistoryServed: the server samples while it runs, serves
// the history, answers 404 for ?node= naming no admitted agent and stops the sampler
// on Shutdown.
func TestMetricsHistoryServed(t *testing.T) {
	f := newFakeAgent()
	s := NewHTTPServer(HTTPConfig{Addr: "127.0.0.1:0", HistoryInterval: 5 * time.Millisecond,
		Cluster: staticCluster{NodeID: "a", Members: []ClusterMember{{ID: "a"}}}}, f, f, f, f)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	var got HistoryResponse
	testkit.WaitFor(t, 5*time.Second, "two history points", func() bool {
		return getJSON(t, s.Handler(), "/api/v1/metrics/history", &got) == http.StatusOK && len(got.Points) >= 2
	})
	if got.NodeID != "a" || got.IntervalMs != 5 || len(got.Points) < 2 {
		t.Fatalf("history %+v", got)
	}
	if code := getJSON(t, s.Handler(), "/api/v1/metrics/history?node=zz", nil); code != http.StatusNotFound {
		t.Errorf("unknown node: %d", code)
	}
}
