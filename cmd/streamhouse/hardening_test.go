package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadyDoesNotRevealObjectStore: with the object store unreachable,
// the public GET /ready says so without naming its endpoint or bucket (the
// details are in the agent's log).
func TestReadyDoesNotRevealObjectStore(t *testing.T) {
	c := testConfig(t, t.TempDir())
	endpoint := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	c.S3Endpoint, c.S3Bucket, c.S3PathStyle = endpoint, "tenant-private-bucket", true
	c.AWSAccessKeyID, c.AWSSecretKey, c.S3TimeoutMs = "key-id", "key-secret", 300
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	a, err := startAgent(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	var body string
	waitFor(t, 30*time.Second, "/ready reports the object store", func() bool {
		resp, err := http.Get("http://" + a.http.Addr() + "/ready")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 503 && strings.Contains(body, "object store")
	})
	for _, secret := range []string{"127.0.0.1:" + endpoint[len("http://127.0.0.1:"):], "tenant-private-bucket", "key-id"} {
		if strings.Contains(body, secret) {
			t.Fatalf("/ready reveals %q: %s", secret, body)
		}
	}
}

// TestPprofRefusesRemoteBind: PPROF_ADDR beyond loopback needs
// PPROF_ALLOW_REMOTE=true.
func TestPprofRefusesRemoteBind(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.1.2.3:6060", "[::]:6060"} {
		c := testConfig(t, t.TempDir())
		c.PprofAddr = addr
		if err := c.checkValues(); err == nil || !strings.Contains(err.Error(), "PPROF_ALLOW_REMOTE") {
			t.Errorf("PPROF_ADDR=%s: %v, want a refusal naming PPROF_ALLOW_REMOTE", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060"} {
		c := testConfig(t, t.TempDir())
		c.PprofAddr = addr
		if err := c.checkValues(); err != nil {
			t.Errorf("PPROF_ADDR=%s: %v", addr, err)
		}
	}
}

// TestPprofDoesNotShowSecretFlags: an agent given --cluster-secret on its
// command line warns about it, and its pprof endpoint does not serve the
// command line.
func TestPprofDoesNotShowSecretFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	pprofPort := freePort(t)
	a := newSoloAgent(t, "pprof-1", t.TempDir(), "PPROF_ADDR=127.0.0.1:"+strconv.Itoa(pprofPort), "LOG_LEVEL=warn")
	const secret = "flag-secret-0123456789"
	p := a.start(t, "--cluster-secret", secret)
	defer func() { p.kill(t) }()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(pprofPort) + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), secret) {
		t.Fatalf("/debug/pprof/cmdline shows the cluster secret: %s", body)
	}
	log, _ := os.ReadFile(a.logPath)
	if !strings.Contains(string(log), "--cluster-secret") || !strings.Contains(string(log), "CLUSTER_SECRET_FILE") {
		t.Fatalf("no warning about the secret on the command line:\n%s", log)
	}
	if strings.Contains(string(log), secret) {
		t.Fatal("the log shows the secret")
	}
}

// TestSecretFiles: CLUSTER_SECRET_FILE and GOSSIP_KEY_FILE fill the
// secrets (without the trailing newline); a secret set twice is an error.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile, keyFile := filepath.Join(dir, "secret"), filepath.Join(dir, "gossip")
	if err := os.WriteFile(secretFile, []byte("a secret of enough bytes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZg==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, dir)
	c.ClusterSecretFile, c.GossipKeyFile = secretFile, keyFile
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.ClusterSecret != "a secret of enough bytes" || c.GossipKey != "MDEyMzQ1Njc4OWFiY2RlZg==" {
		t.Fatalf("read %q and %q", c.ClusterSecret, c.GossipKey)
	}
	c.ClusterSecret = "also set directly"
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("a secret set twice: %v", err)
	}
	c = testConfig(t, dir)
	c.ClusterSecretFile = filepath.Join(dir, "missing")
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "CLUSTER_SECRET_FILE") {
		t.Fatalf("a missing secret file: %v", err)
	}
}

// TestCLIWarnsAboutTokenFlag: the CLI warns when the API key is given as
// --token (visible in ps), without printing it.
func TestCLIWarnsAboutTokenFlag(t *testing.T) {
	const token = "sh_not-a-real-token-value"
	_, errOut, _ := runCLI(t, "127.0.0.1:"+strconv.Itoa(freePort(t)), nil, "topic", "list", "--token", token)
	if !strings.Contains(errOut, "--token is visible") || !strings.Contains(errOut, "STREAMHOUSE_TOKEN") {
		t.Fatalf("no warning about --token:\n%s", errOut)
	}
	if strings.Contains(errOut, token) {
		t.Fatalf("the token is printed:\n%s", errOut)
	}
}
