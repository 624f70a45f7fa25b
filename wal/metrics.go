package wal

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors of one WAL instance, registered on the
// Registerer from Options and unregistered by Close. A nil *metrics records
// nothing.
type metrics struct {
	reg         prometheus.Registerer
	collectors  []prometheus.Collector
	fsync       prometheus.Histogram
	appends     prometheus.Counter
	corruptions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, w *WAL) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		reg: reg,
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "streamhouse", Subsystem: "wal", Name: "fsync_duration_seconds",
			Help:    "Duration of WAL segment fsyncs (group commits, segment rolls, close).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}),
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamhouse", Subsystem: "wal", Name: "appends_total",
			Help: "Entries appended to the WAL (Append and AppendAsync).",
		}),
		corruptions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamhouse", Subsystem: "wal", Name: "corruptions_total",
			Help: "Torn segment tails found and repaired when opening the WAL.",
		}),
	}
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamhouse", Subsystem: "wal", Name: "entries",
		Help: "Entries retained in the WAL.",
	}, func() float64 { return float64(w.entries.Load()) })
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamhouse", Subsystem: "wal", Name: "bytes",
		Help: "Bytes of WAL segment files retained.",
	}, func() float64 { return float64(w.bytes.Load()) })
	for _, c := range []prometheus.Collector{entries, bytes, m.fsync, m.appends, m.corruptions} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.Join(errors.New("wal: metrics already registered (one WAL per registry)"), err)
			}
			return nil, err
		}
		m.collectors = append(m.collectors, c)
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.collectors = nil
}

func (m *metrics) observeFsync(d time.Duration) {
	if m != nil {
		m.fsync.Observe(d.Seconds())
	}
}

func (m *metrics) appended(n int) {
	if m != nil {
		m.appends.Add(float64(n))
	}
}

func (m *metrics) repaired(n int) {
	if m != nil {
		m.corruptions.Add(float64(n))
	}
}
