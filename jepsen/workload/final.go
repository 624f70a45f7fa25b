package workload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/history"
)

type consumeResp struct {
	Records []struct {
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Value     string `json:"value"`
	} `json:"records"`
	NextOffset    int64 `json:"next_offset"`
	HighWatermark int64 `json:"high_watermark"`
	LowWatermark  int64 `json:"low_watermark"`
}

// FinalResult summarises the final read.
type FinalResult struct {
	Converged bool            // every agent reported the same high watermarks
	Wait      time.Duration   // time until they did
	HW        map[int32]int64 // the high watermark read up to
	Complete  int             // complete partition reads
	Reads     int             // partition reads attempted
	Errors    []string
}

// FinalRead waits (up to timeout) until every agent is ready and reports
// the same high watermark for every partition, then reads every partition
// from its low watermark to that high watermark on every agent, recording
// each read.
func (w *Workload) FinalRead(ctx context.Context, timeout time.Duration) FinalResult {
	res := FinalResult{HW: map[int32]int64{}}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		views := map[int]map[int32][3]int64{}
		allReady := true
		for i := range w.c.Agents {
			if !w.c.Ready(i) {
				allReady = false
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			v, err := w.Partitions(qctx, i)
			cancel()
			if err == nil {
				views[i] = v
			}
		}
		same := allReady && len(views) == len(w.c.Agents)
		clear(res.HW)
		for _, v := range views {
			for p, s := range v {
				if hw, ok := res.HW[p]; ok && hw != s[1] {
					same = false
				}
				res.HW[p] = max(res.HW[p], s[1])
			}
		}
		if same && int32(len(res.HW)) == w.cfg.Partitions {
			res.Converged = true
			break
		}
		if time.Now().After(deadline) {
			res.Errors = append(res.Errors, fmt.Sprintf("agents did not converge within %v (ready: %v, views: %d)%s", timeout, allReady, len(views), w.notReady(ctx)))
			break
		}
		time.Sleep(250 * time.Millisecond) // polling the cluster, not synchronising a test
	}
	res.Wait = time.Since(start)
	proc := w.proc()
	for i, a := range w.c.Agents {
		for p := int32(0); p < w.cfg.Partitions; p++ {
			res.Reads++
			target := res.HW[p]
			inv := w.rec.Invoke(history.Op{Process: proc, F: history.FFinalRead, P: p, Node: a.ID})
			recs, lw, complete, err := w.readPartition(ctx, i, p, target, deadline.Add(30*time.Second))
			if err != nil && len(recs) == 0 {
				w.rec.Complete(inv, history.Fail, func(c *history.Op) { c.Err = err.Error() })
				res.Errors = append(res.Errors, fmt.Sprintf("final read of %d on %s: %v", p, a.ID, err))
				continue
			}
			if complete {
				res.Complete++
			} else if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("final read of %d on %s incomplete: %v", p, a.ID, err))
			}
			w.rec.Complete(inv, history.OK, func(c *history.Op) {
				c.Recs, c.LW, c.HW, c.Complete = recs, lw, target, complete
				if err != nil {
					c.Err = err.Error()
				}
			})
		}
	}
	return res
}

func (w *Workload) readPartition(ctx context.Context, i int, p int32, target int64, deadline time.Time) ([]history.Rec, int64, bool, error) {
	var recs []history.Rec
	next := "earliest"
	var lw int64
	first := true
	var lastErr error
	for time.Now().Before(deadline) {
		q := url.Values{"topic": {w.cfg.Topic}, "partition": {strconv.Itoa(int(p))}, "offset": {next}, "max_records": {"1000"}}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var r consumeResp
		err := w.c.GetJSON(qctx, i, "/api/v1/consume?"+q.Encode(), &r)
		cancel()
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if first {
			lw, first = r.LowWatermark, false
		}
		for _, rr := range r.Records {
			v, perr := strconv.ParseInt(rr.Value, 10, 64)
			if perr != nil {
				v = -1
			}
			recs = append(recs, history.Rec{P: p, O: rr.Offset, V: v})
		}
		if r.NextOffset >= target {
			return recs, lw, true, nil
		}
		cur, _ := strconv.ParseInt(next, 10, 64)
		if len(r.Records) == 0 && next != "earliest" && r.NextOffset <= cur {
			// At this agent's end, below the target.
			lastErr = fmt.Errorf("agent's log ends at %d, below %d", r.NextOffset, target)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		next = strconv.FormatInt(r.NextOffset, 10)
	}
	return recs, lw, false, lastErr
}

// notReady lists what /ready says on every agent that is not ready, so a
// run that does not converge names its reason.
func (w *Workload) notReady(ctx context.Context) string {
	out := ""
	for i := range w.c.Agents {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, _ := http.NewRequestWithContext(qctx, http.MethodGet, w.c.HTTPBase(i)+"/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				why = fmt.Sprintf("%d %s", resp.StatusCode, b)
			}
		}
		cancel()
		if why != "" {
			out += fmt.Sprintf("; agent %d: %s", i+1, why)
		}
	}
	return out
}
