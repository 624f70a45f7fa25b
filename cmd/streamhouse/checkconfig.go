package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamhouse/streamhouse/pgsync"
	"github.com/streamhouse/streamhouse/s3seg"
	"github.com/streamhouse/streamhouse/transport"
)

// `streamhouse agent --check-config`: validate the configuration and what
// it points to, print a checklist, exit 0 only if nothing failed.

type checkStatus string

const (
	checkOK   checkStatus = " OK "
	checkWarn checkStatus = "WARN" // works, but worth a look (e.g. open to the network)
	checkFail checkStatus = "FAIL"
	checkSkip checkStatus = " -- " // not configured
)

type checkItem struct {
	status checkStatus
	name   string
	detail string
}

// certExpiryWarning: a certificate expiring sooner than this is a warning.
const certExpiryWarning = 30 * 24 * time.Hour

// runCheckConfig runs every check, prints the checklist to w and returns
// an error when a check failed.
func (c *agentCmd) runCheckConfig(ctx context.Context, w io.Writer) error {
	var items []checkItem
	add := func(st checkStatus, name, format string, args ...any) {
		items = append(items, checkItem{st, name, fmt.Sprintf(format, args...)})
	}

	if err := c.readSecretFiles(); err != nil {
		add(checkFail, "settings", "%s", err)
	}
	if err := c.checkValues(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add(checkFail, "settings", "%s", line)
		}
	} else {
		add(checkOK, "settings", "every value parses and is in range")
	}
	if err := c.fillDefaults(); err != nil {
		add(checkFail, "settings", "%v", err)
	}

	c.checkTLS(add)
	c.checkPeerSecurity(add)
	c.checkAPIKeys(add)
	c.checkDataDir(add)
	c.checkPostgres(ctx, add)
	c.checkObjectStore(ctx, add)
	c.checkPorts(add)

	failed := 0
	fmt.Fprintln(w, "streamhouse agent --check-config")
	for _, it := range items {
		detail := strings.ReplaceAll(strings.TrimSpace(it.detail), "\n", "\n       ") // continuation lines under the text
		fmt.Fprintf(w, "[%s] %s: %s\n", it.status, it.name, detail)
		if it.status == checkFail {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "%d problem(s) found.\n", failed)
		return fmt.Errorf("configuration check failed: %d problem(s)", failed)
	}
	fmt.Fprintln(w, "All checks passed.")
	return nil
}

type addFunc func(st checkStatus, name, format string, args ...any)

// describeCert summarises a certificate and says whether it is valid now.
func describeCert(leaf *x509.Certificate, now time.Time) (checkStatus, string) {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	d := fmt.Sprintf("subject %q, names [%s], valid until %s", leaf.Subject.CommonName, strings.Join(names, " "), leaf.NotAfter.UTC().Format(time.RFC3339))
	switch {
	case now.After(leaf.NotAfter):
		return checkFail, d + ": EXPIRED"
	case now.Before(leaf.NotBefore):
		return checkFail, d + ": not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339)
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		return checkWarn, d + fmt.Sprintf(": expires in %d days", int(leaf.NotAfter.Sub(now).Hours()/24))
	}
	return checkOK, d
}

// offStatus is the status of a protection that is off: a warning when the
// agent listens beyond loopback and nothing else covers it (exposed), else
// skipped.
func (c *agentCmd) offStatus(exposed bool) checkStatus {
	if exposed && !isLoopback(c.BindAddr) {
		return checkWarn
	}
	return checkSkip
}

func (c *agentCmd) checkTLS(add addFunc) {
	if c.TLSCertPath == "" || c.TLSKeyPath == "" {
		add(c.offStatus(true), "TLS (REST, gRPC)", "off: TLS_CERT_PATH/TLS_KEY_PATH unset, the APIs speak plaintext")
		return
	}
	cf, err := transport.LoadCertFiles(c.TLSCertPath, c.TLSKeyPath, nil)
	if err != nil {
		add(checkFail, "TLS (REST, gRPC)", "TLS_CERT_PATH=%s / TLS_KEY_PATH=%s: %v", c.TLSCertPath, c.TLSKeyPath, err)
		return
	}
	st, d := describeCert(cf.Leaf(), time.Now())
	add(st, "TLS (REST, gRPC)", "%s and its key load and match; %s", c.TLSCertPath, d)
}

func (c *agentCmd) checkPeerSecurity(add addFunc) {
	c.checkPeerMTLS(add)
	c.checkClusterSecret(add)
	c.checkGossipKey(add)
}

func (c *agentCmd) checkPeerMTLS(add addFunc) {
	const name = "peer mTLS"
	if c.TLSCAPath == "" {
		add(c.offStatus(c.ClusterSecret == ""), name, "off: TLS_CA_PATH unset")
		return
	}
	pool, err := transport.LoadCertPool(c.TLSCAPath)
	if err != nil {
		add(checkFail, name, "TLS_CA_PATH=%s: %v", c.TLSCAPath, err)
		return
	}
	certPath, keyPath, env := c.TLSCertPath, c.TLSKeyPath, "TLS_CERT_PATH"
	if c.PeerTLSCertPath != "" {
		certPath, keyPath, env = c.PeerTLSCertPath, c.PeerTLSKeyPath, "PEER_TLS_CERT_PATH"
	}
	if certPath == "" {
		add(checkFail, name, "TLS_CA_PATH needs this agent's certificate (TLS_CERT_PATH or PEER_TLS_CERT_PATH)")
		return
	}
	cf, err := transport.LoadCertFiles(certPath, keyPath, nil)
	if err != nil {
		add(checkFail, name, "%s=%s: %v", env, certPath, err)
		return
	}
	chain, err := certChain(cf.Certificate())
	if err == nil {
		err = transport.VerifyPeerChain(chain, pool)
	}
	if err != nil {
		add(checkFail, name, "%s does not verify against TLS_CA_PATH=%s, so other agents would refuse it: %v", certPath, c.TLSCAPath, err)
		return
	}
	st, d := describeCert(cf.Leaf(), time.Now())
	add(st, name, "%s is signed by TLS_CA_PATH=%s; %s", certPath, c.TLSCAPath, d)
}

func (c *agentCmd) checkClusterSecret(add addFunc) {
	switch n := len(c.ClusterSecret); {
	case n == 0:
		add(c.offStatus(c.TLSCAPath == ""), "cluster secret", "off: CLUSTER_SECRET unset, the peer port admits any agent that reaches it")
	case n < transport.MinClusterSecretLen:
		add(checkFail, "cluster secret", "CLUSTER_SECRET is %d bytes; use at least %d", n, transport.MinClusterSecretLen)
	default:
		add(checkOK, "cluster secret", "set (%d bytes)", n)
	}
}

func (c *agentCmd) checkGossipKey(add addFunc) {
	if c.GossipKey == "" {
		add(c.offStatus(true), "gossip encryption", "off: GOSSIP_KEY unset")
	} else if key, err := decodeGossipKey(c.GossipKey); err != nil {
		add(checkFail, "gossip encryption", "%v", err)
	} else {
		add(checkOK, "gossip encryption", "AES-%d key", len(key)*8)
	}
}

func (c *agentCmd) checkAPIKeys(add addFunc) {
	const name = "API keys"
	if c.APIKeysFile == "" {
		add(c.offStatus(true), name, "off: API_KEYS_FILE unset, the REST and gRPC APIs need no token")
		return
	}
	keys, err := transport.LoadAPIKeysFile(c.APIKeysFile)
	if err != nil {
		add(checkFail, name, "API_KEYS_FILE: %v", err)
		return
	}
	if len(keys) == 0 {
		add(checkWarn, name, "API_KEYS_FILE=%s holds no key: every API request would be refused", c.APIKeysFile)
		return
	}
	var desc []string
	for _, k := range keys {
		topics := "*"
		if !k.AllTopics() {
			topics = strings.Join(k.Topics, ",")
		}
		desc = append(desc, fmt.Sprintf("%s (%s, %s)", k.Name, k.Scope, topics))
	}
	metrics := "open"
	if c.MetricsAuth {
		metrics = "needs a read key"
	}
	add(checkOK, name, "%d key(s) in %s: %s; /metrics %s", len(keys), c.APIKeysFile, strings.Join(desc, ", "), metrics)
}

func (c *agentCmd) checkDataDir(add addFunc) {
	const name = "data dir"
	dir := c.DataDir
	if dir == "" {
		return // reported by the settings check
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(filepath.Clean(dir))
		for {
			if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := writable(parent); err != nil {
			add(checkFail, name, "DATA_DIR=%s does not exist and cannot be created: %v", dir, err)
			return
		}
		add(checkOK, name, "DATA_DIR=%s does not exist yet; it will be created", dir)
		return
	case err != nil:
		add(checkFail, name, "DATA_DIR=%s: %v", dir, err)
		return
	case !fi.IsDir():
		add(checkFail, name, "DATA_DIR=%s is not a directory", dir)
		return
	}
	if err := writable(dir); err != nil {
		add(checkFail, name, "DATA_DIR=%s is not writable: %v", dir, err)
		return
	}
	if f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR, 0); err == nil {
		locked := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if locked == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		f.Close()
		if errors.Is(locked, syscall.EWOULDBLOCK) {
			add(checkFail, name, "DATA_DIR=%s is in use by a running agent", dir)
			return
		}
	}
	state := "no Raft state (a new agent)"
	if hasRaftState(dir) {
		state = "holds Raft state"
	}
	add(checkOK, name, "DATA_DIR=%s is writable; %s", dir, state)
	c.checkDiskSpace(add)
}

// writable creates and removes a file in dir.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".streamhouse-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func (c *agentCmd) checkPostgres(ctx context.Context, add addFunc) {
	const name = "Postgres"
	if c.DatabaseURL == "" {
		add(checkSkip, name, "off: DATABASE_URL unset (no checkpoints, no disaster recovery from Postgres)")
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	target, version, err := pgsync.Ping(pctx, c.DatabaseURL)
	if err != nil {
		add(checkFail, name, "DATABASE_URL: %v", err)
		return
	}
	add(checkOK, name, "connected to %s, PostgreSQL %s", target, version)
}

func (c *agentCmd) checkObjectStore(ctx context.Context, add addFunc) {
	const name = "object store"
	if c.S3Bucket == "" {
		dir := c.ObjectStoreDir
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			add(checkOK, name, "local directory %s (created at start; set S3_BUCKET for S3)", dir)
			return
		}
		if err := writable(dir); err != nil {
			add(checkFail, name, "OBJECT_STORE_DIR=%s is not writable: %v", dir, err)
			return
		}
		add(checkOK, name, "local directory %s is writable (set S3_BUCKET for S3)", dir)
		return
	}
	timeout := time.Duration(c.S3TimeoutMs) * time.Millisecond
	sctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	s3, err := s3seg.NewS3Store(sctx, s3seg.S3Config{
		Endpoint: c.S3Endpoint, Bucket: c.S3Bucket, Region: c.S3Region, PathStyle: c.S3PathStyle,
		AccessKeyID: c.AWSAccessKeyID, SecretAccessKey: c.AWSSecretKey, RequestTimeout: timeout,
	})
	if err == nil {
		err = s3.Check(sctx)
	}
	if err != nil {
		add(checkFail, name, "S3_BUCKET=%s: %v", c.S3Bucket, err)
		return
	}
	endpoint := c.S3Endpoint
	if endpoint == "" {
		endpoint = "AWS S3 (" + c.S3Region + ")"
	}
	add(checkOK, name, "bucket %q at %s exists and the credentials may use it", c.S3Bucket, endpoint)
}

// checkPorts binds every listener's address and releases it at once.
func (c *agentCmd) checkPorts(add addFunc) {
	type port struct {
		env   string
		port  int
		udp   bool
		label string
	}
	ports := []port{
		{"HTTP_PORT", c.HTTPPort, false, "REST"},
		{"GRPC_PORT", c.GRPCPort, false, "gRPC"},
		{"KAFKA_PORT", c.KafkaPort, false, "Kafka"},
		{"PEER_PORT", c.PeerPort, false, "peer"},
		{"GOSSIP_PORT", c.GossipPort, true, "gossip"},
	}
	var ok []string
	for _, p := range ports {
		if p.port <= 0 || p.port > 65535 {
			continue // 0 = any free port; out of range is a settings failure
		}
		addr := net.JoinHostPort(c.BindAddr, strconv.Itoa(p.port))
		if err := tryListen("tcp", addr); err != nil {
			add(checkFail, "ports", "%s=%d (%s): cannot listen on %s: %v", p.env, p.port, p.label, addr, err)
			continue
		}
		if p.udp {
			if err := tryListen("udp", addr); err != nil {
				add(checkFail, "ports", "%s=%d (%s, UDP): cannot listen on %s: %v", p.env, p.port, p.label, addr, err)
				continue
			}
		}
		ok = append(ok, fmt.Sprintf("%s %d", p.label, p.port))
	}
	if c.PprofAddr != "" {
		if err := tryListen("tcp", c.PprofAddr); err != nil {
			add(checkFail, "ports", "PPROF_ADDR=%s: cannot listen: %v", c.PprofAddr, err)
		} else {
			ok = append(ok, "pprof "+c.PprofAddr)
		}
	}
	if len(ok) > 0 {
		add(checkOK, "ports", "free on %s: %s", c.BindAddr, strings.Join(ok, ", "))
	}
}

func tryListen(network, addr string) error {
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			return err
		}
		return pc.Close()
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	return ln.Close()
}
