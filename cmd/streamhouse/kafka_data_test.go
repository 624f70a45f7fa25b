package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/transport"
)

// kafkaAgent starts an in-process agent with its Kafka listener and
// returns it with its REST base URL and Kafka address.
func kafkaAgent(t *testing.T) (*agent, string, string) {
	t.Helper()
	c := testConfig(t, t.TempDir())
	c.KafkaPort = freePort(t)
	c.KafkaAdvertised = "127.0.0.1:" + strconv.Itoa(c.KafkaPort)
	a, base := startTestAgent(t, c)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a, base, c.KafkaAdvertised
}

func kgoClient(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// pollN consumes n records of topic's partitions from the start.
func pollN(t *testing.T, seeds []string, topic string, parts int32, n int) []*kgo.Record {
	t.Helper()
	offs := map[int32]kgo.Offset{}
	for p := range parts {
		offs[p] = kgo.NewOffset().AtStart()
	}
	cl := kgoClient(t, seeds, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(got), n, topic)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch %s/%d: %v", tp, p, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

// Records produced with every codec through franz-go are read back the
// same through Kafka (from the WAL, then from segment objects) and
// through REST; null keys and null values survive Kafka→REST→Kafka.
func TestKafkaRoundTripEveryCodec(t *testing.T) {
	_, base, kaddr := kafkaAgent(t)
	seeds := []string{kaddr}
	createTopic(t, base, "kc", 1)
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	var want []*kgo.Record
	for ci, codec := range codecs {
		p := kgoClient(t, seeds, kgo.ProducerBatchCompression(codec), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var batch []*kgo.Record
		for i := range 20 {
			r := &kgo.Record{Topic: "kc", Timestamp: time.UnixMilli(int64(1_700_000_000_000 + ci*100 + i)),
				Key: []byte(fmt.Sprintf("k%d-%d", ci, i)), Value: bytes.Repeat([]byte{byte('a' + i)}, 50+i),
				Headers: []kgo.RecordHeader{{Key: "codec", Value: []byte(strconv.Itoa(ci))}}}
			switch i % 5 {
			case 1:
				r.Key = nil
			case 2:
				r.Value = nil // tombstone
			case 3:
				r.Value = []byte{}
			}
			batch = append(batch, r)
		}
		if err := p.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
			t.Fatalf("codec %d: %v", ci, err)
		}
		want = append(want, batch...)
	}
	check := func(stage string, got []*kgo.Record) {
		t.Helper()
		for i, w := range want {
			g := got[i]
			if g.Offset != int64(i) || !bytes.Equal(g.Key, w.Key) || (g.Key == nil) != (w.Key == nil) ||
				!bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) || !g.Timestamp.Equal(w.Timestamp) ||
				len(g.Headers) != len(w.Headers) || (len(w.Headers) == 1 && string(g.Headers[0].Value) != string(w.Headers[0].Value)) {
				t.Fatalf("%s: record %d = %+v, want %+v", stage, i, g, w)
			}
		}
	}
	check("from the WAL", pollN(t, seeds, "kc", 1, len(want)))

	// REST sees null values as null and empty ones as "".
	var cr struct {
		Records []struct {
			Key   *string `json:"key"`
			Value *string `json:"value"`
		} `json:"records"`
	}
	call(t, "GET", base+"/api/v1/consume?topic=kc&partition=0&offset=0&max_records=5", nil, &cr)
	if len(cr.Records) != 5 || cr.Records[1].Key != nil || cr.Records[2].Value != nil || cr.Records[3].Value == nil || *cr.Records[3].Value != "" {
		t.Fatalf("REST view: %+v", cr.Records)
	}
	// REST → Kafka: a tombstone with a null key.
	var pr produceResp
	call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "kc", "partition": 0, "value": nil}, &pr)
	want = append(want, &kgo.Record{Timestamp: time.Time{}})
	got := pollN(t, seeds, "kc", 1, len(want))
	if last := got[len(want)-1]; last.Key != nil || last.Value != nil || last.Offset != pr.Offset {
		t.Fatalf("REST tombstone read over Kafka: %+v", last)
	}
	want[len(want)-1] = got[len(want)-1]

	var parts transport.PartitionsResponse
	waitFor(t, 20*time.Second, "partition flushed", func() bool {
		call(t, "GET", base+"/api/v1/topics/kc/partitions", nil, &parts)
		return parts.Partitions[0].FlushedOffset == int64(len(want))
	})
	check("from segments", pollN(t, seeds, "kc", 1, len(want)))
}

// acks 0, 1 and all each store the record; an idempotent producer whose
// connections are cut mid-stream leaves no duplicates.
func TestKafkaAcksAndIdempotentRetries(t *testing.T) {
	_, base, kaddr := kafkaAgent(t)
	seeds := []string{kaddr}
	createTopic(t, base, "ka", 1)
	for _, acks := range []kgo.Acks{kgo.NoAck(), kgo.LeaderAck(), kgo.AllISRAcks()} {
		p := kgoClient(t, seeds, kgo.RequiredAcks(acks), kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err := p.ProduceSync(context.Background(), &kgo.Record{Topic: "ka", Value: []byte("acks")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if got := pollN(t, seeds, "ka", 1, 3); len(got) != 3 {
		t.Fatalf("%d records", len(got))
	}

	createTopic(t, base, "ki", 2)
	// Every 7th write on a connection fails after the request went out:
	// the client retries batches whose outcome it does not know.
	cutter := &connCutter{every: 5}
	p := kgoClient(t, seeds, kgo.Dialer(cutter.dial), kgo.RecordRetries(100), kgo.RetryBackoffFn(func(int) time.Duration { return 5 * time.Millisecond }))
	const n = 400
	for i := 0; i < n; i += 10 {
		var recs []*kgo.Record
		for j := i; j < i+10; j++ {
			recs = append(recs, &kgo.Record{Topic: "ki", Value: []byte(strconv.Itoa(j))})
		}
		if err := p.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("records %d..: %v", i, err)
		}
	}
	if cutter.cuts.Load() == 0 {
		t.Fatal("no connection was cut")
	}
	got := pollN(t, seeds, "ki", 2, n)
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for i := range n {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("record %d stored %d times (%d cuts)", i, c, cutter.cuts.Load())
		}
	}
}

// connCutter dials connections that close themselves right after every
// every-th write: the request reached the broker, its answer is lost.
type connCutter struct {
	every  int64
	writes atomic.Int64
	cuts   atomic.Int64
}

func (c *connCutter) dial(ctx context.Context, network, host string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: nc, c: c}, nil
}

type cutConn struct {
	net.Conn
	c *connCutter
}

func (cc *cutConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	if err == nil && cc.c.writes.Add(1)%cc.c.every == 0 {
		cc.c.cuts.Add(1)
		_ = cc.Conn.Close()
	}
	return n, err
}

// kafkaAddrs returns the Kafka address of every agent of a proc cluster.
func (c *procCluster) kafkaAddrs() []string {
	var out []string
	for _, env := range c.env {
		for _, kv := range env {
			if port, ok := strings.CutPrefix(kv, "KAFKA_PORT="); ok {
				out = append(out, "127.0.0.1:"+port)
			}
		}
	}
	return out
}

// kafkaAck is where an acknowledged record landed.
type kafkaAck struct {
	partition int32
	offset    int64
}

// TestKafkaLeaderKillNoAckedLoss: a franz-go producer writes continuously
// to a three-agent cluster; SIGKILL an agent that leads partitions; the
// client reroutes to the new leaders (NOT_LEADER / metadata refresh) and
// every acknowledged record is read back over Kafka at its offset, once.
func TestKafkaLeaderKillNoAckedLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	c := startProcCluster(t, 3)
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "3 voters", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	const parts = 3
	createTopic(t, c.base(0), "kf", parts)
	addrs := c.kafkaAddrs()
	p := kgoClient(t, addrs, kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	var (
		mu      sync.Mutex
		acked   = map[string]kafkaAck{}
		lastAck [parts]atomic.Int64 // unix nanos of each partition's latest ack
		stop    atomic.Bool
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			r := &kgo.Record{Topic: "kf", Value: []byte("r" + strconv.Itoa(i))}
			p.Produce(context.Background(), r, func(r *kgo.Record, err error) {
				if err != nil {
					return // not acknowledged: may or may not be stored
				}
				mu.Lock()
				acked[string(r.Value)] = kafkaAck{r.Partition, r.Offset}
				mu.Unlock()
				lastAck[r.Partition].Store(time.Now().UnixNano())
			})
			if i%10 == 9 {
				time.Sleep(2 * time.Millisecond) // a steady stream, not one huge burst
			}
		}
	}()
	nAcked := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, "initial load", func() bool { return nAcked() > 2000 })

	victim := kafkaPartitionLeader(t, c, "kf")
	killedAt := time.Now()
	c.procs[victim].kill(t)
	before := nAcked()
	waitFor(t, 60*time.Second, "produce resumes on every partition after the kill", func() bool {
		for i := range lastAck {
			if lastAck[i].Load() <= killedAt.UnixNano() {
				return false
			}
		}
		return nAcked() > before+2000
	})
	t.Logf("killed node-%d: produce resumed within %v", victim+1, time.Since(killedAt).Round(10*time.Millisecond))
	stop.Store(true)
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var survivors []string
	for i, a := range addrs {
		if i != victim {
			survivors = append(survivors, a)
		}
	}
	verifyKafkaAcked(t, survivors, "kf", parts, acked)
}

// kafkaPartitionLeader returns the index of an agent that leads a
// partition of topic and is not the Raft leader (any leader if none).
func kafkaPartitionLeader(t *testing.T, c *procCluster, topic string) int {
	t.Helper()
	var st transport.ClusterStatus
	waitFor(t, 30*time.Second, "partition leaders known", func() bool {
		var ok bool
		st, ok = c.status(0)
		return ok && st.Leader != ""
	})
	victim := -1
	for _, m := range st.Members {
		for _, l := range m.Leaderships {
			if strings.HasPrefix(l, topic+"/") && (victim < 0 || !m.RaftLeader) {
				victim = nodeIndex(m.ID)
			}
		}
	}
	if victim < 0 {
		t.Fatalf("no leader of %s: %+v", topic, st.Members)
	}
	return victim
}

// verifyKafkaAcked reads every partition over Kafka up to its end and
// checks each acknowledged record is at its offset and stored once.
func verifyKafkaAcked(t *testing.T, seeds []string, topic string, parts int32, acked map[string]kafkaAck) {
	t.Helper()
	offs := map[int32]kgo.Offset{}
	for p := range parts {
		offs[p] = kgo.NewOffset().AtStart()
	}
	cl := kgoClient(t, seeds, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[string]int{}
	found := 0
	for found < len(acked) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d acknowledged records", found, len(acked))
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch %s/%d: %v", tp, p, err) })
		for _, r := range fs.Records() {
			v := string(r.Value)
			seen[v]++
			if seen[v] > 1 {
				t.Fatalf("record %s stored twice (offset %d)", v, r.Offset)
			}
			if a, ok := acked[v]; ok {
				if a.partition != r.Partition || a.offset != r.Offset {
					t.Fatalf("record %s acknowledged at %d/%d, read at %d/%d", v, a.partition, a.offset, r.Partition, r.Offset)
				}
				found++
			}
		}
	}
	t.Logf("all %d acknowledged records read back", len(acked))
}

// TestBenchKafkaReadsEveryRecordBack: `bench --protocol kafka` produces
// through franz-go and reads every record back, with a consumer of every
// partition (the default) and with a Fetch per partition.
func TestBenchKafkaReadsEveryRecordBack(t *testing.T) {
	_, base, kafkaAddr := kafkaAgent(t)
	for _, read := range []string{"consumer", "fetch"} {
		out, errOut, code := runBinary(t, cliEnv(t), nil, "bench", "--server", base, "--protocol", "kafka", "--kafka-server", kafkaAddr,
			"--kafka-read", read, "--topic", "kb-"+read, "--partitions", "4", "--records", "6000", "--batch", "500", "--concurrency", "4", "-o", "json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", read, code, errOut)
		}
		var res struct {
			Records  int64  `json:"records"`
			Consumed int64  `json:"consumed_records"`
			Source   string `json:"consume_source"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s: %v: %s", read, err, out)
		}
		if res.Records != 6000 || res.Consumed != 6000 {
			t.Fatalf("%s: produced %d, read back %d records, want 6000 and 6000", read, res.Records, res.Consumed)
		}
		if want := map[string]string{"consumer": "franz-go consumer", "fetch": "a Kafka Fetch per partition"}[read]; !strings.Contains(res.Source, want) {
			t.Fatalf("%s: consume source %q", read, res.Source)
		}
	}
}
