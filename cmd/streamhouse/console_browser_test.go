package main

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/transport"
)

// consolePages are the console's pages as the tests visit them: hash,
// page name, screenshot name.
var consolePages = [][3]string{
	{"#/cluster", "cluster", "cluster"},
	{"#/topics", "topics", "topics"},
	{"#/topics/seed", "topics", "topic-detail"},
	{"#/groups", "groups", "groups"},
	{"#/groups/seed-readers", "groups", "group-detail"},
	{"#/durability", "durability", "durability"},
	{"#/throughput", "throughput", "throughput"},
}

// TestConsoleInBrowser runs the web console in headless Chromium against a
// 3-agent cluster on MinIO: every page loads without console errors (at
// laptop and phone widths, screenshots saved), a topic is created,
// produced to and browsed, its config altered and partitions added, a
// group reset after a preview, the DR page's numbers equal the agent's
// /metrics, and a killed agent shows as dead.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test against a multi-process cluster; run without -short")
	}
	pg := pgtest.Start(t)
	c := startProcCluster(t, 3, "DATABASE_URL="+pg.NewDatabase(t), "CHECKPOINT_INTERVAL_MS=1000")
	waitFor(t, 30*time.Second, "3 voters and a leader", func() bool {
		st, ok := c.status(0)
		return ok && len(st.Voters) == 3 && st.Leader != ""
	})
	base := c.base(0)
	seedCluster(t, base)
	b := newBrowser(t, base)
	b.waitPage("cluster")
	t.Run("pages", func(t *testing.T) { b.t = t; visitPages(b) })
	t.Run("topic", func(t *testing.T) { b.t = t; createProduceBrowse(b) })
	t.Run("config", func(t *testing.T) { b.t = t; alterConfigAndPartitions(b) })
	t.Run("group", func(t *testing.T) { b.t = t; resetGroup(b) })
	t.Run("durability", func(t *testing.T) { b.t = t; durabilityMatchesMetrics(b) })
	t.Run("dead", func(t *testing.T) { b.t = t; killedAgentShowsDead(b, c) })
	b.t = t
	b.noErrors("whole run")
}

// seedCluster gives every page something to show: a topic with JSON,
// text and binary records and a group with lag.
func seedCluster(t *testing.T, base string) {
	createTopic(t, base, "seed", 3)
	batch := map[string]any{"topic": "seed", "records": []map[string]any{
		{"key": "order-1", "value": `{"id":1,"total":12.5,"items":["a","b"]}`, "partition": 0, "headers": map[string]string{"source": "test"}},
		{"key": "order-2", "value": "plain text value", "partition": 0},
		{"value": "AAEC/w==", "value_encoding": "base64", "partition": 0},
		{"key": "k", "value": "x", "partition": 1},
	}}
	if code := call(t, "POST", base+"/api/v1/produce/batch", batch, nil); code != 200 {
		t.Fatalf("seed produce: %d", code)
	}
	commit := map[string]any{"topic": "seed", "partition": 0, "offset": 1}
	if code := call(t, "POST", base+"/api/v1/consumer-groups/seed-readers/commit", commit, nil); code != 200 {
		t.Fatalf("seed commit: %d", code)
	}
}

// visitPages loads every page at laptop and phone width, saving
// screenshots, and checks that none logs an error.
func visitPages(b *browser) {
	for _, phone := range []bool{false, true} {
		b.viewport(phone)
		for _, p := range consolePages {
			b.open(p[0], p[1])
			switch p[1] {
			case "throughput":
				b.run(waitVisible(".chart"))
			case "cluster":
				if got := b.count(`[data-testid="members"] tbody tr`); got != 3 {
					b.t.Errorf("cluster page lists %d agents, want 3", got)
				}
				waitFor(b.t, 10*time.Second, "every agent shown ready", func() bool {
					return b.count(`[data-testid^="ready-"].state-alive`) == 3
				})
			}
			name := p[2]
			if phone {
				name += "-phone"
			}
			b.shot(name)
			b.noErrors(p[0])
		}
	}
	b.viewport(false)
}

func createProduceBrowse(b *browser) {
	t := b.t
	b.open("#/topics", "topics")
	b.fill(`[data-testid="create-topic"] input[name="name"]`, "console-t")
	b.fill(`[data-testid="create-topic"] input[name="partitions"]`, "2")
	b.run(setSelect(`[data-testid="create-topic"] select[name="compression"]`, "lz4"))
	b.click(`[data-testid="create-topic"] button[type="submit"]`)
	b.run(waitVisible(`a[data-topic="console-t"]`))
	var topic transport.TopicJSON
	if code := call(t, "GET", b.base+"/api/v1/topics/console-t", nil, &topic); code != 200 || topic.Partitions != 2 || topic.Compression != "lz4" {
		t.Fatalf("topic after create in the UI: %d %+v", code, topic)
	}

	b.open("#/topics/console-t", "topics")
	b.fill(`[data-testid="produce"] input[name="key"]`, "k1")
	b.fill(`[data-testid="produce"] textarea[name="value"]`, `{"hello":"console"}`)
	b.fill(`[data-testid="produce"] input[name="headers"]`, `{"h":"v"}`)
	b.fill(`[data-testid="produce"] input[name="partition"]`, "1")
	b.click(`[data-testid="produce"] button[type="submit"]`)
	if got := b.text(`[data-testid="produced"]`); !strings.Contains(got, "partition 1, offset 0") {
		t.Fatalf("produce result: %q", got)
	}
	b.fill(`[data-testid="browse"] input[name="partition"]`, "1")
	b.run(setSelect(`[data-testid="browse"] select[name="from"]`, "oldest"))
	b.click(`[data-testid="browse"] button[type="submit"]`)
	b.run(waitVisible(`[data-testid="records"] .record[data-offset="0"] pre[data-format="json"]`))
	rec := b.text(`[data-testid="records"] .record[data-offset="0"]`)
	for _, want := range []string{"k1", "h=v", `"hello": "console"`} {
		if !strings.Contains(rec, want) {
			t.Errorf("browsed record %q lacks %q", rec, want)
		}
	}
	// Live tail: a record produced meanwhile appears without a reload.
	b.run(chromedp.Click(chromedp.CSS(`[data-testid="browse"] input[name="tail"]`)))
	b.click(`[data-testid="browse"] button[type="submit"]`)
	b.run(waitVisible(`[data-testid="tailing"]`))
	if code := call(t, "POST", b.base+"/api/v1/produce", map[string]any{"topic": "console-t", "partition": 1, "value": "tailed"}, nil); code != 200 {
		t.Fatalf("produce for the tail: %d", code)
	}
	if got := b.text(`[data-testid="records"] .record[data-offset="1"] pre`); got != "tailed" {
		t.Errorf("tailed record shows %q", got)
	}
	// Binary values fall back to hex.
	b.open("#/topics/seed", "topics")
	b.run(setSelect(`[data-testid="browse"] select[name="order"]`, "asc"))
	b.click(`[data-testid="browse"] button[type="submit"]`)
	if got := b.text(`.record[data-offset="2"] pre[data-format="hex"]`); got != "00 01 02 ff" {
		t.Errorf("binary value shown as %q, want hex 00 01 02 ff", got)
	}
	b.noErrors("topic pages")
}

func alterConfigAndPartitions(b *browser) {
	t := b.t
	b.open("#/topics/console-t", "topics")
	b.fill(`[data-testid="config"] input[name="retention.ms"]`, "3600000")
	b.click(`[data-testid="config"] button[type="submit"]`)
	waitFor(t, 10*time.Second, "retention.ms altered", func() bool {
		var cfg struct{ Configs map[string]string }
		return call(t, "GET", b.base+"/api/v1/topics/console-t/config", nil, &cfg) == 200 && cfg.Configs["retention.ms"] == "3600000"
	})
	b.fill(`[data-testid="add-partitions"] input[name="count"]`, "4")
	b.click(`[data-testid="add-partitions"] button[type="submit"]`)
	if got := b.text(`[data-testid="add-partitions"] .ok`); !strings.Contains(got, "now has 4 partitions") {
		t.Fatalf("add partitions: %q", got)
	}
	waitFor(t, 10*time.Second, "4 rows in the partitions table", func() bool {
		return b.count(`[data-testid="partitions"] tbody tr`) == 4
	})
	b.noErrors("config")
}

// resetGroup previews and resets seed-readers to the earliest offset of
// seed/0 (3 records there: lag 2 → 3).
func resetGroup(b *browser) {
	t := b.t
	b.open("#/groups/seed-readers", "groups")
	if got := b.text(`[data-testid="lag-seed-0"]`); got != "2" {
		t.Fatalf("lag of seed/0 shown as %q, want 2", got)
	}
	b.run(setSelect(`[data-testid="reset"] select[name="strategy"]`, "earliest"))
	b.fill(`[data-testid="reset"] input[name="partitions"]`, "0")
	b.click(`[data-testid="reset"] button[type="button"]`)
	if got := b.text(`[data-testid="preview-lag"]`); got != "3" {
		t.Errorf("preview of the new lag: %q, want 3", got)
	}
	b.click(`[data-testid="reset"] button[type="submit"]`)
	b.run(waitVisible(`[data-testid="reset-done"]`))
	var d struct {
		TotalLag int64 `json:"total_lag"`
	}
	if code := call(t, "GET", b.base+"/api/v1/consumer-groups/seed-readers", nil, &d); code != 200 || d.TotalLag != 3 {
		t.Errorf("group after reset: %d total_lag %d, want 3", code, d.TotalLag)
	}
	b.noErrors("group")
}

// durabilityMatchesMetrics: the DR page's local store bytes, segments
// written and records at risk equal what the agent's /metrics says (read
// both until they agree: the page refreshes every 2 s).
func durabilityMatchesMetrics(b *browser) {
	t := b.t
	b.open("#/durability", "durability")
	var page, metrics string
	waitFor(t, 20*time.Second, "DR page numbers equal /metrics", func() bool {
		m := scrapeMetrics(t, b.base)
		page = strings.Join([]string{b.attrNow(`[data-testid="store-bytes-node-1"]`, "data-value"),
			b.attrNow(`[data-testid="segments-node-1"]`, "data-value"),
			strings.ReplaceAll(b.textNow(`[data-testid="rp-records"] .stat-value`), ",", "")}, " ")
		metrics = fmt.Sprintf("%.0f %.0f %.0f", m["streamhouse_unflushed_bytes"], m["streamhouse_segment_writes_total"],
			m["streamhouse_topic_unflushed_offsets"])
		return page == metrics
	})
	if m := scrapeMetrics(t, b.base); m["streamhouse_segment_writes_total"] == 0 {
		t.Errorf("no segment written yet: the comparison proved little (page %q, metrics %q)", page, metrics)
	}
	// The Raft leader checkpoints to Postgres; its row says so.
	waitFor(t, 20*time.Second, "a checkpoint shown", func() bool {
		return b.count(`[data-testid="checkpoints"] .cp-writing`) == 1 &&
			strings.Trim(b.textNow(`[data-testid="checkpoints"] .cp-writing-index`), "–0") != ""
	})
	if got := b.text(`[data-testid="restore-command"]`); !strings.Contains(got, "streamhouse restore") {
		t.Errorf("restore command: %q", got)
	}
	b.shot("durability-settled")
	b.noErrors("durability")
}

// killedAgentShowsDead kills node-3; the cluster page shows it dead within
// memberlist's failure detection (suspicion ends in seconds on loopback).
// Then it kills node-2: the page warns that there is no leader.
func killedAgentShowsDead(b *browser, c *procCluster) {
	b.open("#/cluster", "cluster")
	// The row can be on the page before its gossip state is filled in.
	waitFor(b.t, 10*time.Second, "node-3 shown alive before the kill", func() bool {
		return b.textNow(`[data-testid="gossip-node-3"]`) == "alive"
	})
	c.procs[2].kill(b.t)
	waitFor(b.t, 30*time.Second, "node-3 shown dead", func() bool {
		return b.textNow(`[data-testid="gossip-node-3"]`) == "dead"
	})
	b.shot("cluster-agent-dead")
	// The durability page names the agent it could not ask.
	b.open("#/durability", "durability")
	if got := b.text(`[data-testid="backlog"]`); !strings.Contains(got, "node-3") || !strings.Contains(got, "dead") {
		b.t.Errorf("durability page with node-3 dead: %q", got)
	}
	// Without a quorum node-1 loses its leadership: the banner says so.
	c.procs[1].kill(b.t)
	b.open("#/cluster", "cluster")
	waitFor(b.t, 30*time.Second, "the no-leader banner", func() bool {
		text := b.textNow("#banner:not([hidden])")
		return strings.Contains(text, "no Raft leader") || strings.Contains(text, "not ready")
	})
	waitFor(b.t, 30*time.Second, "the cluster page shows no leader", func() bool {
		return b.textNow(`[data-testid="raft-leader"] .stat-value`) == "none"
	})
	b.shot("banner-no-quorum")
	b.takeErrors() // the killed agents' failed requests are expected
}

// scrapeMetrics sums every streamhouse_ sample of base's /metrics by name.
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "streamhouse_") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i > 0 {
			name = line[:i]
			rest = line[strings.LastIndexByte(line, '}')+2:]
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

// TestConsoleAPIKeysAndManyPartitions runs the console against one agent
// with API keys: the page asks for a key, a read-only key can browse but
// its create and delete get a clear 403 in the page; and a topic with
// 10,000 partitions is shown one page of 50 partitions at a time.
func TestConsoleAPIKeysAndManyPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test against an agent process; run without -short")
	}
	dir := t.TempDir()
	adminTok, admin := newKey(t, "ops", transport.ScopeAdmin)
	readTok, reader := newKey(t, "viewer", transport.ScopeRead)
	keys := filepath.Join(dir, "api_keys")
	writeKeys(t, keys, admin, reader)
	a := newSoloAgent(t, "solo", filepath.Join(dir, "data"), "API_KEYS_FILE="+keys,
		"OBJECT_STORE_DIR="+filepath.Join(dir, "objects"))
	p := a.start(t)
	t.Cleanup(func() { p.kill(t) })
	if code := keyedCall(t, adminTok, "POST", p.base+"/api/v1/topics", `{"name":"wide","partitions":10000}`); code != 201 {
		t.Fatalf("create a topic of 10000 partitions: %d", code)
	}
	b := newBrowser(t, p.base)
	b.run(waitVisible("#key-dialog[open]"))
	b.fill("#key-input", readTok)
	b.click("#key-save")
	b.waitPage("cluster")

	start := time.Now()
	b.open("#/topics/wide", "topics")
	b.run(waitVisible(`[data-testid="partitions"] tbody tr`))
	t.Logf("topic page of 10000 partitions rendered in %v (informational)", time.Since(start))
	if rows := b.count(`[data-testid="partitions"] tbody tr`); rows != 50 {
		t.Errorf("partitions table shows %d rows, want one page of 50", rows)
	}
	if got := b.text(`[data-testid="pager"] span`); got != "Partitions page 1 of 200" {
		t.Errorf("pager: %q", got)
	}
	b.click(`[data-testid="pager"] button:last-child`)
	b.run(waitVisible(`[data-testid="partitions"] tbody tr:first-child td:first-child`))
	waitFor(t, 10*time.Second, "second page shows partition 50 first", func() bool {
		return b.textNow(`[data-testid="partitions"] tbody tr:first-child td:first-child`) == "50"
	})
	b.shot("topic-10000-partitions")

	// The read-only key cannot delete or create: the page says why.
	b.fill(`[data-testid="delete-topic"] input[name="confirm"]`, "wide")
	b.click(`[data-testid="delete-topic"] button[type="submit"]`)
	if got := b.text(`[data-testid="delete-topic"] .error`); !strings.Contains(got, "403 permission_denied") || !strings.Contains(got, "viewer") {
		t.Errorf("delete with a read key shows %q, want the 403", got)
	}
	b.open("#/topics", "topics")
	b.fill(`[data-testid="create-topic"] input[name="name"]`, "not-allowed")
	b.click(`[data-testid="create-topic"] button[type="submit"]`)
	if got := b.text(`.card .error[data-status="403"]`); !strings.Contains(got, "403 permission_denied") {
		t.Errorf("create with a read key shows %q, want the 403", got)
	}
	b.shot("topics-read-only-key")
	if code := keyedCall(t, adminTok, "GET", p.base+"/api/v1/topics/not-allowed", ""); code != 404 {
		t.Errorf("topic created by a read key: GET answered %d", code)
	}
	b.takeErrors() // the refused calls are logged by the browser as failed loads
}

// keyedCall sends body with a bearer token and returns the status.
func keyedCall(t *testing.T, token, method, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
