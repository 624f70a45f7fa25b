package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a settable clock for Quotas.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func ctxOf(k APIKey) context.Context         { return WithPrincipal(context.Background(), &Principal{Key: k}) }
func quotaErr(t *testing.T, err error) *QuotaError {
	t.Helper()
	var qe *QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("want a quota error, got %v", err)
	}
	return qe
}

func TestQuotaTakeAdmitsWithinRateAndThrottles(t *testing.T) {
	clk := newFakeClock()
	reg := prometheus.NewRegistry()
	q := NewQuotas(QuotaRates{QuotaProduce: 1000}, reg, clk.now)
	a := APIKey{Name: "a"}
	q.SetKeys([]APIKey{a})
	ctx := ctxOf(a)
	if err := q.Take(ctx, QuotaProduce, 600); err != nil {
		t.Fatalf("first 600 of a 1000/s bucket: %v", err)
	}
	qe := quotaErr(t, q.Take(ctx, QuotaProduce, 600)) // 400 left
	if qe.Key != "a" || qe.Quota != QuotaProduce || qe.RetryAfter != 200*time.Millisecond {
		t.Fatalf("quota error %+v; want key a, producer_byte_rate, retry after 200ms", qe)
	}
	if got := testutil.ToFloat64(q.throttled.WithLabelValues("producer_byte_rate")); got != 1 {
		t.Fatalf("throttled counter = %v, want 1", got)
	}
	clk.advance(200 * time.Millisecond)
	if err := q.Take(ctx, QuotaProduce, 600); err != nil {
		t.Fatalf("after the retry time: %v", err)
	}
	// Unlimited quotas and callers without a key are never throttled.
	if err := q.Take(ctx, QuotaFetch, 1<<40); err != nil {
		t.Fatalf("fetch is unlimited: %v", err)
	}
	if err := q.Take(context.Background(), QuotaProduce, 1<<40); err != nil {
		t.Fatalf("a call without a key: %v", err)
	}
	var nilQ *Quotas
	if err := nilQ.Take(ctx, QuotaProduce, 1<<40); err != nil {
		t.Fatalf("nil Quotas: %v", err)
	}
}

// TestQuotaOversizedRequestGoesIntoDebt: a request larger than the bucket
// is admitted when the bucket is full, then throttles the next ones until
// the debt is repaid (Kafka's behaviour), instead of being refused forever.
func TestQuotaOversizedRequestGoesIntoDebt(t *testing.T) {
	clk := newFakeClock()
	q := NewQuotas(QuotaRates{QuotaProduce: 100}, nil, clk.now)
	a := APIKey{Name: "a"}
	q.SetKeys([]APIKey{a})
	ctx := ctxOf(a)
	if err := q.Take(ctx, QuotaProduce, 1000); err != nil {
		t.Fatalf("a 1000-byte request into a full 100-byte bucket: %v", err)
	}
	// Debt 900 + need 1 → 901 bytes at 100/s.
	if qe := quotaErr(t, q.Take(ctx, QuotaProduce, 1)); qe.RetryAfter != 9010*time.Millisecond {
		t.Fatalf("retry after %v, want 9.01s", qe.RetryAfter)
	}
	clk.advance(10 * time.Second)
	if err := q.Take(ctx, QuotaProduce, 100); err != nil {
		t.Fatalf("after the debt was repaid: %v", err)
	}
}

// TestQuotaFetchChargedAfter: a fetch is admitted unless the key is in
// debt; the bytes it returned throttle the next one.
func TestQuotaFetchChargedAfter(t *testing.T) {
	clk := newFakeClock()
	q := NewQuotas(QuotaRates{QuotaFetch: 100}, nil, clk.now)
	a := APIKey{Name: "a"}
	q.SetKeys([]APIKey{a})
	ctx := ctxOf(a)
	if err := q.Take(ctx, QuotaFetch, 0); err != nil {
		t.Fatal(err)
	}
	q.Charge(ctx, QuotaFetch, 300)
	if qe := quotaErr(t, q.Take(ctx, QuotaFetch, 0)); qe.RetryAfter != 2*time.Second {
		t.Fatalf("retry after %v, want 2s (a 200-byte debt at 100/s)", qe.RetryAfter)
	}
	clk.advance(2 * time.Second)
	if err := q.Take(ctx, QuotaFetch, 0); err != nil {
		t.Fatalf("debt repaid: %v", err)
	}
}

// TestQuotaKeysAreIsolatedAndOverridden: key a's use does not throttle key
// b, and a key's own rates override the defaults (0 = unlimited).
func TestQuotaKeysAreIsolatedAndOverridden(t *testing.T) {
	clk := newFakeClock()
	q := NewQuotas(QuotaRates{QuotaMutations: 2}, nil, clk.now)
	a, b := APIKey{Name: "a"}, APIKey{Name: "b", Quotas: map[QuotaKind]float64{QuotaMutations: 0}}
	c := APIKey{Name: "c", Quotas: map[QuotaKind]float64{QuotaMutations: 10}}
	q.SetKeys([]APIKey{a, b, c})
	if err := q.Take(ctxOf(a), QuotaMutations, 2); err != nil {
		t.Fatal(err)
	}
	quotaErr(t, q.Take(ctxOf(a), QuotaMutations, 1))
	if err := q.Take(ctxOf(b), QuotaMutations, 1000); err != nil {
		t.Fatalf("b overrides the quota to unlimited: %v", err)
	}
	if err := q.Take(ctxOf(c), QuotaMutations, 10); err != nil {
		t.Fatalf("c's own rate is 10/s: %v", err)
	}
}

// TestQuotaSetKeysDropsRevokedKeys: the bucket map holds the keys in force
// only; a revoked key's bucket is gone (and its calls are not throttled
// here: authentication refuses them), a kept key keeps its state.
func TestQuotaSetKeysDropsRevokedKeys(t *testing.T) {
	clk := newFakeClock()
	q := NewQuotas(QuotaRates{QuotaProduce: 10}, nil, clk.now)
	a, b := APIKey{Name: "a"}, APIKey{Name: "b"}
	q.SetKeys([]APIKey{a, b})
	if err := q.Take(ctxOf(a), QuotaProduce, 10); err != nil {
		t.Fatal(err)
	}
	q.SetKeys([]APIKey{a})
	if len(q.keys) != 1 || q.keys["b"] != nil {
		t.Fatalf("buckets after revoking b: %v", q.keys)
	}
	quotaErr(t, q.Take(ctxOf(a), QuotaProduce, 1)) // a's empty bucket survived the reload
	q.SetKeys(nil)
	if len(q.keys) != 0 {
		t.Fatalf("buckets after revoking every key: %d", len(q.keys))
	}
}

func TestQuotaThrottledCounterStartsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewQuotas(QuotaRates{}, reg, nil)
	const want = `
# HELP streamhouse_quota_throttled_total Requests refused because their API key was over a per-key quota, by quota.
# TYPE streamhouse_quota_throttled_total counter
streamhouse_quota_throttled_total{quota="consumer_byte_rate"} 0
streamhouse_quota_throttled_total{quota="controller_mutation_rate"} 0
streamhouse_quota_throttled_total{quota="producer_byte_rate"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "streamhouse_quota_throttled_total"); err != nil {
		t.Fatal(err)
	}
}

// TestParseAPIKeysQuotaField: the optional fifth field; old 4-field lines
// stay valid and mean "the defaults".
func TestParseAPIKeysQuotaField(t *testing.T) {
	h := strings.Repeat("ab", 32)
	keys, err := ParseAPIKeys(strings.NewReader(
		"old:read:*:" + h + "\n" +
			"new:write:orders:" + strings.Repeat("cd", 32) + ": producer_byte_rate=1048576, controller_mutation_rate=0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if keys[0].Quotas != nil {
		t.Fatalf("a 4-field line has quotas %v", keys[0].Quotas)
	}
	want := map[QuotaKind]float64{QuotaProduce: 1048576, QuotaMutations: 0.5}
	if len(keys[1].Quotas) != 2 || keys[1].Quotas[QuotaProduce] != want[QuotaProduce] || keys[1].Quotas[QuotaMutations] != want[QuotaMutations] {
		t.Fatalf("quotas %v, want %v", keys[1].Quotas, want)
	}
	if got := keys[1].Line(); !strings.HasSuffix(got, ":producer_byte_rate=1048576,controller_mutation_rate=0.5") {
		t.Fatalf("Line() = %q", got)
	}
	for _, bad := range []string{
		"producer_byte_rate", "bogus_rate=1", "producer_byte_rate=-1", "producer_byte_rate=NaN",
		"producer_byte_rate=Inf", "producer_byte_rate=x", "producer_byte_rate=1,producer_byte_rate=2", "",
		"consumer_byte_rate=1e300",
	} {
		if _, err := ParseAPIKeys(strings.NewReader("k:read:*:" + h + ":" + bad)); err == nil {
			t.Errorf("quotas field %q accepted", bad)
		}
	}
}

// TestQuotaRESTThrottlesOneKey: key a, over its quotas, gets 429
// quota_exceeded with Retry-After and the request is not applied; key b,
// with the same defaults but its own buckets, is served.
func TestQuotaRESTThrottlesOneKey(t *testing.T) {
	tokA, a, _ := NewAPIKey("a", ScopeAdmin, nil)
	tokB, b, _ := NewAPIKey("b", ScopeAdmin, nil)
	clk := newFakeClock() // never advanced: nothing refills
	groups := &fakeGroups{groups: map[string][]string{"g": {"orders"}}}
	var quotas *Quotas
	e := newEnv(t, func(c *HTTPConfig) {
		quotas = NewQuotas(QuotaRates{QuotaProduce: 10, QuotaFetch: 10, QuotaMutations: 1}, c.Registerer, clk.now)
		quotas.SetKeys([]APIKey{a, b})
		c.Auth, c.Quotas, c.Groups = NewAuthenticator([]APIKey{a, b}, false), quotas, groups
	})
	e.agent.addTopic("orders", 2)
	do := func(tok, method, target, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		e.handle.ServeHTTP(rec, req)
		return rec
	}
	want := func(rec *httptest.ResponseRecorder, status int) {
		t.Helper()
		if rec.Code != status {
			t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body.String())
		}
		if status != http.StatusTooManyRequests {
			return
		}
		var er errorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error.Code != CodeQuotaExceeded {
			t.Fatalf("body %s, want code %s", rec.Body.String(), CodeQuotaExceeded)
		}
		if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
		}
	}
	const rec0 = `{"topic":"orders","partition":0,"value":"0123456789"}`

	// Produce: a's first request empties its bucket (into debt), the
	// second is refused before the producer is called.
	want(do(tokA, "POST", "/api/v1/produce", rec0), 200)
	e.agent.lastProduce = nil
	want(do(tokA, "POST", "/api/v1/produce", rec0), 429)
	if e.agent.lastProduce != nil {
		t.Fatal("a throttled produce reached the producer")
	}
	want(do(tokB, "POST", "/api/v1/produce", rec0), 200)

	// Fetch: charged after the read, so a's second read is refused.
	want(do(tokA, "GET", "/api/v1/consume?topic=orders&partition=0&offset=0", ""), 200)
	fetches := len(e.agent.fetches)
	want(do(tokA, "GET", "/api/v1/consume?topic=orders&partition=0&offset=0", ""), 429)
	if len(e.agent.fetches) != fetches {
		t.Fatal("a throttled consume reached the fetcher")
	}
	want(do(tokB, "GET", "/api/v1/consume?topic=orders&partition=0&offset=0", ""), 200)

	// Mutations: 3 partitions put a in debt; its delete is refused.
	want(do(tokA, "POST", "/api/v1/topics", `{"name":"t3","partitions":3}`), 201)
	want(do(tokA, "DELETE", "/api/v1/topics/orders", ""), 429)
	want(do(tokA, "DELETE", "/api/v1/consumer-groups/g", ""), 429)
	if _, err := e.agent.Topic("orders"); err != nil {
		t.Fatal("a throttled topic delete was applied")
	}
	if _, ok := groups.groups["g"]; !ok {
		t.Fatal("a throttled group delete was applied")
	}
	want(do(tokB, "DELETE", "/api/v1/consumer-groups/g", ""), 204)

	if got := testutil.ToFloat64(e.errs.WithLabelValues(CodeQuotaExceeded)); got != 4 {
		t.Fatalf("errors_total{kind=quota_exceeded} = %v, want 4", got)
	}
	for q, n := range map[string]float64{"producer_byte_rate": 1, "consumer_byte_rate": 1, "controller_mutation_rate": 2} {
		if got := testutil.ToFloat64(quotas.throttled.WithLabelValues(q)); got != n {
			t.Fatalf("throttled{quota=%s} = %v, want %v", q, got, n)
		}
	}
}
