package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
	"github.com/streamhouse/streamhouse/transport"
)

// DR drill variants that fault the restore itself or churn topics:
//
//   - s3-read-faults: the restore reads the bucket through an HTTP fault
//     proxy (s3segtest.FaultProxy, in front of the real MinIO) that fails a
//     share of object reads (500s and dropped connections). The checkpoint
//     lags (15 s), so most segments must be found by reading footers. The
//     checker's "lost at or below flushed" must stay 0: the restore retries
//     what is transient instead of turning it into a gap.
//   - topic-churn: while the load runs, topics are created, written,
//     sometimes flushed, and deleted, back to back. After the restore no
//     topic whose deletion a checkpoint covered may exist (a deletion after
//     the last checkpoint is beyond the recovery point and may come back).
//     The main workload runs at 10 records/s here (drWorkloadRate).
const (
	drS3ReadFaults = "s3-read-faults"
	drTopicChurn   = "topic-churn"
)

// s3ReadFailShare is the share of object reads the proxy fails: high
// enough that the S3 client's own 5 attempts (and Go's transparent retry of
// a dropped idle connection) are exhausted for some objects (0.75^5 ≈ 24 %
// per read), so only the restore's own retries keep them.
const s3ReadFailShare = 0.75

func drExtraEnv(moment string) []string {
	switch moment {
	case drS3ReadFaults:
		return []string{"CHECKPOINT_INTERVAL_MS=15000", "SEGMENT_MAX_AGE_MS=200"}
	case drTopicChurn:
		// Released objects are deleted every 10 s: at the disaster some
		// deleted topics' objects are gone, others still queued.
		return []string{"CHECKPOINT_INTERVAL_MS=500", "SEGMENT_MAX_AGE_MS=200", "RETENTION_CHECK_MS=10000"}
	}
	return nil
}

// drWorkloadRate is the workload's rate for a drill moment. topic-churn
// runs the main workload slowly (10 records/s at most): an agent flushes
// every partition it leads into one object, so under full load every
// object also holds live blocks and a deleted topic's objects never become
// unreferenced; slowly, many flushes hold churn topics alone, which are
// then queued for deletion when their topic is deleted (the objects the
// restore must not bring back).
func drWorkloadRate(moment string, rate float64) float64 {
	if moment == drTopicChurn {
		return min(rate, 10)
	}
	return rate
}

// drExtras runs the extra parts of a drill variant.
type drExtras struct {
	moment string
	log    *slog.Logger
	proxy  *s3segtest.FaultProxy
	churn  *topicChurn
	once   sync.Once
}

func startDRExtras(ctx context.Context, moment string, seed uint64, c *control.Cluster, log *slog.Logger) *drExtras {
	x := &drExtras{moment: moment, log: log}
	if moment == drTopicChurn {
		x.churn = &topicChurn{c: c, rng: rand.New(rand.NewPCG(seed, 0xc4)), deleted: map[string]uint64{}, stop: make(chan struct{}), log: log}
		x.churn.wg.Add(1)
		go x.churn.run(ctx)
	}
	return x
}

// atDisaster stops the churn (idempotent).
func (x *drExtras) atDisaster() {
	x.once.Do(func() {
		if x.churn != nil {
			close(x.churn.stop)
			x.churn.wg.Wait()
		}
	})
}

// beforeRestore points agent 0's restore at the fault proxy.
func (x *drExtras) beforeRestore(c *control.Cluster, seed uint64) error {
	if x.moment != drS3ReadFaults {
		return nil
	}
	p, err := s3segtest.NewFaultProxyOn(c.ServiceIP(), c.MinIO.Endpoint())
	if err != nil {
		return err
	}
	p.FailShare(s3ReadFailShare, seed)
	x.proxy = p
	c.SetEnv(0, "S3_ENDPOINT="+p.URL, "RESTORE_READ_RETRY_MS=60000")
	return nil
}

// afterRestore points agent 0 back at MinIO itself.
func (x *drExtras) afterRestore(c *control.Cluster, rep *DRReport) {
	if x.proxy == nil {
		return
	}
	rep.S3ReadsFailed = x.proxy.Failed()
	_ = x.proxy.Close()
	c.SetEnv(0, "S3_ENDPOINT="+c.MinIO.Endpoint())
	x.log.Info("restore read through the fault proxy", "reads_failed", rep.S3ReadsFailed)
}

// check counts deleted topics that came back, once the cluster is restored.
func (x *drExtras) check(ctx context.Context, c *control.Cluster, checkpointIndex uint64, rep *DRReport) error {
	if x.churn == nil {
		return nil
	}
	var resp transport.TopicsResponse
	if err := c.GetJSON(ctx, 0, "/api/v1/topics", &resp); err != nil {
		return fmt.Errorf("list topics after the restore: %w", err)
	}
	live := map[string]bool{}
	for _, t := range resp.Topics {
		live[t.Name] = true
	}
	rep.TopicsDeleted = len(x.churn.deleted)
	for name, idx := range x.churn.deleted {
		switch {
		case !live[name]:
		case idx <= checkpointIndex:
			rep.ResurrectedTopics = append(rep.ResurrectedTopics, name)
		default:
			rep.DeletedAfterCheckpointBack++
		}
	}
	sort.Strings(rep.ResurrectedTopics)
	return nil
}

// latestCheckpoint reads the Raft index of the newest checkpoint from the
// guard row (plain SQL: the harness must not migrate the agents' schema).
func latestCheckpoint(ctx context.Context, c *control.Cluster) (uint64, error) {
	conn, err := pgx.Connect(ctx, c.PGURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var idx int64
	if err := conn.QueryRow(ctx, "SELECT raft_index FROM streamhouse_checkpoint_guard").Scan(&idx); err != nil {
		return 0, err
	}
	return uint64(idx), nil
}

// topicChurn creates, writes and deletes topics until stopped. deleted
// maps each topic whose deletion was acknowledged to a Raft commit index
// read after the acknowledgement (at or above the deletion's).
type topicChurn struct {
	c       *control.Cluster
	rng     *rand.Rand
	log     *slog.Logger
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	deleted map[string]uint64
}

func (t *topicChurn) run(ctx context.Context) {
	defer t.wg.Done()
	for i := 0; ; i++ {
		name := fmt.Sprintf("churn-%d", i)
		agent := t.rng.IntN(len(t.c.Agents))
		t.cycle(ctx, agent, name)
		select {
		case <-t.stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(100+t.rng.IntN(400)) * time.Millisecond):
		}
	}
}

// cycle creates name on agent, writes to it, waits a moment (a flush may
// happen, or not) and deletes it.
func (t *topicChurn) cycle(ctx context.Context, agent int, name string) {
	base := t.c.HTTPBase(agent)
	if code := t.do(ctx, "POST", base+"/api/v1/topics", map[string]any{"name": name, "partitions": 1}); code != 201 {
		return
	}
	recs := make([]map[string]any, 20)
	for j := range recs {
		recs[j] = map[string]any{"value": fmt.Sprintf("%s-%d", name, j)}
	}
	t.do(ctx, "POST", base+"/api/v1/produce/batch", map[string]any{"topic": name, "records": recs})
	time.Sleep(time.Duration(100+t.rng.IntN(900)) * time.Millisecond) // mostly past a flush
	if code := t.do(ctx, "DELETE", base+"/api/v1/topics/"+name, nil); code != 204 && code != 200 {
		return
	}
	// The highest commit index any agent reports is at or above the
	// deletion's (the agent that answered may be a follower that lags).
	var idx uint64
	for i := range t.c.Agents {
		if st, err := t.c.Status(i); err == nil {
			idx = max(idx, st.CommitIndex)
		}
	}
	if idx == 0 {
		return // the deletion's index is unknown: not checked
	}
	t.mu.Lock()
	t.deleted[name] = idx
	t.mu.Unlock()
}

func (t *topicChurn) do(ctx context.Context, method, url string, body any) int {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, url, rd)
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// countResurrected makes every deleted topic that came back an anomaly.
func (r *RunResult) countResurrected() {
	if n := len(r.DR.ResurrectedTopics); n > 0 {
		r.Anomalies += n
		r.Valid = false
		counts := map[string]int{"resurrected-topic": n}
		for k, v := range r.Counts {
			counts[k] = v // the checker's map is shared with r.Checker: copy
		}
		r.Counts = counts
	}
}
