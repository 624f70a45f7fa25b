package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/streamhouse/streamhouse/fsm"
)

// Per-key quotas, the way Kafka client quotas work: each API key has a
// token bucket per quota on each agent (not cluster-wide, like Kafka's
// per-broker quotas). A bucket holds one second of its rate (at least 1).
// A request is admitted when its bucket holds the request's size (or is
// full, for a request larger than the bucket); its size is then taken,
// and a request larger than the bucket leaves it in debt, which throttles
// the next requests until the rate has paid it back. Fetch sizes are only
// known after the read: a fetch is admitted when the bucket is not in
// debt, and the bytes it returned are charged afterwards, so an over-quota
// consumer's NEXT fetch is throttled (Kafka does the same), never the one
// already read.

// QuotaKind names one per-key quota. The names are Kafka's client-quota
// names; they are the values of streamhouse_quota_throttled_total{quota}
// and the keys of the quota field of API_KEYS_FILE.
type QuotaKind int

const (
	// QuotaProduce: record bytes produced per second.
	QuotaProduce QuotaKind = iota
	// QuotaFetch: record bytes returned by fetches per second.
	QuotaFetch
	// QuotaMutations: partitions created or deleted, plus consumer groups
	// deleted, per second.
	QuotaMutations
	numQuotaKinds
)

var quotaNames = [numQuotaKinds]string{"producer_byte_rate", "consumer_byte_rate", "controller_mutation_rate"}

func (q QuotaKind) String() string {
	if q < 0 || q >= numQuotaKinds {
		return fmt.Sprintf("quota(%d)", int(q))
	}
	return quotaNames[q]
}

// ParseQuotaKind returns the quota of a name (producer_byte_rate, ...).
func ParseQuotaKind(s string) (QuotaKind, error) {
	for i, n := range quotaNames {
		if s == n {
			return QuotaKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown quota %q (use producer_byte_rate, consumer_byte_rate or controller_mutation_rate)", s)
}

// MaxQuotaRate bounds a quota rate (a bucket holds one second of it).
const MaxQuotaRate = 1 << 50

// ValidateQuotaRate checks a per-second rate: finite, 0 (unlimited) up to
// MaxQuotaRate.
func ValidateQuotaRate(v float64) error {
	if math.IsNaN(v) || v < 0 || v > MaxQuotaRate {
		return fmt.Errorf("quota rate %v: use a number from 0 (unlimited) to %d", v, int64(MaxQuotaRate))
	}
	return nil
}

// QuotaRates holds one per-second rate per QuotaKind; 0 = unlimited.
type QuotaRates [numQuotaKinds]float64

// ErrQuotaExceeded: the caller's key is over one of its quotas; nothing
// was done. REST 429 quota_exceeded with Retry-After; gRPC
// RESOURCE_EXHAUSTED with ErrorDetail.code quota_exceeded.
var ErrQuotaExceeded = errors.New("quota exceeded")

// QuotaError is the ErrQuotaExceeded a throttled request gets.
type QuotaError struct {
	Key        string
	Quota      QuotaKind
	Rate       float64
	RetryAfter time.Duration
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("%v: API key %q is over its %s quota (%g per second on this agent); nothing was done, retry after %v",
		ErrQuotaExceeded, e.Key, e.Quota, e.Rate, e.RetryAfter.Round(time.Millisecond))
}

func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// Quotas holds the buckets of the keys in force. A nil *Quotas, a request
// without a principal (no API keys) and a key without a limit are never
// throttled. Safe for concurrent use.
type Quotas struct {
	defaults  QuotaRates
	now       func() time.Time
	throttled *prometheus.CounterVec

	mu   sync.Mutex
	keys map[string]*keyBuckets // by key name; only keys in force (SetKeys)
}

// keyBuckets are one key's buckets; nil entry = unlimited.
type keyBuckets struct {
	mu    sync.Mutex // makes check-then-charge atomic per key
	rates QuotaRates
	lim   [numQuotaKinds]*rate.Limiter
}

// NewQuotas returns quotas whose keys get defaults unless their line in
// the keys file overrides them. It registers
// streamhouse_quota_throttled_total{quota} with reg (nil = unregistered),
// at 0 for every quota. now is the clock (nil = time.Now).
func NewQuotas(defaults QuotaRates, reg prometheus.Registerer, now func() time.Time) *Quotas {
	if now == nil {
		now = time.Now
	}
	q := &Quotas{defaults: defaults, now: now, keys: map[string]*keyBuckets{},
		throttled: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "streamhouse_quota_throttled_total",
			Help: "Requests refused because their API key was over a per-key quota, by quota.",
		}, []string{"quota"})}
	for _, n := range quotaNames {
		q.throttled.WithLabelValues(n)
	}
	return q
}

// SetKeys makes keys the set in force: buckets of other keys are dropped,
// a key whose rates did not change keeps its bucket, others start full.
func (q *Quotas) SetKeys(keys []APIKey) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	next := make(map[string]*keyBuckets, len(keys))
	for i := range keys {
		rates := q.ratesOf(&keys[i])
		if old, ok := q.keys[keys[i].Name]; ok && old.rates == rates {
			next[keys[i].Name] = old
			continue
		}
		next[keys[i].Name] = newKeyBuckets(rates)
	}
	q.keys = next
}

// ratesOf is the key's rates: the defaults with the key's overrides.
func (q *Quotas) ratesOf(k *APIKey) QuotaRates {
	r := q.defaults
	for kind, v := range k.Quotas {
		r[kind] = v
	}
	return r
}

func newKeyBuckets(rates QuotaRates) *keyBuckets {
	b := &keyBuckets{rates: rates}
	for i, r := range rates {
		if r > 0 {
			b.lim[i] = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		}
	}
	return b
}

// bucket returns the caller's bucket for kind, or nil (not limited).
func (q *Quotas) bucket(ctx context.Context, kind QuotaKind) (*keyBuckets, string) {
	if q == nil {
		return nil, ""
	}
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return nil, ""
	}
	q.mu.Lock()
	b := q.keys[p.Key.Name]
	q.mu.Unlock()
	if b == nil || b.lim[kind] == nil {
		return nil, ""
	}
	return b, p.Key.Name
}

// Take admits a request of n units of kind for the caller's key and
// charges them, or returns a *QuotaError (counted) and charges nothing.
// n = 0 only checks that the bucket is not in debt (fetch: see Charge).
func (q *Quotas) Take(ctx context.Context, kind QuotaKind, n int64) error {
	b, name := q.bucket(ctx, kind)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	lim, now := b.lim[kind], q.now()
	need := float64(min(n, int64(lim.Burst())))
	if have := lim.TokensAt(now); have < need {
		q.throttled.WithLabelValues(kind.String()).Inc()
		wait := time.Duration((need - have) / float64(lim.Limit()) * float64(time.Second))
		return &QuotaError{Key: name, Quota: kind, Rate: b.rates[kind], RetryAfter: max(wait, time.Millisecond)}
	}
	charge(lim, now, n)
	return nil
}

// Charge takes n units of kind from the caller's bucket without a check,
// possibly leaving it in debt: for work whose size is known only after it
// was done (the bytes a fetch returned).
func (q *Quotas) Charge(ctx context.Context, kind QuotaKind, n int64) {
	b, _ := q.bucket(ctx, kind)
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	charge(b.lim[kind], q.now(), n)
}

// charge takes n tokens at now, possibly leaving the bucket in debt.
// ReserveN refuses more than a burst at once, so the burst is raised for
// the one reservation (the debt stays when it is lowered again).
func charge(lim *rate.Limiter, now time.Time, n int64) {
	if burst := lim.Burst(); n > int64(burst) {
		lim.SetBurstAt(now, int(n))
		defer lim.SetBurstAt(now, burst)
	}
	lim.ReserveN(now, int(n))
}

// parseKeyQuotas parses the quotas field of a keys-file line:
// name=rate[,name=rate...].
func parseKeyQuotas(s string) (map[QuotaKind]float64, error) {
	out := map[QuotaKind]float64{}
	for _, item := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("quotas field: expected name=rate pairs separated by ',' (e.g. producer_byte_rate=1048576), got %q", clip(item))
		}
		kind, err := ParseQuotaKind(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("quotas field: %w", err)
		}
		if _, dup := out[kind]; dup {
			return nil, fmt.Errorf("quotas field: %s is set twice", kind)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("quotas field: %s: %q is not a number", kind, clip(val))
		}
		if err := ValidateQuotaRate(v); err != nil {
			return nil, fmt.Errorf("quotas field: %s: %w", kind, err)
		}
		if v == 0 {
			v = 0 // not -0
		}
		out[kind] = v
	}
	return out, nil
}

// formatKeyQuotas is the inverse of parseKeyQuotas (in QuotaKind order).
func formatKeyQuotas(m map[QuotaKind]float64) string {
	var parts []string
	for kind := range numQuotaKinds {
		if v, ok := m[kind]; ok {
			parts = append(parts, kind.String()+"="+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}

// ProduceBytes is what a produce request charges: the records' sizes.
func ProduceBytes(recs []fsm.ProduceRecord) int64 {
	var n int64
	for i := range recs {
		n += int64(recs[i].Record.Size())
	}
	return n
}

// FetchedBytes is what a fetch charges: the returned records' sizes.
func FetchedBytes(recs []fsm.FetchedRecord) int64 {
	var n int64
	for i := range recs {
		n += int64(recs[i].Record.Size())
	}
	return n
}

// TopicMutations is what deleting a topic charges: its partitions (1 when
// it cannot be read; the delete then fails on its own).
func TopicMutations(topics Topics, name string) int64 {
	if t, err := topics.Topic(name); err == nil && t.Partitions > 0 {
		return int64(t.Partitions)
	}
	return 1
}
