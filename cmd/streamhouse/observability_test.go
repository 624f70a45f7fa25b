package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	streamhousev1 "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
)

// The observability files shipped in deploy/, relative to this package.
const (
	alertsFile    = "../../deploy/prometheus/alerts.yaml"
	dashboardsDir = "../../deploy/grafana/dashboards"
)

// Documents whose "## Metrics" table lists the exported metrics.
var metricDocs = []string{"../../README.md", "../../docs/monitoring.md"}

// Labels that Prometheus adds at scrape time (scrape config), not the agent.
var scrapeLabels = map[string]bool{"job": true, "instance": true, "cluster": true}

// TestObservabilityMetricsExist starts a two-agent cluster with Postgres
// checkpoints, exercises it (topics, produce, consume, a group commit, gRPC,
// an error, a flush, a checkpoint, a join and a rebalance) so that every
// series exists, and fails naming any metric — or label of a selector — that
// the alerting rules, the Grafana dashboards or the metrics tables of the
// README and docs/monitoring.md reference but no agent exports. Agent 1
// exports the opt-in per-partition series (METRICS_PARTITION_SERIES),
// agent 2 the default per-topic ones.
func TestObservabilityMetricsExist(t *testing.T) {
	refs := observabilityRefs(t)

	pg := pgtest.Start(t)
	dbURL := pg.NewDatabase(t)
	objects := t.TempDir() // one object store shared by both agents

	c1 := testConfig(t, t.TempDir())
	c1.DatabaseURL, c1.CheckpointIntervalMs, c1.ObjectStoreDir = dbURL, 200, objects
	c1.MetricsPartitions = true
	a1, base1 := startTestAgent(t, c1)
	defer a1.Close(context.Background())
	// Partitions on agent-1 alone, for the controller to rebalance once
	// agent-2 is a voter (streamhouse_partition_leadership_changes_total).
	createTopic(t, base1, "obs", 4)

	c2 := testConfig(t, t.TempDir())
	c2.NodeID = "agent-2"
	c2.DatabaseURL, c2.CheckpointIntervalMs, c2.ObjectStoreDir = dbURL, 200, objects
	c2.Join = fmt.Sprintf("127.0.0.1:%d", c1.GossipPort)
	a2, base2 := startTestAgent(t, c2)
	defer a2.Close(context.Background())

	// A topic created through the follower is a forwarded proposal.
	createTopic(t, base2, "obs2", 2)
	for i := 0; i < 20; i++ {
		base := []string{base1, base2}[i%2]
		if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "obs", "key": fmt.Sprint("k", i), "value": fmt.Sprint("v", i)}, nil); code != 200 {
			t.Fatalf("produce %d: %d", i, code)
		}
	}
	if code := call(t, "POST", base1+"/api/v1/consumer-groups/obs-group/commit", map[string]any{"topic": "obs", "partition": 0, "offset": 0}, nil); code != 200 {
		t.Fatalf("group commit: %d", code)
	}
	for _, base := range []string{base1, base2} {
		if n := len(consumeAll(t, base, "obs", 0)) + len(consumeAll(t, base, "obs", 1)); n == 0 {
			t.Errorf("%s: consumed nothing", base)
		}
		// One client error, for streamhouse_errors_total{kind}.
		if code := call(t, "POST", base+"/api/v1/produce", map[string]any{"topic": "no-such-topic", "value": "x"}, nil); code != 404 {
			t.Errorf("%s: produce to an unknown topic: %d", base, code)
		}
	}
	for _, a := range []*agent{a1, a2} {
		grpcListTopics(t, a.grpcAddr())
	}

	// Wait until both agents together export every referenced metric: some
	// appear only after a flush, a checkpoint or a rebalance round (10 s).
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		exported := parseExposition(scrape(t, base1))
		for name, fam := range parseExposition(scrape(t, base2)) {
			exported.merge(name, fam)
		}
		missing = refs.check(exported)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("referenced by deploy/ but not exported by the agents:\n  %s", strings.Join(missing, "\n  "))
	}
	t.Logf("%d metrics referenced by %d expressions, all exported", len(refs.metrics), refs.exprs)
}

func grpcListTopics(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := streamhousev1.NewStreamHouseClient(conn).ListTopics(ctx, &streamhousev1.ListTopicsRequest{}); err != nil {
		t.Fatalf("gRPC ListTopics on %s: %v", addr, err)
	}
}

// ---- references ----------------------------------------------------------

// obsRefs are the metric names (and selector labels) that the deploy/
// files reference, with where each comes from.
type obsRefs struct {
	metrics map[string]map[string]bool // metric -> label names used in its selectors
	where   map[string]string          // metric -> first file that references it
	exprs   int
}

var (
	metricRef = regexp.MustCompile(`streamhouse_[a-zA-Z0-9_]+`)
	labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*`)
)

// requiredAlerts are the alerts the deployment issue asks for.
var requiredAlerts = []string{"HighS3Latency", "WALBacklog", "HighErrorRate", "AgentDown", "NoRaftLeader", "CheckpointLag", "SegmentUploadFailures", "DiskSpaceLow", "ApplyStalled"}

func observabilityRefs(t *testing.T) *obsRefs {
	t.Helper()
	r := &obsRefs{metrics: map[string]map[string]bool{}, where: map[string]string{}}

	exprs, alerts := alertExprs(t, alertsFile)
	for _, name := range requiredAlerts {
		if !alerts[name] {
			t.Errorf("%s: alert %s is missing", alertsFile, name)
		}
	}
	for _, e := range exprs {
		r.add(e, "deploy/prometheus/alerts.yaml")
	}

	dashboards, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards in %s (%v)", dashboardsDir, err)
	}
	for _, path := range dashboards {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n := 0
		walkQueries(doc, func(q string) {
			n++
			r.add(q, "deploy/grafana/dashboards/"+filepath.Base(path))
		})
		if n == 0 {
			t.Errorf("%s: no queries found", path)
		}
	}
	if len(r.metrics) < 10 {
		t.Fatalf("only %d metrics referenced: the extraction is broken", len(r.metrics))
	}
	for _, path := range metricDocs {
		r.addDoc(t, path)
	}
	return r
}

// addDoc records the metric names of a document's "## Metrics" section
// (names only; a name ending in "_" is a prefix such as streamhouse_raft_*).
func (r *obsRefs) addDoc(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Metrics\n")
	if !ok {
		t.Fatalf("%s: no \"## Metrics\" section", path)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	file := strings.TrimPrefix(path, "../../")
	n := 0
	for _, name := range metricRef.FindAllString(section, -1) {
		if strings.HasSuffix(name, "_") {
			continue
		}
		n++
		if r.metrics[name] == nil {
			r.metrics[name] = map[string]bool{}
			r.where[name] = file
		}
	}
	if n < 10 {
		t.Fatalf("%s: only %d metrics in its Metrics section: the extraction is broken", path, n)
	}
}

// add records the metrics of one PromQL expression and the label names of
// their selectors (metric{label="..."}).
func (r *obsRefs) add(expr, file string) {
	r.exprs++
	for _, loc := range metricRef.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if r.metrics[name] == nil {
			r.metrics[name] = map[string]bool{}
			r.where[name] = file
		}
		rest := strings.TrimLeft(expr[loc[1]:], " ")
		if !strings.HasPrefix(rest, "{") {
			continue
		}
		for _, l := range labelNames(selectorBody(rest)) {
			r.metrics[name][l] = true
		}
	}
}

// selectorBody returns the text between s's leading '{' and its matching
// '}', skipping quoted label values (they may hold braces).
func selectorBody(s string) string {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return s[1:i]
		}
	}
	return s[1:]
}

// labelNames returns the label names of a selector or sample label list
// (`a="x", b=~"y|z"`), skipping the quoted values.
func labelNames(body string) []string {
	var names []string
	s := body
	for {
		s = strings.TrimLeft(s, " ,")
		name := labelName.FindString(s)
		if name == "" {
			return names
		}
		names = append(names, name)
		s = strings.TrimLeft(s[len(name):], " ")
		s = strings.TrimLeft(s, "=~!")
		s = strings.TrimLeft(s, " ")
		if !strings.HasPrefix(s, `"`) {
			return names
		}
		end := 1
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(s) {
			return names
		}
		s = s[end+1:]
	}
}

// check returns a line per referenced metric (or selector label) that no
// agent exports.
func (r *obsRefs) check(exported exposition) []string {
	var missing []string
	for name, labels := range r.metrics {
		fam, ok := exported.lookup(name)
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, r.where[name]))
			continue
		}
		for l := range labels {
			if !scrapeLabels[l] && !fam.labels[l] {
				missing = append(missing, fmt.Sprintf("label %q of %s (in %s; exported labels: %s)", l, name, r.where[name], strings.Join(fam.labelList(), ", ")))
			}
		}
	}
	sort.Strings(missing)
	return missing
}

// alertExprs extracts the expr: values (inline or YAML block scalars) and
// the alert names of a Prometheus rules file, textually: the file is plain
// enough that no YAML library is needed.
func alertExprs(t *testing.T, path string) (exprs []string, alerts map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	alerts = map[string]bool{}
	lines := strings.Split(string(data), "\n")
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimPrefix(trimmed, "- "), "alert:"); ok {
			alerts[strings.Trim(strings.TrimSpace(v), `"'`)] = true
			continue
		}
		v, ok := strings.CutPrefix(strings.TrimPrefix(trimmed, "- "), "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
			var block []string
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indent(lines[i+1]) > indent(line)) {
				i++
				block = append(block, strings.TrimSpace(lines[i]))
			}
			v = strings.Join(block, " ")
		}
		exprs = append(exprs, strings.Trim(v, `"'`))
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no expr: found", path)
	}
	return exprs, alerts
}

// walkQueries calls fn with every PromQL string of a Grafana dashboard:
// panel target "expr"s and templating "query"/"definition"s.
func walkQueries(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
				if strings.Contains(s, "streamhouse_") {
					fn(s)
				}
				continue
			}
			walkQueries(x, fn)
		}
	case []any:
		for _, x := range v {
			walkQueries(x, fn)
		}
	}
}

// ---- exposition ----------------------------------------------------------

type family struct {
	typ    string
	labels map[string]bool
}

func (f *family) labelList() []string {
	var out []string
	for l := range f.labels {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// exposition maps metric family names (as in # TYPE lines) to their type and
// the label names of their samples.
type exposition map[string]*family

func (e exposition) merge(name string, f *family) {
	if e[name] == nil {
		e[name] = &family{typ: f.typ, labels: map[string]bool{}}
	}
	for l := range f.labels {
		e[name].labels[l] = true
	}
}

// lookup resolves a referenced name: a family, or a histogram's (or
// summary's) _bucket/_sum/_count series.
func (e exposition) lookup(name string) (*family, bool) {
	if f, ok := e[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := e[base]; ok && (f.typ == "histogram" || (f.typ == "summary" && suffix != "_bucket")) {
			return f, true
		}
	}
	return nil, false
}

// parseExposition reads the Prometheus text format: families from the
// # TYPE lines, label names from the samples. A family whose vector has no
// series yet has no samples and, in client_golang's output, no TYPE line
// either: it counts as not exported.
func parseExposition(text string) exposition {
	e := exposition{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if parts := strings.Fields(f); len(parts) == 2 {
				e[parts[0]] = &family{typ: parts[1], labels: map[string]bool{}}
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if strings.ContainsAny(name, " ") { // no labels: "name value"
			name, rest = strings.Fields(line)[0], ""
		}
		fam := e[name]
		if fam == nil {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && e[base] != nil {
					fam = e[base]
					break
				}
			}
		}
		if fam == nil || rest == "" {
			continue
		}
		for _, l := range labelNames(selectorBody("{" + rest)) {
			fam.labels[l] = true
		}
	}
	return e
}
