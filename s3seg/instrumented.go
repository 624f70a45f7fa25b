package s3seg

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation label values of the object store metrics.
const (
	OpPut      = "put"
	OpGet      = "get"
	OpGetRange = "get_range"
	OpHead     = "head"
	OpDelete   = "delete"
	OpList     = "list"
)

// storeMetrics are the collectors of one Instrumented store.
type storeMetrics struct {
	duration *prometheus.HistogramVec // operation
	requests *prometheus.CounterVec   // operation, result
	bytes    *prometheus.CounterVec   // operation, direction
}

// instrumented decorates an ObjectStore with request metrics.
type instrumented struct {
	next ObjectStore
	m    storeMetrics
}

// Instrumented wraps store so every request is measured:
//
//	streamhouse_s3_request_duration_seconds{backend,operation}    histogram
//	streamhouse_s3_requests_total{backend,operation,result}       result = ok | error
//	streamhouse_s3_bytes_total{backend,operation,direction}       direction = upload | download
//
// operation is put, get, get_range, head, delete or list (Check is not
// measured). backend ("local", "s3", ...) is a constant label, so several
// stores can share one registry. The collectors are created per call and
// registered with reg; if reg already holds identical collectors (same
// backend) they are reused. A nil reg registers nothing. Registration
// conflicts of any other kind panic, like prometheus.MustRegister.
func Instrumented(store ObjectStore, reg prometheus.Registerer, backend string) ObjectStore {
	labels := prometheus.Labels{"backend": backend}
	m := storeMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "streamhouse_s3_request_duration_seconds",
			Help:        "Latency of object store requests by operation.",
			ConstLabels: labels,
			// 1 ms .. ~16 s: local disk to slow S3.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"operation"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "streamhouse_s3_requests_total",
			Help:        "Object store requests by operation and result (ok or error).",
			ConstLabels: labels,
		}, []string{"operation", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "streamhouse_s3_bytes_total",
			Help:        "Object payload bytes transferred by operation and direction (upload or download).",
			ConstLabels: labels,
		}, []string{"operation", "direction"}),
	}
	m.duration = register(reg, m.duration)
	m.requests = register(reg, m.requests)
	m.bytes = register(reg, m.bytes)
	// Create every series up front so dashboards and rate() see zeros
	// instead of missing series.
	for _, op := range []string{OpPut, OpGet, OpGetRange, OpHead, OpDelete, OpList} {
		m.duration.WithLabelValues(op)
		m.requests.WithLabelValues(op, "ok")
		m.requests.WithLabelValues(op, "error")
	}
	m.bytes.WithLabelValues(OpPut, "upload")
	m.bytes.WithLabelValues(OpGet, "download")
	m.bytes.WithLabelValues(OpGetRange, "download")
	return &instrumented{next: store, m: m}
}

// register registers c with reg, returning the already registered collector
// when an identical one exists.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (s *instrumented) observe(op string, start time.Time, err error) {
	s.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.requests.WithLabelValues(op, result).Inc()
}

func (s *instrumented) Put(ctx context.Context, key string, data []byte) error {
	start := time.Now()
	err := s.next.Put(ctx, key, data)
	s.observe(OpPut, start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(OpPut, "upload").Add(float64(len(data)))
	}
	return err
}

func (s *instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	b, err := s.next.Get(ctx, key)
	s.observe(OpGet, start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(OpGet, "download").Add(float64(len(b)))
	}
	return b, err
}

func (s *instrumented) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	start := time.Now()
	b, err := s.next.GetRange(ctx, key, off, n)
	s.observe(OpGetRange, start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(OpGetRange, "download").Add(float64(len(b)))
	}
	return b, err
}

func (s *instrumented) Head(ctx context.Context, key string) (ObjectInfo, error) {
	start := time.Now()
	info, err := s.next.Head(ctx, key)
	s.observe(OpHead, start, err)
	return info, err
}

func (s *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.next.Delete(ctx, key)
	s.observe(OpDelete, start, err)
	return err
}

func (s *instrumented) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	start := time.Now()
	infos, err := s.next.List(ctx, prefix)
	s.observe(OpList, start, err)
	return infos, err
}

func (s *instrumented) Check(ctx context.Context) error { return s.next.Check(ctx) }
