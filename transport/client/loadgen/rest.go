package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// REST is the REST API as a Target: worker w posts its batches to
// Servers[w % len(Servers)] (POST /api/v1/produce/batch, resent after
// 10 ms while the agent answers 503 "unavailable"); reads go to Servers[0]
// (GET /api/v1/consume).
type REST struct {
	Client  *http.Client
	Servers []string // base URLs, at least one
}

var _ Target = REST{}

// restBatch is the produce/batch request body.
type restBatch struct {
	Records []restRecord `json:"records"`
	Topic   string       `json:"topic"`
}

type restRecord struct {
	Partition int32  `json:"partition"`
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

// overloadBackoff is the wait before a batch refused with 503 is resent.
const overloadBackoff = 10 * time.Millisecond

// Send posts recs as one batch.
func (r REST) Send(ctx context.Context, worker int, topic string, recs []client.Record) (retries int64, err error) {
	b := restBatch{Topic: topic, Records: make([]restRecord, len(recs))}
	for i, rec := range recs {
		b.Records[i] = restRecord{Partition: rec.Partition, Timestamp: rec.Timestamp, Value: string(rec.Value)}
	}
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	url := r.Servers[worker%len(r.Servers)] + "/api/v1/produce/batch"
	for {
		status, code, err := r.post(ctx, url, body)
		switch {
		case err != nil:
			return retries, err
		case status == http.StatusServiceUnavailable && code == client.KindUnavailable:
			// The agent's own answer: not written, safe to resend.
			retries++
			if err := sleep(ctx, overloadBackoff); err != nil {
				return retries, err
			}
		case status >= 500:
			// A 5xx without the agent's "unavailable" (a proxy's 503, a
			// 500, a 504) may come after the batch was written.
			return retries, fmt.Errorf("produce: outcome unknown: %s (%q)", http.StatusText(status), code)
		case status != http.StatusOK:
			return retries, fmt.Errorf("produce: %s (%q)", http.StatusText(status), code)
		default:
			return retries, nil
		}
	}
}

// post sends one batch and returns the answer's status and, for an error,
// its JSON error code ("" when the body is not the agent's error).
func (r REST) post(ctx context.Context, url string, body []byte) (status int, code string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) == nil {
			code = e.Error.Code
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, code, nil
}

// Fetch reads one page of a partition; only the records' timestamps are
// decoded.
func (r REST) Fetch(ctx context.Context, fr client.FetchRequest) (client.FetchResult, error) {
	url := fmt.Sprintf("%s/api/v1/consume?topic=%s&partition=%d&offset=%s&max_records=%d",
		r.Servers[0], fr.Topic, fr.Partition, restOffset(fr.Offset), fr.MaxRecords)
	if fr.MaxBytes > 0 {
		url += fmt.Sprintf("&max_bytes=%d", fr.MaxBytes)
	}
	if fr.MaxWait > 0 {
		url += fmt.Sprintf("&wait_ms=%d", fr.MaxWait.Milliseconds())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return client.FetchResult{}, err
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return client.FetchResult{}, err
	}
	defer resp.Body.Close()
	var page struct {
		Records []struct {
			Timestamp int64 `json:"timestamp"`
		} `json:"records"`
		Next int64 `json:"next_offset"`
		High int64 `json:"high_watermark"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return client.FetchResult{}, err
	}
	out := client.FetchResult{Records: make([]client.Record, len(page.Records)), NextOffset: page.Next, HighWatermark: page.High}
	for i, rec := range page.Records {
		out.Records[i].Timestamp = rec.Timestamp
	}
	return out, nil
}

// restOffset is the consume endpoint's offset parameter.
func restOffset(off int64) string {
	switch off {
	case client.OffsetEarliest:
		return "earliest"
	case client.OffsetLatest:
		return "latest"
	}
	return strconv.FormatInt(off, 10)
}

// EnsureTopic creates the topic unless it exists and returns its partition
// count (partitions when the agent does not say).
func (r REST) EnsureTopic(ctx context.Context, topic string, partitions int32) (int32, error) {
	base := r.Servers[0]
	body, _ := json.Marshal(map[string]any{"name": topic, "partitions": partitions})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/topics", bytes.NewReader(body))
	resp, err := r.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the agent at %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		msg, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("create topic %q: %s: %s", topic, resp.Status, msg)
	}
	var t struct {
		Partitions int32 `json:"partitions"`
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/topics/"+topic, nil)
	if r2, err := r.Client.Do(req); err == nil {
		_ = json.NewDecoder(r2.Body).Decode(&t)
		r2.Body.Close()
		if t.Partitions > 0 {
			return t.Partitions, nil
		}
	}
	return partitions, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
