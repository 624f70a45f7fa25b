package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

// The gRPC side of `streamhouse bench` (--protocol grpc): the Go client's
// idempotent producer (batching per partition, sent straight to each
// partition's leader) and its Fetch long-poll.

func (b *benchCmd) dialGRPC(ctx context.Context) (*client.Client, error) {
	var addrs []string
	for _, a := range strings.Split(b.GRPCServer, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("--grpc-server needs at least one host:port")
	}
	opts, err := b.clientOptions(b.https())
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, addrs, opts...)
}

func (b *benchCmd) produceGRPC(ctx context.Context, c *client.Client) (benchResult, error) {
	res := benchResult{RecordSize: b.RecordSize, Partitions: b.Partitions, Concurrency: b.Concurrency, Batch: b.Batch, TargetRate: b.Rate}
	p, err := c.NewProducer(ctx, client.ProducerConfig{Linger: time.Millisecond})
	if err != nil {
		return res, err
	}
	defer func() { _ = p.Close(context.Background()) }()
	value := []byte(strings.Repeat("x", b.RecordSize))
	var (
		next     atomic.Int64
		errs     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		deadline time.Time
		seq      atomic.Int64
	)
	start := time.Now()
	if b.Duration > 0 {
		deadline = start.Add(b.Duration)
	}
	var interval time.Duration
	if b.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(b.Batch) / float64(b.Rate))
	}
	tailCtx, stopTail := context.WithCancel(ctx)
	e2e := make(chan []time.Duration, 1)
	go func() { e2e <- b.tailGRPC(tailCtx, c) }()
	for w := 0; w < b.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var local []time.Duration
			recs := make([]client.Record, b.Batch)
			for {
				if b.Duration > 0 {
					if time.Now().After(deadline) {
						break
					}
				} else if next.Add(int64(b.Batch)) > b.Records+int64(b.Batch)-1 {
					break
				}
				k := seq.Add(1) - 1
				intended := time.Now()
				if interval > 0 {
					intended = start.Add(time.Duration(k) * interval)
					if d := time.Until(intended); d > 0 {
						time.Sleep(d) // the fixed-rate schedule, not synchronisation
					}
				}
				part := int32((int(k) + w) % int(b.Partitions))
				for i := range recs {
					recs[i] = client.Record{Value: value, Timestamp: intended.UnixMilli()}.ToPartition(part)
				}
				if _, err := p.Produce(ctx, b.Topic, recs...); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(intended))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	stopTail()
	tl := <-e2e
	res.E2EP50Ms, res.E2EP99Ms = pct(tl, 0.50), pct(tl, 0.99)
	res.Records = int64(len(lat)) * int64(b.Batch)
	res.Errors = errs.Load()
	res.Seconds = el.Seconds()
	res.RecordsPerSec = float64(res.Records) / el.Seconds()
	res.MiBPerSec = res.RecordsPerSec * float64(b.RecordSize) / (1 << 20)
	res.AckP50Ms, res.AckP99Ms, res.AckP999Ms = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
	if res.Records == 0 {
		return res, fmt.Errorf("no produce request succeeded (%d errors)", res.Errors)
	}
	return res, nil
}

func (b *benchCmd) tailGRPC(ctx context.Context, c *client.Client) []time.Duration {
	var out []time.Duration
	off := client.OffsetLatest
	for ctx.Err() == nil {
		r, err := c.Fetch(ctx, client.FetchRequest{Topic: b.Topic, Partition: 0, Offset: off, MaxRecords: 1000, MaxWait: time.Second})
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

func (b *benchCmd) consumeGRPC(ctx context.Context, c *client.Client, res *benchResult) {
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := int32(0); p < b.Partitions; p++ {
		wg.Add(1)
		go func(p int32) {
			defer wg.Done()
			off := client.OffsetEarliest
			for {
				r, err := c.Fetch(ctx, client.FetchRequest{Topic: b.Topic, Partition: p, Offset: off, MaxRecords: 5000, MaxBytes: 4 << 20})
				if err != nil || (len(r.Records) == 0 && r.NextOffset >= r.HighWatermark) {
					return
				}
				total.Add(int64(len(r.Records)))
				if r.NextOffset >= r.HighWatermark {
					return
				}
				off = r.NextOffset
			}
		}(p)
	}
	wg.Wait()
	res.ConsumeRecsSec = float64(total.Load()) / time.Since(start).Seconds()
	if res.Records == 0 {
		res.Records = total.Load()
	}
	res.ConsumeSource = "earliest→end over gRPC (segments + WAL)"
}
