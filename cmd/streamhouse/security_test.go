package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// httpsClient trusts ca and sends token (when not "").
type httpsClient struct {
	cl    *http.Client
	token string
}

func newHTTPSClient(t *testing.T, ca *transporttest.CA) *httpsClient {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &httpsClient{cl: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

func (h *httpsClient) as(token string) *httpsClient { return &httpsClient{cl: h.cl, token: token} }

// do sends a JSON request; it returns the status and the body.
func (h *httpsClient) do(method, url, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (h *httpsClient) must(t *testing.T, method, url, body string, want int) string {
	t.Helper()
	code, b, err := h.do(method, url, body)
	if err != nil || code != want {
		t.Fatalf("%s %s: %d %s %v, want %d", method, url, code, b, err, want)
	}
	return b
}

func writeKeys(t *testing.T, path string, keys ...transport.APIKey) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# streamhouse API keys\n")
	for _, k := range keys {
		b.WriteString(k.Line() + "\n")
	}
	// Write and rename, as an operator's tooling (or a Kubernetes Secret)
	// replaces the file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// keyedConfig is testConfig in dir/data for an agent that reads its API
// keys from dir/api_keys, written with keys.
func keyedConfig(t *testing.T, dir string, keys ...transport.APIKey) *agentCmd {
	t.Helper()
	c := testConfig(t, filepath.Join(dir, "data"))
	c.APIKeysFile = filepath.Join(dir, "api_keys")
	writeKeys(t, c.APIKeysFile, keys...)
	return c
}

func newKey(t *testing.T, name string, scope transport.Scope, topics ...string) (string, transport.APIKey) {
	t.Helper()
	var ts []string
	if len(topics) > 0 {
		ts = topics
	}
	tok, k, err := transport.NewAPIKey(name, scope, ts)
	if err != nil {
		t.Fatal(err)
	}
	return tok, k
}

// TestAgentTLSAndAPIKeys: an agent with TLS_CERT_PATH/TLS_KEY_PATH and
// API_KEYS_FILE serves REST and gRPC over TLS only, enforces the keys'
// scopes and topics (also through the CLI with --tls-ca and --token),
// keeps the probes open, protects /metrics with METRICS_AUTH, and picks
// up added and revoked keys from the file without a restart.
func TestAgentTLSAndAPIKeys(t *testing.T) {
	old := apiKeysCheckInterval
	apiKeysCheckInterval = 20 * time.Millisecond
	defer func() { apiKeysCheckInterval = old }()

	dir := t.TempDir()
	ca := transporttest.NewCA(t, "test CA")
	files := ca.Issue(t, "agent-1").Write(t, ca, dir, "agent")
	tokAdmin, kAdmin := newKey(t, "ops", transport.ScopeAdmin)
	tokRead, kRead := newKey(t, "reader", transport.ScopeRead, "orders")
	tokWrite, kWrite := newKey(t, "writer", transport.ScopeWrite, "orders")
	c := keyedConfig(t, dir, kAdmin, kRead)
	keysFile := c.APIKeysFile
	c.TLSCertPath, c.TLSKeyPath, c.MetricsAuth = files.Cert, files.Key, true
	a, err := startAgent(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	base := "https://" + a.http.Addr()
	h := newHTTPSClient(t, ca)
	waitFor(t, 20*time.Second, "agent ready over https", func() bool {
		code, _, err := h.do("GET", base+"/ready", "")
		return err == nil && code == 200
	})

	// Probes open, metrics and the API behind keys.
	for _, p := range []string{"/health", "/live"} {
		h.must(t, "GET", base+p, "", 200)
	}
	h.must(t, "GET", base+"/metrics", "", 401)
	// The series exists from the start (at 0): the 401 must have counted.
	if m := h.as(tokRead).must(t, "GET", base+"/metrics", "", 200); metricValue(m, `streamhouse_errors_total{kind="unauthenticated"}`) < 1 {
		t.Fatalf("the 401 is not counted in streamhouse_errors_total:\n%s", m)
	}
	h.must(t, "GET", base+"/api/v1/topics", "", 401)
	h.as("sh_wrong").must(t, "GET", base+"/api/v1/topics", "", 401)
	h.as(tokRead).must(t, "POST", base+"/api/v1/topics", `{"name":"orders","partitions":1}`, 403)
	h.as(tokAdmin).must(t, "POST", base+"/api/v1/topics", `{"name":"orders","partitions":1}`, 201)
	h.as(tokAdmin).must(t, "POST", base+"/api/v1/topics", `{"name":"secret","partitions":1}`, 201)
	h.as(tokRead).must(t, "POST", base+"/api/v1/produce", `{"topic":"orders","value":"x"}`, 403)
	h.as(tokRead).must(t, "GET", base+"/api/v1/consume?topic=secret&partition=0", "", 403)
	h.as(tokRead).must(t, "GET", base+"/api/v1/cluster", "", 200)

	// Plaintext to the TLS ports gets nothing.
	if code, _, err := (&httpsClient{cl: httpClient}).do("GET", "http://"+a.http.Addr()+"/api/v1/topics", ""); err == nil && code == 200 {
		t.Fatal("plaintext REST request served")
	}
	grpcAddr := a.grpcAddr()
	if _, errOut, code := runCLI(t, grpcAddr, nil, "topic", "list", "--token", tokRead, "--timeout", "5s"); code == 0 {
		t.Fatalf("plaintext gRPC client listed topics (%s)", errOut)
	}

	// The CLI over gRPC with --tls-ca and --token.
	out := mustCLI(t, grpcAddr, nil, "topic", "list", "-o", "json", "--tls-ca", files.CA, "--token", tokRead)
	if !strings.Contains(out, `"orders"`) || strings.Contains(out, `"secret"`) {
		t.Fatalf("topic list for a key restricted to orders: %s", out)
	}
	if _, errOut, code := runCLI(t, grpcAddr, nil, "topic", "list", "--tls-ca", files.CA); code == 0 || !strings.Contains(errOut, "unauthenticated") {
		t.Fatalf("topic list without a token: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, grpcAddr, nil, "produce", "orders", "v1", "--tls-ca", files.CA, "--token", tokRead); code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("produce with a read key: exit %d, %s", code, errOut)
	}
	mustCLI(t, grpcAddr, nil, "produce", "orders", "v1", "--tls-ca", files.CA, "--token", tokAdmin)
	if recs := consumeCLI(t, grpcAddr, "orders", "-o", "json", "--tls-ca", files.CA, "--token", tokRead); len(recs) != 1 || recs[0].Value != "v1" {
		t.Fatalf("consume: %+v", recs)
	}
	st := mustCLI(t, grpcAddr, nil, "cluster", "status", "-o", "json", "--tls-ca", files.CA, "--token", tokRead)
	if !strings.Contains(st, `"node_id": "agent-1"`) && !strings.Contains(st, `"node_id":"agent-1"`) {
		t.Fatalf("cluster status: %s", st)
	}
	if _, errOut, code := runCLI(t, grpcAddr, nil, "cluster", "status", "--token", tokRead); code == 0 {
		t.Fatalf("cluster status without the CA succeeded: %s", errOut)
	}

	// Keys added and revoked in the file take effect without a restart.
	h.as(tokWrite).must(t, "POST", base+"/api/v1/produce", `{"topic":"orders","value":"w"}`, 401)
	writeKeys(t, keysFile, kAdmin, kWrite)
	waitFor(t, 10*time.Second, "the added key is accepted", func() bool {
		code, _, err := h.as(tokWrite).do("POST", base+"/api/v1/produce", `{"topic":"orders","value":"w"}`)
		return err == nil && code == 200
	})
	h.as(tokRead).must(t, "GET", base+"/api/v1/topics", "", 401) // revoked by the same rewrite
	h.as(tokWrite).must(t, "POST", base+"/api/v1/produce", `{"topic":"secret","value":"w"}`, 403)
	// A broken line is refused, not ignored: only the valid lines are in
	// force (fail closed), so a file of garbage leaves no key.
	if err := os.WriteFile(keysFile+".tmp", []byte(kAdmin.Line()+"\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keysFile+".tmp", keysFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rewrite without the write key applies", func() bool {
		code, _, err := h.as(tokWrite).do("POST", base+"/api/v1/produce", `{"topic":"orders","value":"w"}`)
		return err == nil && code == 401
	})
	h.as(tokAdmin).must(t, "POST", base+"/api/v1/produce", `{"topic":"orders","value":"w"}`, 200)
}

// secureAgent is one agent of TestSecureClusterOfAgents.
type secureAgent struct {
	a    *agent
	base string
	cfg  *agentCmd
}

// TestSecureClusterOfAgents: agents with certificates from the cluster CA
// (TLS_CA_PATH: mutual TLS on the peer port), a CLUSTER_SECRET and a
// GOSSIP_KEY form a cluster and forward produce requests to each other; an
// agent whose certificate comes from another CA gossips (it has the key)
// but is never added to Raft, while a legitimate agent that arrives after
// it is.
func TestSecureClusterOfAgents(t *testing.T) {
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "cluster CA")
	foreign := transporttest.NewCA(t, "foreign CA")
	caFile := filepath.Join(dir, "cluster-ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	gossipKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	tokAdmin, kAdmin := newKey(t, "ops", transport.ScopeAdmin)
	keysFile := filepath.Join(dir, "api_keys")
	writeKeys(t, keysFile, kAdmin)
	h := newHTTPSClient(t, ca).as(tokAdmin)

	gossip := map[string]int{}
	for _, id := range []string{"a1", "a2", "a0-rogue", "a3"} {
		gossip[id] = freePort(t)
	}
	joinOf := func(ids ...string) string {
		var out []string
		for _, id := range ids {
			out = append(out, "127.0.0.1:"+strconv.Itoa(gossip[id]))
		}
		return strings.Join(out, ",")
	}
	start := func(id string, issuer *transporttest.CA, expect int, join string) *secureAgent {
		c := testConfig(t, filepath.Join(dir, id))
		c.NodeID, c.GossipPort, c.BootstrapExpect, c.Join = id, gossip[id], expect, join
		c.ObjectStoreDir = filepath.Join(dir, "objects") // the agents of a cluster share one object store
		f := issuer.Issue(t, id).Write(t, issuer, dir, id)
		c.TLSCertPath, c.TLSKeyPath, c.TLSCAPath = f.Cert, f.Key, caFile
		if issuer != ca {
			// The rogue trusts the cluster CA (its certificate is public)
			// and its own, so its own startup check passes.
			c.TLSCAPath = filepath.Join(dir, id+"-trust.crt")
			if err := os.WriteFile(c.TLSCAPath, append(append([]byte(nil), ca.PEM...), issuer.PEM...), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c.ClusterSecret, c.GossipKey, c.APIKeysFile = "the cluster's shared secret", gossipKey, keysFile
		if err := c.checkValues(); err != nil {
			t.Fatal(err)
		}
		a, err := startAgent(context.Background(), c)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		t.Cleanup(func() { _ = a.Close(context.Background()) })
		return &secureAgent{a: a, base: "https://" + a.http.Addr(), cfg: c}
	}
	status := func(s *secureAgent) (transport.ClusterStatus, bool) {
		var st transport.ClusterStatus
		code, b, err := h.do("GET", s.base+"/api/v1/cluster", "")
		if err != nil || code != 200 || json.Unmarshal([]byte(b), &st) != nil {
			return st, false
		}
		return st, true
	}
	voters := func(s *secureAgent, want ...string) bool {
		st, ok := status(s)
		return ok && st.Leader != "" && sameIDs(st.Voters, want...)
	}

	a1 := start("a1", ca, 2, joinOf("a2"))
	a2 := start("a2", ca, 2, joinOf("a1"))
	waitFor(t, 60*time.Second, "a1 and a2 form a cluster over mTLS", func() bool {
		return voters(a1, "a1", "a2") && voters(a2, "a1", "a2")
	})

	// Produce through the agent that does not lead the partition: the
	// forward goes over the authenticated peer port.
	h.must(t, "POST", a1.base+"/api/v1/topics", `{"name":"orders","partitions":2}`, 201)
	var parts transport.PartitionsResponse
	waitFor(t, 20*time.Second, "partitions led on both agents", func() bool {
		code, b, err := h.do("GET", a2.base+"/api/v1/topics/orders/partitions", "")
		return err == nil && code == 200 && json.Unmarshal([]byte(b), &parts) == nil && len(parts.Partitions) == 2 &&
			parts.Partitions[0].Leader != "" && parts.Partitions[1].Leader != ""
	})
	for _, p := range parts.Partitions {
		via := a1
		if p.Leader == "a1" {
			via = a2
		}
		h.must(t, "POST", via.base+"/api/v1/produce", fmt.Sprintf(`{"topic":"orders","partition":%d,"value":"v"}`, p.Partition), 200)
	}

	// A rogue with a certificate from another CA: it has the gossip key and
	// the secret, so only mTLS keeps it out.
	rogue := start("a0-rogue", foreign, 0, joinOf("a1"))
	waitFor(t, 60*time.Second, "both members see the rogue agent in gossip", func() bool {
		for _, s := range []*secureAgent{a1, a2} {
			st, ok := status(s)
			seen := false
			for _, m := range st.Members {
				seen = seen || (m.ID == "a0-rogue" && m.GossipState == "alive")
			}
			if !ok || !seen {
				return false
			}
		}
		return true
	})
	// a3 sorts after the rogue: the leader's pass that adds a3 has passed
	// over the rogue first (the reconciler walks members in ID order).
	a3 := start("a3", ca, 0, joinOf("a1", "a2"))
	waitFor(t, 60*time.Second, "a3 becomes a voter", func() bool {
		return voters(a1, "a1", "a2", "a3") && voters(a2, "a1", "a2", "a3") && voters(a3, "a1", "a2", "a3")
	})
	for _, s := range []*secureAgent{a1, a2, a3} {
		st, _ := status(s)
		for _, m := range st.Members {
			if m.ID == "a0-rogue" && m.Suffrage != "none" {
				t.Fatalf("%s has the rogue agent as a raft %s", st.NodeID, m.Suffrage)
			}
		}
		for _, id := range append(st.Voters, st.NonVoters...) {
			if id == "a0-rogue" {
				t.Fatalf("the rogue agent is in %s's raft configuration", st.NodeID)
			}
		}
	}
	if l := rogue.a.node.LeaderID(); l != "" {
		t.Fatalf("the rogue agent follows %s", l)
	}
	// The console's durability read asks the admitted agents over the
	// peer channel (mTLS + secret) and never the gossip-only rogue.
	var d transport.DurabilityResponse
	waitFor(t, 20*time.Second, "every admitted agent answers the durability read", func() bool {
		code, b, err := h.do("GET", a1.base+"/api/v1/durability", "")
		if err != nil || code != 200 || json.Unmarshal([]byte(b), &d) != nil || len(d.Agents) != 3 {
			return false
		}
		for _, r := range d.Agents {
			if r.DurabilityStatus == nil || r.NodeID != r.ID {
				return false
			}
		}
		return true
	})
	for _, r := range d.Agents {
		if r.ID == "a0-rogue" {
			t.Fatalf("the durability read lists the rogue agent: %+v", d.Agents)
		}
	}
}

// checkConfigEnv is the environment of `streamhouse agent --check-config`
// for c's settings that the tests vary.
func checkConfigEnv(c *agentCmd) []string {
	env := []string{
		"HTTP_PORT=" + strconv.Itoa(c.HTTPPort), "GRPC_PORT=" + strconv.Itoa(c.GRPCPort),
		"PEER_PORT=" + strconv.Itoa(c.PeerPort), "GOSSIP_PORT=" + strconv.Itoa(c.GossipPort),
		"KAFKA_PORT=" + strconv.Itoa(c.KafkaPort),
		"BIND_ADDR=127.0.0.1", "DATA_DIR=" + c.DataDir, "NODE_ID=check",
	}
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("TLS_CERT_PATH", c.TLSCertPath)
	add("TLS_KEY_PATH", c.TLSKeyPath)
	add("TLS_CA_PATH", c.TLSCAPath)
	add("API_KEYS_FILE", c.APIKeysFile)
	add("DATABASE_URL", c.DatabaseURL)
	add("S3_BUCKET", c.S3Bucket)
	add("S3_ENDPOINT", c.S3Endpoint)
	add("S3_REGION", c.S3Region)
	add("AWS_ACCESS_KEY_ID", c.AWSAccessKeyID)
	add("AWS_SECRET_ACCESS_KEY", c.AWSSecretKey)
	add("CLUSTER_SECRET", c.ClusterSecret)
	add("GOSSIP_KEY", c.GossipKey)
	if c.S3PathStyle {
		env = append(env, "S3_PATH_STYLE=true")
	}
	return env
}

// runCheckConfigBinary runs the binary's --check-config with env only
// (no inherited STREAMHOUSE/agent variables).
func runCheckConfigBinary(t *testing.T, env []string) (string, int) {
	t.Helper()
	out, errOut, code := runCLIEnv(t, env, "agent", "--check-config")
	return out + errOut, code
}

// TestCheckConfig: --check-config passes a good configuration (TLS files,
// mTLS CA, API keys, a real Postgres, a real MinIO bucket, free ports) with
// exit 0, and reports a missing bucket, an unreachable Postgres, a missing
// certificate file, a key that does not match its certificate, a broken
// keys file and a port in use, with exit 1.
func TestCheckConfig(t *testing.T) {
	m := s3segtest.StartMinIO(t)
	m.CreateBucket(t, "good-bucket")
	pg := pgtest.Start(t)
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "CA")
	// Valid for a year: a certificate expiring within 30 days is a warning.
	files := ca.IssueValid(t, "agent", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour)).Write(t, ca, dir, "agent")
	other := ca.Issue(t, "other").Write(t, ca, dir, "other")
	_, k := newKey(t, "ops", transport.ScopeAdmin)
	keysFile := filepath.Join(dir, "keys")
	writeKeys(t, keysFile, k)

	good := s3Config(t, m, "good-bucket")
	good.DatabaseURL = pg.NewDatabase(t)
	good.TLSCertPath, good.TLSKeyPath, good.TLSCAPath, good.APIKeysFile = files.Cert, files.Key, files.CA, keysFile
	good.ClusterSecret = "sixteen bytes at least"
	good.GossipKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
	out, code := runCheckConfigBinary(t, checkConfigEnv(good))
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("good configuration: exit %d\n%s", code, out)
	}
	for _, want := range []string{"[ OK ] TLS (REST, gRPC)", "[ OK ] peer mTLS", "[ OK ] API keys: 1 key(s)", "[ OK ] Postgres: connected",
		`[ OK ] object store: bucket "good-bucket"`, "[ OK ] ports: free", "[ OK ] gossip encryption: AES-256", "All checks passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("good configuration: output lacks %q\n%s", want, out)
		}
	}

	// Everything wrong at once.
	bad := s3Config(t, m, "no-such-bucket")
	bad.DatabaseURL = fmt.Sprintf("postgres://streamhouse:pw@127.0.0.1:%d/streamhouse?connect_timeout=3", freePort(t))
	bad.TLSCertPath, bad.TLSKeyPath = filepath.Join(dir, "missing.crt"), files.Key
	bad.TLSCAPath = files.CA
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad.HTTPPort = busy.Addr().(*net.TCPAddr).Port
	brokenKeys := filepath.Join(dir, "broken-keys")
	if err := os.WriteFile(brokenKeys, []byte("ops:superuser:*:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad.APIKeysFile = brokenKeys
	out, code = runCheckConfigBinary(t, checkConfigEnv(bad))
	if code != 1 {
		t.Fatalf("bad configuration: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"[FAIL] TLS (REST, gRPC): TLS_CERT_PATH=" + bad.TLSCertPath,
		"[FAIL] object store: S3_BUCKET=no-such-bucket",
		"[FAIL] Postgres: DATABASE_URL",
		"[FAIL] API keys: API_KEYS_FILE",
		fmt.Sprintf("[FAIL] ports: HTTP_PORT=%d", bad.HTTPPort),
		"problem(s) found",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bad configuration: output lacks %q\n%s", want, out)
		}
	}
	if strings.Contains(out, "pw@") {
		t.Errorf("the Postgres password is printed:\n%s", out)
	}

	// A key that does not belong to its certificate, and a settings error.
	mism := testConfig(t, t.TempDir())
	mism.TLSCertPath, mism.TLSKeyPath = files.Cert, other.Key
	env := append(checkConfigEnv(mism), "CLUSTER_SECRET=short")
	out, code = runCheckConfigBinary(t, env)
	if code != 1 || !strings.Contains(out, "does not belong to the certificate") || !strings.Contains(out, "[FAIL] settings: CLUSTER_SECRET is 5 bytes") {
		t.Fatalf("mismatched key / short secret: exit %d\n%s", code, out)
	}
}

// runCLIEnv runs the binary with only env (plus PATH and HOME).
func runCLIEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runBinary(t, append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...), nil, args...)
}
