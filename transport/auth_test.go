package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

func TestParseAPIKeys(t *testing.T) {
	tok, k, err := NewAPIKey("billing", ScopeWrite, []string{"orders", "pay*"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "sh_") || len(tok) < 40 {
		t.Fatalf("token %q", tok)
	}
	file := "# comment\n\n" + k.Line() + "\n  ops:admin:*:" + strings.Repeat("ab", 32) + "  \n"
	keys, err := ParseAPIKeys(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "billing" || keys[0].Scope != ScopeWrite || keys[0].Hash != HashToken(tok) ||
		keys[1].Name != "ops" || keys[1].Scope != ScopeAdmin || !keys[1].AllTopics() {
		t.Fatalf("parsed %+v", keys)
	}
	for _, topic := range []string{"orders", "payments", "pay"} {
		if !keys[0].AllowsTopic(topic) {
			t.Errorf("billing should cover %q", topic)
		}
	}
	for _, topic := range []string{"order", "orders2", "xpay", ""} {
		if keys[0].AllowsTopic(topic) {
			t.Errorf("billing should not cover %q", topic)
		}
	}

	h := strings.Repeat("cd", 32)
	bad := map[string]string{
		"a:read:*":                           "4 fields",
		"a:root:*:" + h:                      "unknown scope",
		"a:read:*:abc":                       "64 hex digits",
		"a:read::" + h:                       "empty topics field",
		"a b:read:*:" + h:                    "key name",
		"a:read:bad/topic:" + h:              "topic",
		"a:read:*:" + h + "\na:read:*:" + h:  "already used",
		"a:read:*:" + h + "\nb:write:*:" + h: "same token hash",
	}
	for in, want := range bad {
		if _, err := ParseAPIKeys(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAPIKeys(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

func TestAuthenticatorScopesAndTopics(t *testing.T) {
	tokR, kR, _ := NewAPIKey("reader", ScopeRead, []string{"orders"})
	tokW, kW, _ := NewAPIKey("writer", ScopeWrite, nil)
	a := NewAuthenticator([]APIKey{kR, kW}, false)
	if _, err := a.Authenticate(""); !errors.Is(err, ErrMissingToken) {
		t.Fatalf("empty token: %v", err)
	}
	if _, err := a.Authenticate(tokR + "x"); !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrMissingToken) {
		t.Fatalf("wrong token: %v", err)
	}
	p, err := a.Authenticate(tokR)
	if err != nil || p.Key.Name != "reader" {
		t.Fatalf("reader: %v %+v", err, p)
	}
	ctx := WithPrincipal(context.Background(), p)
	cases := []struct {
		scope  Scope
		topics []string
		ok     bool
	}{
		{ScopeRead, nil, true},
		{ScopeRead, []string{"orders"}, true},
		{ScopeRead, []string{"orders", "secret"}, false},
		{ScopeWrite, []string{"orders"}, false},
		{ScopeAdmin, nil, false},
	}
	for _, c := range cases {
		err := a.Authorize(ctx, c.scope, c.topics...)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrPermissionDenied)) {
			t.Errorf("reader %v %v: %v", c.scope, c.topics, err)
		}
	}
	pw, _ := a.Authenticate(tokW)
	wctx := WithPrincipal(context.Background(), pw)
	if err := a.Authorize(wctx, ScopeWrite, "anything"); err != nil {
		t.Errorf("writer: %v", err)
	}
	if err := a.Authorize(wctx, ScopeAdmin); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("writer as admin: %v", err)
	}
	if err := a.Authorize(context.Background(), ScopeRead); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("no principal with auth on: %v", err)
	}
	var off *Authenticator
	if err := off.Authorize(context.Background(), ScopeAdmin, "x"); err != nil {
		t.Errorf("auth off: %v", err)
	}
	// Revocation: a new key set no longer accepts the old token.
	a.SetKeys([]APIKey{kW})
	if _, err := a.Authenticate(tokR); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token accepted: %v", err)
	}
}

// fakeGroups serves consumer groups for the auth tests.
type fakeGroups struct {
	groups      map[string][]string // group → topics with offsets
	describeErr error               // DescribeGroup fails with it when set
}

func (g *fakeGroups) CommitOffsets(_ context.Context, group string, commits []fsm.GroupCommit) error {
	for _, c := range commits {
		g.groups[group] = append(g.groups[group], c.Topic)
	}
	return nil
}

func (g *fakeGroups) ListGroups() []fsm.GroupSummary {
	var out []fsm.GroupSummary
	for name, ts := range g.groups {
		out = append(out, fsm.GroupSummary{Group: name, Topics: ts, Partitions: len(ts)})
	}
	return out
}

func (g *fakeGroups) DescribeGroup(_ context.Context, group string) (fsm.GroupDescription, error) {
	if g.describeErr != nil {
		return fsm.GroupDescription{}, g.describeErr
	}
	ts, ok := g.groups[group]
	if !ok {
		return fsm.GroupDescription{}, fsm.ErrGroupNotFound
	}
	d := fsm.GroupDescription{Group: group}
	for _, t := range ts {
		d.Partitions = append(d.Partitions, fsm.GroupPartition{Topic: t})
	}
	return d, nil
}

func (g *fakeGroups) DeleteGroup(_ context.Context, group string) error {
	delete(g.groups, group)
	return nil
}

func (g *fakeGroups) ResetGroup(ctx context.Context, group string, _ fsm.GroupReset) (fsm.GroupDescription, error) {
	return g.DescribeGroup(ctx, group)
}

// TestRESTOverTLSWithAPIKeys runs a real HTTPS listener with API keys: the
// probes stay open, a missing or unknown token is 401, a key without the
// scope or the topic is 403, the right key is served; a client that does
// not trust the CA, or speaks plaintext, gets nothing.
func TestRESTOverTLSWithAPIKeys(t *testing.T) {
	ca := transporttest.NewCA(t, "test CA")
	cert := ca.Issue(t, "agent")
	tokRead, kRead, _ := NewAPIKey("reader", ScopeRead, []string{"orders"})
	tokWrite, kWrite, _ := NewAPIKey("orders-writer", ScopeWrite, []string{"orders"})
	tokAll, kAll, _ := NewAPIKey("writer", ScopeWrite, nil)
	tokAdmin, kAdmin, _ := NewAPIKey("admin", ScopeAdmin, nil)
	auth := NewAuthenticator([]APIKey{kRead, kWrite, kAll, kAdmin}, false)

	reg := prometheus.NewRegistry()
	errs := NewErrorsCounter(reg)
	agent := newFakeAgent()
	agent.addTopic("orders", 1)
	agent.addTopic("secret", 1)
	groups := &fakeGroups{groups: map[string][]string{"billing": {"orders"}, "mixed": {"orders", "secret"}}}
	srv := NewHTTPServer(HTTPConfig{
		Addr: "127.0.0.1:0", Gatherer: reg, Registerer: reg, Errors: errs, Groups: groups, Auth: auth,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12},
	}, agent, agent, agent, agent)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	base := "https://" + srv.Addr()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer cl.CloseIdleConnections()

	type answer struct {
		code  int
		body  string
		authn string
	}
	do := func(method, path, token, body string) answer {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate")}
	}
	wantCode := func(a answer, status int, code string) {
		t.Helper()
		if a.code != status {
			t.Fatalf("status %d, want %d: %s", a.code, status, a.body)
		}
		if code != "" {
			var e errorResponse
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
				t.Fatalf("body %s, want error code %s", a.body, code)
			}
		}
	}

	// listFiltered checks that the read key's listing at path shows want
	// and hides hidden.
	listFiltered := func(path, want, hidden string) {
		t.Helper()
		a := do("GET", path, tokRead, "")
		wantCode(a, 200, "")
		if !strings.Contains(a.body, want) || strings.Contains(a.body, hidden) {
			t.Fatalf("%s for a key restricted to orders: %s", path, a.body)
		}
	}

	for _, p := range []string{"/health", "/live", "/ready", "/metrics"} {
		wantCode(do("GET", p, "", ""), 200, "")
	}

	// 401: no token, an unknown token, not a bearer token.
	a := do("GET", "/api/v1/topics", "", "")
	wantCode(a, 401, CodeUnauthenticated)
	if a.authn != `Bearer realm="streamhouse"` {
		t.Fatalf("WWW-Authenticate = %q", a.authn)
	}
	a = do("GET", "/api/v1/topics", "sh_not-a-key", "")
	wantCode(a, 401, CodeUnauthenticated)
	if !strings.Contains(a.authn, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate = %q", a.authn)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/topics", nil)
	req.Header.Set("Authorization", "Basic "+tokRead)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("Basic auth: %d", resp.StatusCode)
	}
	wantCode(do("POST", "/api/v1/produce", "", `{"topic":"orders","value":"x"}`), 401, CodeUnauthenticated)
	if got := agent.produced(); got != nil {
		t.Fatalf("an unauthenticated produce reached the producer: %+v", got)
	}

	// The read key: its topic only, read only.
	listFiltered("/api/v1/topics", `"orders"`, `"secret"`)
	wantCode(do("GET", "/api/v1/topics/orders", tokRead, ""), 200, "")
	wantCode(do("GET", "/api/v1/topics/secret", tokRead, ""), 403, CodePermissionDenied)
	wantCode(do("GET", "/api/v1/topics/secret/partitions", tokRead, ""), 403, CodePermissionDenied)
	wantCode(do("GET", "/api/v1/consume?topic=orders&partition=0", tokRead, ""), 200, "")
	a = do("GET", "/api/v1/consume?topic=secret&partition=0", tokRead, "")
	wantCode(a, 403, CodePermissionDenied)
	if !strings.Contains(a.authn, "insufficient_scope") {
		t.Fatalf("403 WWW-Authenticate = %q", a.authn)
	}
	wantCode(do("POST", "/api/v1/produce", tokRead, `{"topic":"orders","value":"x"}`), 403, CodePermissionDenied)
	wantCode(do("GET", "/api/v1/cluster", tokRead, ""), 404, CodeNotFound) // authorised; no cluster on this server

	// Write keys: per topic.
	wantCode(do("POST", "/api/v1/produce", tokWrite, `{"topic":"orders","value":"x"}`), 200, "")
	wantCode(do("POST", "/api/v1/produce", tokWrite, `{"topic":"secret","value":"x"}`), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/produce/batch", tokWrite, `{"topic":"secret","records":[{"value":"x"}]}`), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/produce/batch", tokAll, `{"topic":"secret","records":[{"value":"x"}]}`), 200, "")

	// Topic admin needs admin.
	wantCode(do("POST", "/api/v1/topics", tokAll, `{"name":"new","partitions":1}`), 403, CodePermissionDenied)
	wantCode(do("DELETE", "/api/v1/topics/orders", tokAll, ""), 403, CodePermissionDenied)
	wantCode(do("PATCH", "/api/v1/topics/orders/config", tokAll, `{"retention.ms":"1"}`), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/topics/orders/partitions", tokAll, `{"count":9}`), 403, CodePermissionDenied)
	wantCode(do("GET", "/api/v1/topics/orders/config", tokRead, ""), 200, "")
	wantCode(do("GET", "/api/v1/topics/secret/config", tokRead, ""), 403, CodePermissionDenied)
	wantCode(do("PATCH", "/api/v1/topics/orders/config", tokAdmin, `{"retention.ms":"1"}`), 200, "")
	wantCode(do("POST", "/api/v1/topics", tokAdmin, `{"name":"new","partitions":1}`), 201, "")

	// Groups: listing filtered, describe/commit/reset/delete per topic.
	listFiltered("/api/v1/consumer-groups", `"billing"`, `"mixed"`)
	wantCode(do("GET", "/api/v1/consumer-groups/billing", tokRead, ""), 200, "")
	wantCode(do("GET", "/api/v1/consumer-groups/mixed", tokRead, ""), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/consumer-groups/billing/commit", tokRead, `{"topic":"orders","partition":0,"offset":0}`), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/consumer-groups/billing/commit", tokWrite, `{"topic":"orders","partition":0,"offset":0}`), 200, "")
	wantCode(do("POST", "/api/v1/consumer-groups/billing/commit", tokWrite, `{"offsets":[{"topic":"orders","partition":0,"offset":0},{"topic":"secret","partition":0,"offset":0}]}`), 403, CodePermissionDenied)
	wantCode(do("POST", "/api/v1/consumer-groups/billing/reset", tokWrite, `{"strategy":"earliest","topic":"secret"}`), 403, CodePermissionDenied)
	wantCode(do("DELETE", "/api/v1/consumer-groups/mixed", tokWrite, ""), 403, CodePermissionDenied)
	wantCode(do("DELETE", "/api/v1/consumer-groups/mixed", tokAll, ""), 204, "")

	for kind, min := range map[string]float64{CodeUnauthenticated: 4, CodePermissionDenied: 12} {
		if got := testutil.ToFloat64(errs.WithLabelValues(kind)); got < min {
			t.Errorf("streamhouse_errors_total{kind=%q} = %v, want >= %v", kind, got, min)
		}
	}

	// A client that does not trust the CA, and a plaintext client, get nothing.
	untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer untrusting.CloseIdleConnections()
	if _, err := untrusting.Get(base + "/health"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client without the CA: %v", err)
	}
	plain, err := http.Get("http://" + srv.Addr() + "/api/v1/topics")
	if err == nil {
		b, _ := io.ReadAll(plain.Body)
		plain.Body.Close()
		if plain.StatusCode == 200 || strings.Contains(string(b), "orders") {
			t.Fatalf("plaintext request served: %d %s", plain.StatusCode, b)
		}
	}
}

func TestRESTMetricsAuth(t *testing.T) {
	tok, k, _ := NewAPIKey("scraper", ScopeRead, []string{"nothing"})
	e := newEnv(t, func(c *HTTPConfig) { c.Auth = NewAuthenticator([]APIKey{k}, true) })
	wantError(t, e.do(t, "GET", "/metrics", ""), 401, CodeUnauthenticated)
	req, _ := http.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.handle.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "streamhouse_errors_total") {
		t.Fatalf("metrics with a read key: %d %s", rec.Code, rec.Body.String())
	}
	wantStatus(t, e.do(t, "GET", "/health", ""), 200)
	wantStatus(t, e.do(t, "GET", "/ready", ""), 200)
}

// TestRESTMetricsAuthServesOnlyTheKeysTopics: with METRICS_AUTH a key
// sees the series of its own topics and those without a topic label,
// never another topic's lag or watermarks.
func TestRESTMetricsAuthServesOnlyTheKeysTopics(t *testing.T) {
	tokA, kA, _ := NewAPIKey("tenant-a", ScopeRead, []string{"a-*"})
	tokAll, kAll, _ := NewAPIKey("scraper", ScopeRead, nil)
	e := newEnv(t, func(c *HTTPConfig) { c.Auth = NewAuthenticator([]APIKey{kA, kAll}, true) })
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_consumer_group_lag"}, []string{"group", "topic", "partition"})
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_agent_up"})
	e.reg.MustRegister(lag, up)
	up.Set(1)
	lag.WithLabelValues("g1", "a-orders", "0").Set(1)
	lag.WithLabelValues("g2", "b-payroll", "0").Set(2)
	scrape := func(tok string) string {
		req, _ := http.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		e.handle.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("metrics: %d %s", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	got := scrape(tokA)
	if !strings.Contains(got, `topic="a-orders"`) || !strings.Contains(got, "test_agent_up 1") {
		t.Fatalf("tenant a misses its own series or the agent's:\n%s", got)
	}
	if strings.Contains(got, "b-payroll") || strings.Contains(got, "g2") {
		t.Fatalf("tenant a sees topic b-payroll:\n%s", got)
	}
	if all := scrape(tokAll); !strings.Contains(all, "b-payroll") || !strings.Contains(all, "a-orders") {
		t.Fatalf("a key for every topic misses series:\n%s", all)
	}
}

// FuzzParseAPIKeys: the keys-file parsers never panic, and what they accept
// round-trips through APIKey.Line.
func FuzzParseAPIKeys(f *testing.F) {
	h := strings.Repeat("ab", 32)
	f.Add("ops:admin:*:" + h + "\n")
	f.Add("# c\n\nb:write:orders,pay*:" + h)
	f.Add("a:read::" + h)
	f.Add(":::")
	f.Add("q:read:*:" + h + ":producer_byte_rate=1e3,consumer_byte_rate=0\n")
	f.Add("q:read:*:" + h + ":controller_mutation_rate=0.5:extra")
	f.Fuzz(func(t *testing.T, in string) {
		// The lenient parser (reloads) keeps exactly the lines the strict
		// one would, and refuses the rest; strict succeeds iff none is refused.
		lenient, refused, lerr := ParseAPIKeysLenient(strings.NewReader(in))
		keys, err := ParseAPIKeys(strings.NewReader(in))
		if (err == nil) != (lerr == nil && len(refused) == 0) {
			t.Fatalf("strict: %v; lenient: %v, %d refused", err, lerr, len(refused))
		}
		if lerr == nil {
			var b strings.Builder
			for _, k := range lenient {
				b.WriteString(k.Line() + "\n")
			}
			if again, bad, _ := ParseAPIKeysLenient(strings.NewReader(b.String())); len(bad) != 0 || len(again) != len(lenient) {
				t.Fatalf("the kept lines %q do not re-parse cleanly: %v", b.String(), bad)
			}
		}
		if err != nil {
			return
		}
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k.Line() + "\n")
		}
		again, err := ParseAPIKeys(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if len(again) != len(keys) {
			t.Fatalf("%d keys, re-parsed %d", len(keys), len(again))
		}
		for i := range keys {
			if keys[i].Line() != again[i].Line() {
				t.Fatalf("key %d: %q became %q", i, keys[i].Line(), again[i].Line())
			}
		}
	})
}

// TestDeleteGroupFailsClosed: when the group's topics cannot be read (the
// read fails, or the group is unknown), DELETE is refused and nothing is
// deleted: the topic check is never skipped.
func TestDeleteGroupFailsClosed(t *testing.T) {
	tok, k, _ := NewAPIKey("orders-writer", ScopeWrite, []string{"orders"})
	groups := &fakeGroups{groups: map[string][]string{"mixed": {"orders", "secret"}}}
	e := newEnv(t, func(c *HTTPConfig) { c.Auth, c.Groups = NewAuthenticator([]APIKey{k}, false), groups })
	del := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("DELETE", "/api/v1/consumer-groups/mixed", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		e.handle.ServeHTTP(rec, req)
		return rec
	}
	groups.describeErr = fmt.Errorf("%w: no quorum", fsm.ErrUnavailable)
	if rec := del(); rec.Code < 400 {
		t.Fatalf("delete while the group could not be read: %d %s", rec.Code, rec.Body.String())
	}
	if _, ok := groups.groups["mixed"]; !ok {
		t.Fatal("the group was deleted although its topics were never checked")
	}
	groups.describeErr = nil
	if rec := del(); rec.Code != 403 {
		t.Fatalf("delete of a group with another topic: %d %s", rec.Code, rec.Body.String())
	}
	if _, ok := groups.groups["mixed"]; !ok {
		t.Fatal("the group was deleted")
	}
}

func TestKeyByHashFollowsTheKeySet(t *testing.T) {
	tok, k, err := NewAPIKey("a", ScopeRead, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator([]APIKey{k}, false)
	if got, ok := a.KeyByHash(HashToken(tok)); !ok || got.Name != "a" {
		t.Fatalf("KeyByHash = %+v, %v", got, ok)
	}
	a.SetKeys(nil)
	if _, ok := a.KeyByHash(HashToken(tok)); ok {
		t.Fatal("revoked key still found")
	}
}
