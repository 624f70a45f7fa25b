package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
	"github.com/streamhouse/streamhouse/transport"
)

// s3Config is an agent configuration that stores segments in a real MinIO.
func s3Config(t *testing.T, m *s3segtest.MinIO, bucket string) *agentCmd {
	c := testConfig(t, t.TempDir())
	c.S3Endpoint, c.S3Bucket, c.S3Region, c.S3PathStyle = m.Endpoint, bucket, m.Region, true
	c.AWSAccessKeyID, c.AWSSecretKey = m.AccessKey, m.SecretKey
	return c
}

func allFlushed(t testing.TB, base, topic string) bool {
	var pr transport.PartitionsResponse
	if code, err := tryCall("GET", base+"/api/v1/topics/"+topic+"/partitions", nil, &pr); err != nil || code != 200 {
		return false
	}
	for _, p := range pr.Partitions {
		if p.FlushedOffset != p.HighWatermark {
			return false
		}
	}
	return true
}

// producer runs keyed produce loops against base until stop, recording
// every acknowledged value at its position.
// minioConfig starts a MinIO with the bucket "streamhouse" and returns it
// with an agent configuration that stores segments there.
func minioConfig(t *testing.T) (*s3segtest.MinIO, *agentCmd) {
	t.Helper()
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, "streamhouse")
	return m, s3Config(t, m, "streamhouse")
}

type loadGen struct {
	led      *ackLedger
	rejected atomic.Int64 // 503 answers (backpressure / unavailable)
	stop     atomic.Bool
	wg       sync.WaitGroup
}

func (g *loadGen) run(t *testing.T, base, topic string, workers, perReq int) {
	g.led = newAckLedger()
	for w := 0; w < workers; w++ {
		g.wg.Add(1)
		go func(w int) {
			defer g.wg.Done()
			for i := 0; !g.stop.Load(); i++ {
				vals := make([]string, perReq)
				for j := range vals {
					vals[j] = fmt.Sprintf("w%d-%d-%d", w, i, j)
				}
				code, err := g.led.produce(base, topic, vals)
				if err != nil {
					t.Errorf("produce: %v", err)
					return
				}
				if code == 503 {
					g.rejected.Add(1)
					time.Sleep(20 * time.Millisecond) // client backoff after "retry later"
					continue
				}
				if code != 200 {
					t.Errorf("produce: status %d", code)
					return
				}
			}
		}(w)
	}
}

func (g *loadGen) halt() { g.stop.Store(true); g.wg.Wait() }

// verifyAcked reads every partition and checks each acknowledged value is at
// its position and offsets are dense.
func verifyAcked(t *testing.T, base, topic string, parts int32, acks map[string]acked) int {
	t.Helper()
	byPos := map[acked]string{}
	total := 0
	for p := int32(0); p < parts; p++ {
		recs := consumeAll(t, base, topic, p)
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: offset %d at position %d", p, r.Offset, i)
			}
			byPos[acked{p, r.Offset}] = r.Value
		}
		total += len(recs)
	}
	for v, a := range acks {
		if byPos[a] != v {
			t.Fatalf("acknowledged %q at %d/%d, read %q", v, a.partition, a.offset, byPos[a])
		}
	}
	return total
}

// TestS3ManyPartitionsOnePutPerFlush: 64 partitions under continuous produce
// for 30 s write one object per flush (PUTs ≈ flushes, not × 64), and a
// restarted agent with an empty cache reads every record back from S3.
func TestS3ManyPartitionsOnePutPerFlush(t *testing.T) {
	_, c := minioConfig(t)
	c.SegmentMaxAgeMs = 250
	a, base := startTestAgent(t, c)
	createTopic(t, base, "wide", 64)
	var g loadGen
	g.run(t, base, "wide", 8, 64)
	time.Sleep(30 * time.Second) // the scenario is "continuous produce for 30 s", not a synchronisation
	g.halt()
	waitFor(t, 30*time.Second, "everything flushed", func() bool { return allFlushed(t, base, "wide") })
	metrics := scrape(t, base)
	writes := metricValue(metrics, "streamhouse_segment_writes_total")
	failures := metricValue(metrics, "streamhouse_segment_upload_failures_total")
	puts := metricValue(metrics, `streamhouse_s3_requests_total{backend="s3",operation="put",result="ok"}`)
	var pr transport.PartitionsResponse
	call(t, "GET", base+"/api/v1/topics/wide/partitions", nil, &pr)
	blocks := 0
	for _, p := range pr.Partitions {
		blocks += p.Segments
	}
	t.Logf("acked %d records; %v flushes, %v successful PUTs, %v failed flushes, %d partition blocks (%.1f per object)",
		len(g.led.acks), writes, puts, failures, blocks, float64(blocks)/puts)
	if writes < 10 || puts > writes+failures {
		t.Fatalf("PUTs (%v) exceed flushes (%v) + failures (%v)", puts, writes, failures)
	}
	if float64(blocks) < 16*puts {
		t.Fatalf("objects hold %.1f partitions on average; expected most of the 64 per flush", float64(blocks)/puts)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A fresh process state: empty cache, WAL already truncated below the
	// flushed offsets, so every read is a ranged GET from MinIO.
	a2, base2 := startTestAgent(t, c)
	defer a2.Close(context.Background())
	total := verifyAcked(t, base2, "wide", 64, g.led.acks)
	if gets := metricValue(scrape(t, base2), `streamhouse_s3_requests_total{backend="s3",operation="get_range",result="ok"}`); gets < 64 {
		t.Fatalf("only %v ranged GETs for reading 64 partitions back", gets)
	}
	t.Logf("read back %d records from S3", total)
}

// TestS3OutageLosesNothing: MinIO stops for 20 s during produce; produce
// answers 503 once the backlog bound is reached instead of growing without
// limit; /ready says why; when MinIO returns the backlog flushes and every
// acknowledged record is readable.
func TestS3OutageLosesNothing(t *testing.T) {
	m, c := minioConfig(t)
	c.MaxUnflushedBytes = 2 << 20
	c.SegmentMaxAgeMs = 100
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	call(t, "POST", base+"/api/v1/topics", map[string]any{"name": "out", "partitions": 4}, nil)
	var g loadGen
	g.run(t, base, "out", 4, 50)
	waitFor(t, 20*time.Second, "some flushes before the outage", func() bool {
		return metricValue(scrape(t, base), "streamhouse_segment_writes_total") >= 2
	})
	m.Stop(t)
	outageEnd := time.Now().Add(20 * time.Second)
	waitFor(t, 60*time.Second, "produce answers 503 during the outage", func() bool { return g.rejected.Load() > 0 })
	var ready struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	waitFor(t, 30*time.Second, "/ready reports the outage", func() bool {
		code, err := tryCall("GET", base+"/ready", nil, &ready)
		return err == nil && code == 503 && (strings.Contains(ready.Reason, "object store") || strings.Contains(ready.Reason, "backlog"))
	})
	t.Logf("/ready during outage: %s", ready.Reason)
	if b := metricValue(scrape(t, base), "streamhouse_unflushed_bytes"); b > float64(c.MaxUnflushedBytes)*2 {
		t.Fatalf("unflushed backlog grew to %v bytes, bound is %d", b, c.MaxUnflushedBytes)
	}
	time.Sleep(time.Until(outageEnd)) // keep MinIO down for the full 20 s scenario
	m.Restart(t)
	before := g.led.n.Load()
	waitFor(t, 60*time.Second, "produce acknowledged again after the outage", func() bool { return g.led.n.Load() > before+1000 })
	g.halt()
	waitFor(t, 60*time.Second, "backlog flushed", func() bool { return allFlushed(t, base, "out") })
	waitFor(t, 30*time.Second, "ready again", func() bool {
		code, err := tryCall("GET", base+"/ready", nil, nil)
		return err == nil && code == 200
	})
	total := verifyAcked(t, base, "out", 4, g.led.acks)
	t.Logf("acked %d, read %d, %d produce requests answered 503 during the outage", len(g.led.acks), total, g.rejected.Load())
}

// TestRetentionDeletesSegmentsAndObjects: expired segments are trimmed by a
// committed command, their objects deleted from S3, and consume reports the
// new range. A segment expires once both its records and its commit are
// older than retention_ms: records stamped an hour back expire
// retention_ms after their commit.
func TestRetentionDeletesSegmentsAndObjects(t *testing.T) {
	m, c := minioConfig(t)
	c.RetentionCheckMs = 100
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())
	if code := call(t, "POST", base+"/api/v1/topics", map[string]any{"name": "short", "partitions": 1, "retention_ms": 2000}, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	old := time.Now().Add(-time.Hour).UnixMilli()
	recs := make([]map[string]any, 10)
	for i := range recs {
		recs[i] = map[string]any{"value": fmt.Sprint(i), "timestamp": old}
	}
	if code := call(t, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": "short", "records": recs}, nil); code != 200 {
		t.Fatalf("produce: %d", code)
	}
	store := m.NewStore(t, "streamhouse")
	var pr transport.PartitionsResponse
	waitFor(t, 30*time.Second, "retention trims the partition", func() bool {
		call(t, "GET", base+"/api/v1/topics/short/partitions", nil, &pr)
		return pr.Partitions[0].LowWatermark == 10
	})
	waitFor(t, 30*time.Second, "expired objects deleted from S3", func() bool {
		objs, err := store.List(context.Background(), "segments/")
		return err == nil && len(objs) == 0
	})
	var e apiError
	if code := call(t, "GET", base+"/api/v1/consume?topic=short&partition=0&offset=0", nil, &e); code != 416 || !strings.Contains(e.Error.Message, "10") {
		t.Fatalf("consume below low watermark: %d %+v", code, e)
	}
	// Fresh records are kept and readable from the new low watermark (its
	// timestamp is ahead, so it cannot expire while the test reads it).
	fresh := time.Now().Add(time.Hour).UnixMilli()
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "short", "value": "new", "timestamp": fresh}, nil)
	var r consumeResp
	if code := call(t, "GET", base+"/api/v1/consume?topic=short&partition=0&offset=earliest", nil, &r); code != 200 || len(r.Records) != 1 || r.Records[0].Offset != 10 || r.LowWatermark != 10 {
		t.Fatalf("consume earliest after retention: %d %+v", code, r)
	}
}

// TestReadyExplainsObjectStoreProblems: a missing bucket or bad credentials
// do not stop the agent; /ready answers 503 naming the kind of problem, but
// not the bucket or the endpoint (it is public; the log has the details).
func TestReadyExplainsObjectStoreProblems(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, "exists")
	cases := []struct {
		name   string
		mutate func(c *agentCmd)
		want   string
	}{
		{"missing bucket", func(c *agentCmd) { c.S3Bucket = "no-such-bucket" }, "the bucket does not exist"},
		{"bad credentials", func(c *agentCmd) { c.AWSSecretKey = "wrong-secret" }, "access denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s3Config(t, m, "exists")
			tc.mutate(c)
			a, err := startAgent(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(context.Background())
			base := "http://" + a.http.Addr()
			var r struct {
				Reason string `json:"reason"`
			}
			waitFor(t, 20*time.Second, "/ready names the problem", func() bool {
				code, err := tryCall("GET", base+"/ready", nil, &r)
				return err == nil && code == 503 && strings.Contains(r.Reason, tc.want)
			})
			if strings.Contains(r.Reason, "no-such-bucket") || strings.Contains(r.Reason, m.Endpoint) {
				t.Fatalf("/ready reveals the bucket or the endpoint: %s", r.Reason)
			}
			t.Logf("/ready: %s", r.Reason)
		})
	}
}
