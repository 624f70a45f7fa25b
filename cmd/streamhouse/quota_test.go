package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/transport"
)

// TestQuotaFromKeysFileOnAgent: a key whose line in API_KEYS_FILE sets
// producer_byte_rate is throttled (429 quota_exceeded, Retry-After, the
// throttled counter moves) while a key without an override keeps the
// default (unlimited), and the counter is exported from the start.
func TestQuotaFromKeysFileOnAgent(t *testing.T) {
	dir := t.TempDir()
	tokOps, kOps := newKey(t, "ops", transport.ScopeAdmin)
	tokSlow, kSlow := newKey(t, "slow", transport.ScopeWrite)
	kSlow.Quotas = map[transport.QuotaKind]float64{transport.QuotaProduce: 10}
	c := keyedConfig(t, dir, kOps, kSlow)
	a, base := startTestAgent(t, c)
	defer a.Close(context.Background())

	send := func(tok, method, path, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	metrics := func() string { _, m := send(tokOps, "GET", "/metrics", ""); return m }
	if m := metrics(); !strings.Contains(m, `streamhouse_quota_throttled_total{quota="producer_byte_rate"} 0`) {
		t.Fatalf("the throttled counter is not exported at 0:\n%s", grepLines(m, "quota"))
	}
	if resp, body := send(tokOps, "POST", "/api/v1/topics", `{"name":"orders","partitions":1}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	// 1,000 bytes at 10 bytes/s: a debt of ~100 s, so the next produce is
	// refused however slowly this test runs.
	rec := `{"topic":"orders","value":"` + strings.Repeat("x", 1000) + `"}`
	for i, tok := range []string{tokSlow, tokOps, tokOps} {
		if resp, body := send(tok, "POST", "/api/v1/produce", rec); resp.StatusCode != 200 {
			t.Fatalf("produce %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := send(tokSlow, "POST", "/api/v1/produce", rec)
	if resp.StatusCode != 429 || !strings.Contains(body, `"quota_exceeded"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over-quota produce: %d %q Retry-After=%q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	m := metrics()
	for _, want := range []string{
		`streamhouse_quota_throttled_total{quota="producer_byte_rate"} 1`,
		`streamhouse_errors_total{kind="quota_exceeded"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics miss %s:\n%s", want, grepLines(m, "quota"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
